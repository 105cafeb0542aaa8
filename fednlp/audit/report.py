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

from fednlp.audit.canaries import canary_record, canary_texts, check_head_reads, placement
from fednlp.audit.exposure import by_repeats, canary_exposures, check_enumerable
from fednlp.audit.extraction import ExtractionBudget, extract_canaries
from fednlp.audit.membership import ExampleSets, client_example_sample, example_level, example_sets, user_level
from fednlp.audit.roc_plot import roc_png
from fednlp.audit.members import CENTRALIZED_MEMBERS, FEDERATED_MEMBERS, used_examples, used_examples_centralized
from fednlp.audit.run_models import (OpenedRun, initial_model, open_run, read_audited_run, reference_run, run_clients,
                                     saved_model)
from fednlp.audit.secrets import SecretSpace
from fednlp.data.datafile import DataFile
from fednlp.errors import UserError
from fednlp.federation.communicator import make_communicator
from fednlp.results.run_files import RunDirectory
from fednlp.run.example_losses import example_losses


@dataclass(frozen=True)
class AuditOptions:
    reference: str | None = None
    canaries: bool = False
    max_examples: int | None = None
    user_level: bool | None = None  # None: when the run held clients out
    client_examples: int | None = None
    extrapolate: int | None = None
    extraction: ExtractionBudget = field(default_factory=ExtractionBudget)


@dataclass(frozen=True)
class AuditInputs:
    """What an audit scores, read and checked before any model is loaded."""

    run: OpenedRun
    reference: RunDirectory | None  # None: the run's initial model calibrates
    sets: ExampleSets  # example level: members and non-members
    trained_clients: np.ndarray
    held_out: np.ndarray
    user_level: bool
    per_client: dict[int, np.ndarray]  # user level: the examples each client is scored by
    canaries: dict[str, Any] | None  # with --canaries: the data file's canary record and its secret space
    space: SecretSpace | None
    members: dict[str, Any] = field(default_factory=dict)  # how the members were defined (result.json says)

    @property
    def needed(self) -> np.ndarray:
        """Every example whose loss the audit needs, once."""
        parts = [self.sets.members, self.sets.non_members, *self.per_client.values()]
        return np.unique(np.concatenate(parts).astype(np.int64))


def run_audit(run_dir: str | os.PathLike, options: AuditOptions, comm: Any = None) -> tuple[dict[str, Any], bytes]:
    """The audit report and its ROC PNG; reads the run, writes nothing."""
    comm = comm or make_communicator()
    inputs = audit_inputs(run_dir, options)
    target = saved_model(inputs.run)
    target_losses, reference_losses = _target_and_reference_losses(inputs, target, comm)
    report, details, panels = membership_report(inputs, target_losses, reference_losses)
    if inputs.canaries is not None:
        canary_report = audit_canaries(inputs.run, target, inputs.canaries, inputs.space, inputs.trained_clients,
                                       options, comm)
        report["canary_max_exposure"] = canary_report.pop("max_exposure")
        report["canary_extraction_rate"] = canary_report.pop("extraction_rate")
        details["canaries"] = canary_report
    report["details"] = details
    return report, roc_png(panels)


