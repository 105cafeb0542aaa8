"""`fednlp audit RUN_DIR`: membership inference (example and user level) and, with --canaries, canary exposure
and extraction on a finished run's saved model. Writes RUN_DIR/audit.json, RUN_DIR/audit_roc.png and the
`audit` block of RUN_DIR/result.json.

Every check of the inputs comes before any model is loaded or loss computed, and nothing is written until
every number is known: a bad input leaves the run directory as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp.audit.canaries import canary_record, canary_texts
from fednlp.run.example_losses import example_losses
from fednlp.audit.exposure import by_repeats, canary_exposures, check_enumerable
from fednlp.audit.extraction import ExtractionBudget, extract_canaries
from fednlp.audit.membership import client_example_sample, example_level, example_sets, user_level
from fednlp.audit.roc_plot import roc_png
from fednlp.audit.run_models import (OpenedRun, initial_model, open_run, read_run_record, reference_record,
                                     saved_model, train_examples_of_clients)
from fednlp.data.datafile import DataFile
from fednlp.errors import UserError
from fednlp.federation.communicator import make_communicator
from fednlp.locks import RUN_LOCK_NAME, acquire
from fednlp.files import atomic_write_text

#: Heads whose canaries exposure can score (their features come from the X and Y fields).
CANARY_TASKS = ("classification", "seq2seq", "lm")


@dataclass(frozen=True)
class AuditOptions:
    reference: str | None = None
    canaries: bool = False
    max_examples: int | None = None
    user_level: bool | None = None  # None: when the run held clients out
    client_examples: int | None = None
    extrapolate: int | None = None
    extraction: ExtractionBudget = field(default_factory=ExtractionBudget)


def run_audit(run_dir: str | os.PathLike, options: AuditOptions, comm: Any = None) -> tuple[dict[str, Any], bytes]:
    """The audit report and its ROC PNG; reads the run, writes nothing."""
    comm = comm or make_communicator()
    for flag, value in (("--max-examples", options.max_examples), ("--client-examples", options.client_examples)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected a positive number of examples")
    record = read_run_record(run_dir)
    reference = reference_record(options.reference, record) if options.reference else None
    held_out = np.asarray(record.result.get("holdout_clients") or [], dtype=np.int64)
    do_user_level = options.user_level if options.user_level is not None else (record.federated and len(held_out) > 0)
    if do_user_level and (not record.federated or len(held_out) == 0):
        what = "is centralized" if not record.federated else "held no clients out"
        raise UserError(f"user-level membership inference needs clients that never trained: run {run_dir} {what}; "
                        "train it with fednlp train --holdout-clients F (e.g. 0.2)")
    run = open_run(record)
    canaries = space = None
    if options.canaries:
        canaries, space = canary_record(run.data, record.config.data)
        check_enumerable(space, options.extrapolate)
        if run.task.name not in CANARY_TASKS:
            raise UserError(f"--canaries: a {run.task.name} model does not score canary texts; canaries are for "
                            f"{', '.join(CANARY_TASKS)} runs")
    canary_examples = np.array([e for c in (canaries or run.data.attributes.get("canaries") or {}).get("canaries", [])
                                for e in c["examples"]], dtype=np.int64)

    config = record.config
    trained_clients = np.asarray(record.result.get("clients_trained") or [], dtype=np.int64)
    client_train = train_examples_of_clients(record, run.data.n_examples) if record.federated else None
    if record.federated:
        member_pool = np.concatenate([client_train[c] for c in trained_clients]) if len(trained_clients) else np.zeros(0)
    else:
        member_pool = np.asarray(run.data.train_index_list, dtype=np.int64)
    member_pool = np.setdiff1d(member_pool, canary_examples)  # canaries are audited on their own
    sets = example_sets(member_pool, run.data.test_index_list, config.seed, options.max_examples)
    if len(sets.members) == 0:
        raise UserError(f"run {run_dir} has no member or no test example to audit ({sets.member_pool} training "
                        f"examples of trained clients, {sets.non_member_pool} test examples)")
    per_client: dict[int, np.ndarray] = {}
    if do_user_level:
        per_client = client_example_sample(client_train, np.concatenate([trained_clients, held_out]), config.seed,
                                           options.client_examples)
        per_client = {c: np.setdiff1d(e, canary_examples) for c, e in per_client.items()}
    needed = np.unique(np.concatenate([sets.members, sets.non_members, *per_client.values()]).astype(np.int64))

    target = saved_model(run)
    target_losses = dict(zip(needed.tolist(), _losses(target, run, needed, comm)))
    reference_model = saved_model(run, reference) if reference else initial_model(run)
    reference_losses = dict(zip(needed.tolist(), _losses(reference_model, run, needed, comm)))
    del reference_model

    example = example_level(target_losses, reference_losses, sets)
    calibrated = example["attacks"]["calibrated"]
    report: dict[str, Any] = {
        "mia_attack": "calibrated loss (the model's loss minus the reference's)",
        "mia_auc": calibrated["auc"],
        "mia_tpr_at_1pct_fpr": calibrated["tpr_at_1pct_fpr"],
        "mia_tpr_at_0.1pct_fpr": calibrated["tpr_at_0.1pct_fpr"],
        "mia_balanced_accuracy": calibrated["balanced_accuracy"],
    }
    details: dict[str, Any] = {
        "reference": str(reference.run_dir) if reference else f"the run's initial model (seed {config.seed})",
        "example_level": _without_roc(example),
    }
    panels = {"examples": {f"{name} (AUC {m['auc']:.3f})": example["roc"][name] for name, m in example["attacks"].items()}}
    if do_user_level:
        user = user_level(target_losses, reference_losses, per_client, trained_clients, held_out)
        report.update(user_mia_auc=user["attacks"]["calibrated"]["auc"],
                      user_mia_tpr_at_1pct_fpr=user["attacks"]["calibrated"]["tpr_at_1pct_fpr"])
        details["user_level"] = _without_roc(user)
        panels["clients"] = {f"{name} (AUC {m['auc']:.3f})": user["roc"][name] for name, m in user["attacks"].items()}
    else:
        details["user_level"] = ("not run: " + ("a centralized run has no clients" if not record.federated else
                                                "the run held no clients out (fednlp train --holdout-clients F)"))
    if canaries is not None:
        canary_report = audit_canaries(run, target, canaries, space, trained_clients, options, comm)
        report["canary_max_exposure"] = canary_report.pop("max_exposure")
        report["canary_extraction_rate"] = canary_report.pop("extraction_rate")
        details["canaries"] = canary_report
    report["details"] = details
    return report, roc_png(panels)


def _losses(model: torch.nn.Module, run: OpenedRun, examples: np.ndarray, comm: Any) -> np.ndarray:
    config = run.record.config
    return example_losses(model, run.task, run.features, examples, comm, config.eval_batch_size, run.device,
                          config.precision)


def _without_roc(level: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in level.items() if k != "roc"}


def audit_canaries(run: OpenedRun, model: torch.nn.Module, record: dict[str, Any], space: Any,
                   trained_clients: np.ndarray, options: AuditOptions, comm: Any) -> dict[str, Any]:
    """Exposure of every canary (and per repeat count, over the canaries whose clients trained), and the
    extraction of each one by model inversion (text classification)."""
    canaries = record["canaries"]
    config = run.record.config
    trained_set = set(trained_clients.tolist())
    trained = [not run.record.federated or bool(trained_set & set(c["clients"])) for c in canaries]

    def score(secrets: list[str]) -> np.ndarray:
        return template_losses(model, run.task, record["template"], record.get("label"), secrets, comm, run.device)

    exposures = canary_exposures(space, canaries, score, config.seed, options.extrapolate)
    values = [e["exposure"] for e in exposures["per_canary"]]
    per_canary = [{"id": c["id"], "secret": c["secret"], "repeats": c["repeats"], "clients": c["clients"],
                   "trained": t, **e} for c, t, e in zip(canaries, trained, exposures.pop("per_canary"))]
    out: dict[str, Any] = {
        "template": record["template"], "secret_space": space.source, "candidates": space.size,
        "exposure": {**exposures, "by_repeats": by_repeats(canaries, values, trained)},
        "not_trained": sum(not t for t in trained),
        "max_exposure": max((v for v, t in zip(values, trained) if t), default=None),
        "extraction_rate": None,
    }
    if run.task.name == "classification" and comm.rank == 0:
        budget = options.extraction
        results = extract_canaries(model, run.task.tokenizer, record["template"], canaries,
                                   run.data.label_vocab[record["label"]], space.slot_choices, config.max_seq_length,
                                   budget, config.seed, run.device)
        for row, result in zip(per_canary, results):
            row["extraction"] = result
        picked = [r for r, t in zip(results, trained) if t]
        out["extraction"] = {"budget": budget.to_json(),
                             "by_repeats": by_repeats(canaries, [float(r["recovered"]) for r in results], trained),
                             "slot_accuracy_by_repeats": by_repeats(canaries, [r["slot_accuracy"] for r in results],
                                                                    trained)}
        out["extraction_rate"] = float(np.mean([r["recovered"] for r in picked])) if picked else None
    elif run.task.name != "classification":
        out["extraction"] = f"not run: model inversion is for text classifiers, this is a {run.task.name} model"
    out["per_canary"] = per_canary
    return out


def template_losses(model: torch.nn.Module, task: Any, template: str, label: str | None, secrets: list[str], comm: Any,
                    device: torch.device) -> np.ndarray:
    """The model's loss of the template filled with each secret, through the task head's own features and
    per-example loss (a canary is scored exactly as a training example would be)."""
    pairs = [canary_texts(task.data.task_type, template, s, label) for s in secrets]
    data = DataFile(task_type=task.data.task_type, fields={"X": [x for x, _ in pairs], "Y": [y for _, y in pairs]},
                    train_index_list=[], test_index_list=list(range(len(pairs))), label_vocab=task.data.label_vocab)
    head = type(task)(data, task.tokenizer, task.config)
    return example_losses(model, head, head.build_features(), np.arange(len(pairs)), comm, task.config.eval_batch_size,
                          device, task.config.precision)


def write_audit(run_dir: str | os.PathLike, report: dict[str, Any], png: bytes) -> Path:
    """audit.json, audit_roc.png and result.json's `audit` block, under the run directory's lock; result.json is
    parsed before anything is written."""
    run_dir = Path(run_dir)
    lock = acquire(run_dir / RUN_LOCK_NAME, f"run directory {run_dir}")
    try:
        result_path = run_dir / "result.json"
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise UserError(f"{result_path} is not readable JSON; the audit was not written") from None
        out = run_dir / "audit.json"
        _atomic_write_bytes(run_dir / "audit_roc.png", png)
        atomic_write_text(out, json.dumps(report, indent=2, sort_keys=True) + "\n")
        result["audit"] = report
        atomic_write_text(result_path, json.dumps(result, indent=2, sort_keys=True) + "\n")
        return out
    finally:
        lock.release()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def format_audit(report: dict[str, Any]) -> str:
    lines = []
    example = report["details"]["example_level"]
    for name, m in example["attacks"].items():
        lines.append(f"example MIA ({name}): AUC {m['auc']:.4f}, TPR@1%FPR {m['tpr_at_1pct_fpr']:.4f}, "
                     f"TPR@0.1%FPR {m['tpr_at_0.1pct_fpr']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f} "
                     f"({m['n_members']} members, {m['n_non_members']} non-members)")
    user = report["details"]["user_level"]
    if isinstance(user, dict):
        for name, m in user["attacks"].items():
            lines.append(f"user MIA ({name}): AUC {m['auc']:.4f}, TPR@1%FPR {m['tpr_at_1pct_fpr']:.4f} "
                         f"({m['n_members']} trained clients, {m['n_non_members']} held out)")
    else:
        lines.append(f"user MIA: {user}")
    canaries = report["details"].get("canaries")
    if canaries:
        for repeats, stats in canaries["exposure"]["by_repeats"].items():
            if stats["n"]:
                lines.append(f"canaries x{repeats}: exposure mean {stats['mean']:.2f}, max {stats['max']:.2f} bits of "
                             f"{canaries['exposure']['log2_candidates']:.2f} ({stats['n']} canaries)")
        if report.get("canary_extraction_rate") is not None:
            lines.append(f"extraction: {report['canary_extraction_rate']:.2f} of trained canaries fully recovered "
                         f"({canaries['extraction']['budget']})")
    return "\n".join(lines)
