"""What a federated and a centralized run share: data, task, features, model, device, run directory, record."""

from __future__ import annotations

import platform
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp.config import RunConfig, config_dict, config_sections
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.files import atomic_output, file_sha256
from fednlp.fairness.augment import training_features
from fednlp.tasks.frozen_prefix import cached_prefix_features
from fednlp.errors import UserError
from fednlp.run.preflight import check_before_writing
from fednlp.run.random_streams import Stream, run_rng
from fednlp.run.device import check_precision, pick_device
from fednlp.tasks.cls_only import cls_only_last_block
from fednlp.run.evaluation import (evaluate, evaluate_clients, evaluation_setting, eval_num_beams,
                                         generation_beams, show_progress)
from fednlp.run.local_training import PhaseTimer
from fednlp.locks import lock_run_dir, release_run_dir
from fednlp.results.run_files import RunDirectory, RunWriter
from fednlp.results.provenance import run_provenance
from fednlp.results.run_result import RunResult
from fednlp.tasks.base import Features, Task
from fednlp.tasks.models import freeze_layers, load_tokenizer
from fednlp.tasks.saved_tokenizer import save_run_tokenizer
from fednlp.tasks.registry import resolve_task


@dataclass
class Session:
    config: RunConfig
    comm: Any
    data: DataFile
    task: Task
    features: Features
    model: torch.nn.Module
    device: torch.device
    test_examples: np.ndarray
    timer: PhaseTimer
    writer: RunWriter | None  # rank 0 only
    run_dir: Path
    started: float
    last_metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation on the test set

    def evaluate(self, examples: np.ndarray | None = None, final: bool = False) -> dict[str, float]:
        """The model on the run's test examples (or on `examples`), sharded over the ranks. `final`: the run's
        last evaluation (with --final-eval full: every test example, --num-beams)."""
        start = time.perf_counter()
        if examples is None:
            examples = self.eval_examples(final)
        with generation_beams(self.task, eval_num_beams(self.config, final)):
            metrics = evaluate(self.model, self.task, self.features, examples, self.comm,
                               self.config.eval_batch_size, self.device, self.config.precision,
                               progress=show_progress(self.comm, self.config.quiet))
        self.timer.add("evaluation", start)
        if examples is self.test_examples or final:
            self.last_metrics = dict(metrics)
        return metrics

    def eval_examples(self, final: bool) -> np.ndarray:
        if final and self.config.final_eval == "full":
            return np.asarray(self.data.test_index_list, dtype=np.int64)
        return self.test_examples

    def eval_setting(self, final: bool) -> dict[str, Any]:
        """{"eval": what produced the numbers of `evaluate(final=final)`} for the round's record."""
        return {"eval": evaluation_setting(self.config, len(self.eval_examples(final)), len(self.data.test_index_list),
                                           final, self.task.generates)}

    def evaluate_clients(self, client_tests: dict[int, np.ndarray]) -> dict[int, dict[str, float]]:
        start = time.perf_counter()
        metrics = evaluate_clients(self.model, self.task, self.features, client_tests, self.comm,
                                   self.config.eval_batch_size, self.device, self.config.precision,
                                   progress=show_progress(self.comm, self.config.quiet))
        self.timer.add("client_evaluation", start)
        return metrics