def audit_inputs(run_dir: str | os.PathLike, options: AuditOptions) -> AuditInputs:
    """Every check of the options and the run, then the examples and clients to score."""
    for flag, value in (("--max-examples", options.max_examples), ("--client-examples", options.client_examples)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected a positive number of examples")
    directory = read_audited_run(run_dir)
    reference = reference_run(options.reference, directory) if options.reference else None
    held_out = np.asarray(directory.result.holdout_clients, dtype=np.int64)
    do_user_level = _user_level_wanted(directory, held_out, options.user_level)
    run = open_run(directory)
    canaries, space = _canaries_to_audit(run, options) if options.canaries else (None, None)
    excluded = _canary_examples(canaries or run.data.attributes.get("canaries") or {})  # audited on their own
    trained = np.asarray(directory.result.clients_trained or [], dtype=np.int64)
    clients = run_clients(directory, run.data.n_examples) if run.federated else None
    client_train = clients.train if clients is not None else None
    member_pool, members = _member_pool(run, clients)
    member_pool = np.setdiff1d(member_pool, excluded)
    sets = example_sets(member_pool, run.data.test_index_list, run.config.seed, options.max_examples)
    if len(sets.members) == 0:
        raise UserError(f"run {run_dir} has no member or no test example to audit ({sets.member_pool} training "
                        f"examples of trained clients, {sets.non_member_pool} test examples)")
    per_client: dict[int, np.ndarray] = {}
    if do_user_level:
        per_client = client_example_sample(client_train, np.concatenate([trained, held_out]), run.config.seed,
                                           options.client_examples)
        per_client = {c: np.setdiff1d(e, excluded) for c, e in per_client.items()}
    return AuditInputs(run, reference, sets, trained, held_out, do_user_level, per_client, canaries, space, members)


def _user_level_wanted(directory: RunDirectory, held_out: np.ndarray, asked: bool | None) -> bool:
    """--user-level auto (None): when the run held clients out; true: refused where it cannot run."""
    federated = not directory.result.centralized
    wanted = asked if asked is not None else (federated and len(held_out) > 0)
    if wanted and (not federated or len(held_out) == 0):
        what = "is centralized" if not federated else "held no clients out"
        raise UserError(f"user-level membership inference needs clients that never trained: run {directory} {what}; "
                        "train it with fednlp train --holdout-clients F (e.g. 0.2)")
    return wanted


def _canaries_to_audit(run: OpenedRun, options: AuditOptions) -> tuple[dict[str, Any], SecretSpace]:
    """--canaries: the data file's canary record, its secret space checked, and a head that scores them."""
    from fednlp.tasks.registry import TASKS

    canaries, space = canary_record(run.data, run.config.data)
    check_enumerable(space, options.extrapolate)
    if not run.task.scores_canaries:
        heads = ", ".join(sorted(name for name, cls in TASKS.items() if cls.scores_canaries))
        raise UserError(f"--canaries: a {run.task.name} model does not score canary texts; canaries are for "
                        f"{heads} runs")
    check_head_reads(canaries, run.data.task_type, run.task, run.config.data)  # a secret the run never read
    return canaries, space


def _canary_examples(record: dict[str, Any]) -> np.ndarray:
    return np.array([e for c in record.get("canaries", []) for e in c["examples"]], dtype=np.int64)


def _member_pool(run: OpenedRun, clients: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The examples the run trained on (in some local batch of some round, or some batch of a centralized run:
    fednlp/audit/members.py), and how they were defined."""
    if not run.federated:
        used = used_examples_centralized(run.config, run.data, run.features)
        return used.members, {"definition": CENTRALIZED_MEMBERS, "examples_used": int(used.used.sum()),
                              "training_examples": used.examples_held}
    used = used_examples(run.config, run.data, run.features, clients)
    return used.members, {"definition": FEDERATED_MEMBERS, "examples_used": int(used.used.sum()),
                          "examples_held_by_trained_clients": used.examples_held, "client_rounds": used.client_rounds}


def _target_and_reference_losses(inputs: AuditInputs, target: torch.nn.Module, comm: Any
                                  ) -> tuple[dict[int, float], dict[int, float]]:
    """Each needed example's loss under the audited model, then under the reference (another run's model, or
    the run's initial one), loaded only once the target's losses are in."""
    needed = inputs.needed
    target_losses = dict(zip(needed.tolist(), _losses(target, inputs.run, needed, comm)))
    run = inputs.run
    reference_model = saved_model(run, inputs.reference) if inputs.reference else initial_model(run)
    reference_losses = dict(zip(needed.tolist(), _losses(reference_model, run, needed, comm)))
    return target_losses, reference_losses


def membership_report(inputs: AuditInputs, target_losses: dict[int, float], reference_losses: dict[int, float]
                      ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The report's headline numbers, its details and the ROC panels, example level then user level."""
    example = example_level(target_losses, reference_losses, inputs.sets)
    calibrated = example["attacks"]["calibrated"]
    report: dict[str, Any] = {
        "mia_attack": "calibrated loss (the model's loss minus the reference's)",
        "mia_members": inputs.members.get("definition"),
        "mia_auc": calibrated["auc"],
        "mia_tpr_at_1pct_fpr": calibrated["tpr_at_1pct_fpr"],
        "mia_tpr_at_0.1pct_fpr": calibrated["tpr_at_0.1pct_fpr"],
        "mia_balanced_accuracy": calibrated["balanced_accuracy"],
    }
    seed = inputs.run.config.seed
    details: dict[str, Any] = {
        "reference": str(inputs.reference.path) if inputs.reference else f"the run's initial model (seed {seed})",
        "example_level": _without_roc(example),
        "members": inputs.members,
    }
    panels = {"examples": _roc_panel(example)}
    if inputs.user_level:
        user = user_level(target_losses, reference_losses, inputs.per_client, inputs.trained_clients, inputs.held_out)
        report.update(user_mia_auc=user["attacks"]["calibrated"]["auc"],
                      user_mia_tpr_at_1pct_fpr=user["attacks"]["calibrated"]["tpr_at_1pct_fpr"])
        details["user_level"] = _without_roc(user)
        panels["clients"] = _roc_panel(user)
    else:
        details["user_level"] = ("not run: " + ("the run held no clients out (fednlp train --holdout-clients F)"
                                                if inputs.run.federated else "a centralized run has no clients"))
    return report, details, panels


def _roc_panel(level: dict[str, Any]) -> dict[str, Any]:
    return {f"{name} (AUC {m['auc']:.3f})": level["roc"][name] for name, m in level["attacks"].items()}


def _losses(model: torch.nn.Module, run: OpenedRun, examples: np.ndarray, comm: Any) -> np.ndarray:
    config = run.config
    return example_losses(model, run.task, run.features, examples, comm, config.eval_batch_size, run.device,
                          config.precision)


def _without_roc(level: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in level.items() if k != "roc"}


def audit_canaries(run: OpenedRun, model: torch.nn.Module, record: dict[str, Any], space: Any,
                   trained_clients: np.ndarray, options: AuditOptions, comm: Any) -> dict[str, Any]:
    """Exposure of every canary (and per repeat count, over the canaries whose clients trained), and the
    extraction of each one by model inversion (text classification)."""
    canaries = record["canaries"]
    config = run.config
    trained_set = set(trained_clients.tolist())
    trained = [not run.federated or bool(trained_set & set(c["clients"])) for c in canaries]

    def score(secrets: list[str]) -> np.ndarray:
        return template_losses(model, run.task, record["template"], record.get("label"), secrets, comm, run.device,
                               placement(run.data.task_type, record.get("secret_field")).secret_field)

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
    if run.task.extracts_canaries and comm.rank == 0:
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
    elif not run.task.extracts_canaries:
        out["extraction"] = f"not run: model inversion is for text classifiers, this is a {run.task.name} model"
    out["per_canary"] = per_canary
    return out


def template_losses(model: torch.nn.Module, task: Any, template: str, label: str | None, secrets: list[str], comm: Any,
                    device: torch.device, secret_field: str | None = None) -> np.ndarray:
    """The model's summed loss (log-perplexity, in nats) of the template filled with each secret, through the task
    head's own features and per-example loss (a canary is scored exactly as a training example would be): the
    mean token loss times the tokens scored, so candidates of different token lengths rank as in Carlini et al.
    2019 (a label's loss is one token)."""
    pairs = [canary_texts(task.data.task_type, template, s, label, secret_field) for s in secrets]
    data = DataFile(task_type=task.data.task_type, fields={"X": [x for x, _ in pairs], "Y": [y for _, y in pairs]},
                    train_index_list=[], test_index_list=list(range(len(pairs))), label_vocab=task.data.label_vocab)
    head = type(task)(data, task.tokenizer, task.config)
    features = head.build_features()
    examples = np.arange(len(pairs))
    means = example_losses(model, head, features, examples, comm, task.config.eval_batch_size, device,
                           task.config.precision)
    rows = features.rows_of(examples)
    tokens = np.bincount(features.example_of_row[rows], weights=head.scored_tokens(features, rows),
                         minlength=len(pairs))
    return means * tokens


def write_audit(run_dir: str | os.PathLike, report: dict[str, Any], png: bytes) -> Path:
    """audit.json, audit_roc.png and result.json's `audit` block, under the run directory's lock; result.json is
    parsed before anything is written."""
    directory = RunDirectory(run_dir)
    out = directory.path / "audit.json"
    directory.add_block("audit", report, files={directory.path / "audit_roc.png": png,
                                                out: (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()})
    return out


def format_audit(report: dict[str, Any]) -> str:
    lines = []
    members = report["details"].get("members") or {}
    if "examples_held_by_trained_clients" in members:
        lines.append(f"members: the {members['examples_used']} examples in the run's local batches (of "
                     f"{members['examples_held_by_trained_clients']} its trained clients held)")
    elif "training_examples" in members:
        lines.append(f"members: the {members['examples_used']} examples in the run's batches (of "
                     f"{members['training_examples']} training examples)")
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