def open_session(config: RunConfig, comm: Any, run_name: str, resume: bool = False,
                 check_model: Any = None) -> Session:
    """Everything a run needs, read and built; `check_model(model)` (e.g. an algorithm refusing a model it
    cannot train) runs before anything is written, so a refusal leaves no run directory behind."""
    started = time.perf_counter()
    run_dir = Path(config.out) if config.out else Path("runs") / run_name
    if not resume:
        check_run_dir(run_dir, config.overwrite)
    data = read_data_file(config.data, lazy=True)  # a column is read only when the run needs it
    task_cls = resolve_task(config.task, data.task_type, config.data)
    check_before_writing(config, data, task_cls.name)  # what needs the data, before the run directory is made
    tokenizer = load_tokenizer(config.model)
    specials = tokenizer.num_special_tokens_to_add(pair=task_cls.text_pairs)
    if config.max_seq_length <= specials:
        raise UserError(f"--max-seq-length {config.max_seq_length} leaves no room for text: "
                        f"the tokenizer adds {specials} special tokens")
    task = task_cls(data, tokenizer, config)
    # Rank 0 tokenizes (once, cached on disk); the others wait and read its cache. With --augment counterfactual
    # the features hold the training examples' swapped copies too (fednlp/fairness/augment.py).
    if comm.rank == 0:
        features = training_features(task, config)
    comm.barrier()
    if comm.rank != 0:
        features = training_features(task, config)
    device = pick_device(comm.local_rank, config.device)
    check_precision(device, config.precision)
    torch.manual_seed(config.seed)  # every rank builds the same initial model
    model = task.build_model(config.model)
    if config.freeze_layers is not None:
        freeze_layers(model, config.freeze_layers)
    if config.cls_only_last_block:
        cls_only_last_block(model, config.model)
    if check_model is not None:
        check_model(model)
    model = model.to(device)
    if config.cache_frozen:  # the frozen prefix runs once per example, not at every step (fednlp/tasks/frozen_prefix.py)
        features = cached_prefix_features(model, task, features, config, comm, device)
    test_examples = evaluation_examples(data, config)
    writer = None
    if comm.rank == 0:
        lock_run_dir(run_dir)  # held until finish(): a second run on this directory is refused (fednlp/locks.py)
        writer = RunWriter(run_dir)
        if not resume:
            writer.metrics_path.unlink(missing_ok=True)
            writer.clients_path.unlink(missing_ok=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a fresh run must never resume old rounds
            shutil.rmtree(writer.tensorboard_dir, ignore_errors=True)  # nor show them
        writer.write_config(config_sections(config))  # YAML: a feature's options as its section
    return Session(config, comm, data, task, features, model, device, test_examples, PhaseTimer(), writer,
                   run_dir, started)


def path_stem(path: str) -> str:
    """A data file or model path as it reads in a run name: its last part, without .h5."""
    return str(path).rstrip("/").split("/")[-1].removesuffix(".h5")


def evaluation_examples(data: DataFile, config: RunConfig) -> np.ndarray:
    """The test examples every evaluation uses: all, or a seeded random subset of --eval-max-examples
    (not the first N: test splits are often sorted by label)."""
    test_examples = np.asarray(data.test_index_list, dtype=np.int64)
    if config.eval_max_examples is not None and config.eval_max_examples < len(test_examples):
        rng = run_rng(config.seed, Stream.EVAL_SUBSET)
        test_examples = np.sort(rng.choice(test_examples, size=config.eval_max_examples, replace=False))
    return test_examples


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    if RunDirectory(run_dir).result_path.exists() and not overwrite:
        raise UserError(f"--out {run_dir} already holds a finished run (result.json); "
                        "choose another --out, pass --overwrite true, or continue it with --resume")


def base_result(session: Session) -> dict[str, Any]:
    """The keys every run record has; the caller adds algorithm-specific ones."""
    config = session.config
    return {
        "task": session.task.name,
        "task_type": session.data.task_type,
        "dataset": session.data.attributes.get("dataset", Path(config.data).stem),
        "model": config.model,
        "metric": session.task.primary_metric,
        "world_size": session.comm.world_size,
        "seed": config.seed,
        "device": str(session.device),
        "config": config_dict(config),
        "data_sha256": file_sha256(str(config.data)),
        "versions": versions(),
        "timing_s": {k: round(v, 4) for k, v in sorted(session.timer.seconds.items())},
    }


def finish(session: Session, result: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """Save the final model (rank 0), then write result.json: the last evaluation's metrics, the best value in
    the metric's own direction, and the whole history (one record per round)."""
    primary = session.task.primary_metric
    evaluations = [h for h in history if primary in h]
    final = evaluations[-1] if evaluations else {}
    greater = session.task.greater_is_better
    if session.config.save_model and session.writer is not None:
        result["model_dir"] = str(save_model(session))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    result.update(
        peak_rss_mb_per_rank=[round(m, 1) for m in session.comm.allgather(peak_mb)],
        value=final.get(primary),
        greater_is_better=greater,
        best_value=(max if greater else min)((h[primary] for h in evaluations), default=None),
        # The task's metrics of the last evaluation (a round's record also holds its training loss, period, ...).
        metrics=session.last_metrics or {k: v for k, v in final.items() if k not in ("round", "elapsed_s", "eval")},
        history=history,
        wall_time_s=round(time.perf_counter() - session.started, 3),
    )
    if session.device.type == "cuda":  # the accelerator's own peak beside the host's (benchmarks/gpu.sh reads it)
        peak_cuda = torch.cuda.max_memory_allocated(session.device) / 2**20
        result["peak_cuda_mb_per_rank"] = [round(m, 1) for m in session.comm.allgather(peak_cuda)]
    result.update(evaluation_share(session.timer.seconds, result["wall_time_s"]),
                  eval=final.get("eval"))
    if session.writer is not None:
        result["provenance"] = run_provenance(session.model, session.device)  # fednlp/results/provenance.py
        RunResult.parse(result, "the run's record")  # what every reader of result.json accepts
        session.writer.write_result(result)
        release_run_dir(session.run_dir)
    return result


def evaluation_share(seconds: dict[str, float], wall_time_s: float) -> dict[str, float]:
    """The evaluations' share of the run's wall time (the global and the per-client ones): where a user waits."""
    spent = seconds.get("evaluation", 0.0) + seconds.get("client_evaluation", 0.0)
    return {"evaluation_s": round(spent, 3), "evaluation_share": round(spent / wall_time_s, 4) if wall_time_s > 0 else 0.0}


def final_line(result: dict[str, Any]) -> str:
    """The line `fednlp train` and `fednlp centralized` print at the end."""
    if result["value"] is None:  # e.g. a resumed run with no round left to train or evaluate
        line = f"no evaluation in this run, in {result['wall_time_s']:.1f}s"
    else:
        line = (f"{result['metric']}={result['value']:.4f} (best {result['best_value']:.4f}) "
                f"in {result['wall_time_s']:.1f}s")
    return line + f", evaluation {100 * result.get('evaluation_share', 0.0):.0f}% of it"


def save_model(session: Session) -> Path:
    """The final global model and its tokenizer in RUN_DIR/model/, loadable with the task's
    AutoModelFor...from_pretrained and usable as --model for another run. Written beside, then renamed."""
    target = RunDirectory(session.run_dir).model_dir
    with atomic_output(target) as tmp:
        session.model.save_pretrained(tmp)
        save_run_tokenizer(session.task.tokenizer, tmp, session.task.max_length)  # truncates as the run did
    return target


def versions() -> dict[str, str]:
    import h5py
    import transformers

    import fednlp

    found = {"fednlp": fednlp.__version__, "python": platform.python_version(), "torch": torch.__version__,
             "transformers": transformers.__version__, "numpy": np.__version__, "h5py": h5py.__version__}
    commit = git_commit()
    if commit:
        found["fednlp_git_commit"] = commit
    return found


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
