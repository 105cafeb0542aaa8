"""One typed config, loaded from YAML and command-line flags of the same names, validated once.

The dataclass is the schema (fednlp/options.py): each field becomes `--field-name` (underscores to dashes), YAML
keys use either spelling, flags override YAML, YAML overrides defaults. Bools parse "true/false/1/0/yes/no", and a
bool flag given alone means true (`--quiet`). A feature owns its options as a section (DPOptions in
fednlp/privacy/options.py, ContinualOptions in fednlp/federation/continual.py): flat flags (`--dp-clip`,
`--periods`), a YAML mapping (`dp: {clip: 1.0}`; the flat keys of older files still load).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fednlp.config_checks import check_run_config
from fednlp.errors import UserError
from fednlp.fairness.augment_options import AugmentOptions
from fednlp.federation.continual import ContinualOptions
from fednlp.options import Flat, flat_options, flat_values, options_from_values, section, value_arguments
from fednlp.options import option as _opt
from fednlp.options import parse_bool
from fednlp.privacy.options import DPOptions
from fednlp.registry import help_listing


@dataclass
class RunConfig:
    """What both federated and centralized runs need."""

    data: str = _opt("data file (.h5)")
    task: str | None = _opt(help_listing("task head: {names} (default: the head of the data file's task type; lm "
                                         "is never inferred)", "fednlp.tasks.registry:TASKS"))
    model: str = _opt(help_listing("a hub name, a local directory or a built-in: {names}",
                                   "fednlp.tasks.models:ALIASES"), default="tiny-bert")
    max_seq_length: int = _opt("tokens per input, special tokens included", default=128)
    batch_size: int = _opt("training batch size", default=16)
    eval_batch_size: int = _opt("evaluation batch size", default=64)
    eval_max_examples: int | None = _opt("evaluate on a seeded random subset of N test examples (default: all; "
                                         "with --final-eval full, intermediate evaluations only)")
    lr: float = _opt("client (or centralized) learning rate", default=5e-5)
    optimizer: str = _opt("sgd or adamw", default="adamw")
    weight_decay: float = _opt("weight decay of the optimizer", default=0.0)
    max_grad_norm: float | None = _opt("clip gradients to this norm (default: no clipping)")
    precision: str = _opt("fp32, or bf16 autocast (GPU or CPU), or fp16 autocast (GPU only)", default="fp32")
    device: str = _opt("auto (GPU local rank mod GPU count when CUDA is available, else CPU), cpu or cuda",
                       default="auto")
    seed: int = _opt("root seed of every random choice", default=0)
    eval_every: int = _opt("evaluate every N rounds (centralized: epochs)", default=1)
    freeze_layers: int | None = _opt("freeze the embeddings and the first K transformer blocks (FedNLP's option)")
    cache_frozen: bool = _opt("with --freeze-layers K: run the embeddings and blocks 1..K once per example and cache "
                              "their output beside the feature cache (memory-mapped, shared by the ranks); training "
                              "and evaluation start at block K+1. The frozen blocks then run in eval mode, without "
                              "dropout (GPT-2's position embeddings are frozen too)", default=False)
    frozen_cache_dtype: str = _opt("--cache-frozen: the dtype the cached states are stored in: bf16, fp16 or fp32 "
                                   "(fp32: the same weights as computing the frozen blocks at every step)",
                                   default="bf16")
    cls_only_last_block: bool = _opt("classification with a BERT-family model: the last block computes only the "
                                     "[CLS] row the pooler reads (keys and values still over every token). Exact "
                                     "without dropout; with dropout the same distribution, not the same random "
                                     "stream (fednlp/tasks/cls_only.py)", default=False)
    doc_stride: int = _opt("QA: overlap, in tokens, between the windows of a long context (SQuAD recipes: "
                           "128 with --max-seq-length 384)", default=32)
    max_answer_length: int = _opt("QA: longest answer span, in tokens", default=30)
    max_target_length: int = _opt("seq2seq: tokens per target (training and generation)", default=64)
    num_beams: int = _opt("seq2seq: beams of the beam search at evaluation", default=4)
    eval_num_beams: int | None = _opt("seq2seq: beams at intermediate evaluations (default: --num-beams; the final "
                                      "one too unless --final-eval full)")
    final_eval: str = _opt("the final evaluation: same (like the others: --eval-max-examples, --eval-num-beams) or "
                           "full (every test example, --num-beams); result.json records which", default="same")
    out: str | None = _opt("run directory (default: runs/<generated name>)")
    overwrite: bool = _opt("replace a finished run in --out", default=False)
    save_model: bool = _opt("save the final model and tokenizer in RUN_DIR/model/ (save_pretrained)", default=True)
    quiet: bool = _opt("no progress bar (the per-evaluation lines and the final line stay)", default=False)
    report_to: str = _opt("also log every metric per round to: none or tensorboard (RUN_DIR/tensorboard)",
                          default="none")
    # Counterfactual data augmentation (fednlp/fairness/augment.py): --augment, --augment-fraction, an `augment:`
    # section in YAML.
    augment: AugmentOptions = section(AugmentOptions)

    def validate(self) -> None:
        check_run_config(self)  # every numeric option: finite, in range (fednlp/config_checks.py); --out creatable
        if not self.data:
            raise UserError("--data is required")
        if self.freeze_layers is not None and self.freeze_layers < 0:
            raise UserError(f"--freeze-layers must be 0 or more, got {self.freeze_layers}")
        if self.cache_frozen and self.freeze_layers is None:
            raise UserError("--cache-frozen needs --freeze-layers K (the blocks whose output it caches)")
        if self.frozen_cache_dtype not in ("bf16", "fp16", "fp32"):
            raise UserError(f"--frozen-cache-dtype must be bf16, fp16 or fp32, got {self.frozen_cache_dtype!r}")
        for name in ("max_seq_length", "batch_size", "eval_batch_size", "eval_every", "doc_stride",
                     "max_answer_length", "max_target_length", "num_beams"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserError(f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise UserError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise UserError(f"--max-grad-norm must be positive, got {self.max_grad_norm}")
        if self.eval_num_beams is not None and self.eval_num_beams <= 0:
            raise UserError(f"--eval-num-beams must be positive, got {self.eval_num_beams}")
        if self.final_eval not in ("same", "full"):
            raise UserError(f"--final-eval must be same or full, got {self.final_eval!r}")
        if self.report_to not in ("none", "tensorboard"):
            raise UserError(f"--report-to must be none or tensorboard, got {self.report_to!r}")
        self.augment.validate()  # fednlp/fairness/augment_options.py


@dataclass
class TrainConfig(RunConfig):
    """A federated run."""

    partition: str = _opt("partition file (.h5)")
    # `fednlp partition --method` names a partitioning method; here the idea is a group of the partition
    # file, so the flag is --partition-group (the field, YAML key and config.yaml keep FedNLP's `method`,
    # and --method stays an alias).
    method: str = _opt("group of the partition file, e.g. niid_label_clients=100_alpha=1.0 (alias: --method)",
                       flag="partition-group")
    algorithm: str = _opt(help_listing("federated algorithm: {names} (`fednlp algorithms` lists their options)",
                                       "fednlp.algorithms.registry:ALGORITHMS"), default="fedavg")
    rounds: int = _opt("communication rounds", default=10)
    clients_per_round: int = _opt("clients sampled each round", default=10)
    # `replaces`: giving one of the two (a flag over --config, or the YAML over a resumed run's config) drops the
    # other from the layers below, so `--config 20news.yaml --local-steps 1` means what it says.
    local_epochs: float | None = _opt("local epochs per client (default 1 unless --local-steps)",
                                      replaces="local_steps")
    local_steps: int | None = _opt("fixed number of local steps per client instead of epochs (replaces the "
                                   "config's local_epochs)", replaces="local_epochs")
    server_lr: float | None = _opt("server learning rate (default 1.0 = plain FedAvg; required by fedadam, fedyogi, "
                                   "fedadagrad and fedopt)")
    sampler: str = _opt(help_listing("client sampler: {names} (default uniform; fednlp/algorithms/samplers.py)",
                                     "fednlp.algorithms.samplers:SAMPLERS"), default="uniform")
    # Continual FL (fednlp/federation/continual.py): --continual, --periods, ..., a `continual:` section in YAML.
    continual: ContinualOptions = section(ContinualOptions)
    activity_power: float = _opt("--sampler activity: inclusion proportional to n_k ** G (0 uniform, 0.5, 1 the "
                                 "default); Horvitz-Thompson weights keep the aggregate unbiased", default=1.0)
    # The algorithms' own options (fedprox's --mu, the adaptive servers' --beta1/--beta2/--tau, a plugin's...),
    # declared once in each algorithm's Options (fednlp/algorithms/base.py): flags and YAML keys of the same
    # names land here, and config.yaml lists them beside the other options.
    algorithm_args: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})
    checkpoint_every: int | None = _opt("write a checkpoint every N rounds (and after the last round)")
    eval_clients: str | None = _opt("also evaluate the global model on each client's own test data: 'all', N (a "
                                    "seeded sample of N clients, the same at every evaluation) or ids:3,17,42")
    eval_clients_every: int | None = _opt("evaluate the clients every K rounds (default: at the final evaluation)")
    holdout_clients: float = _opt("keep a seeded fraction of the clients out of every cohort (recorded in "
                                  "result.json; user-level membership inference's non-members)", default=0.0)
    on_nonfinite: str = _opt("a client whose loss or update is NaN or infinite: stop (exit 3, the last finite "
                             "checkpoint kept) or skip-client (left out of the round, the rest renormalised; a round "
                             "left with no client exits 3 too)",
                             default="stop")
    parallel_clients: int = _opt("train N of a rank's clients of a round at once: their weights and optimizer states "
                                 "stacked, one vectorised step for the group (fednlp/federation/parallel_clients.py); "
                                 "1 (default) trains them one after another. Memory grows by about N x the trainable "
                                 "weights x 4 (sgd) or 6 (adamw) plus N x one client's activations (tiny-bert, N = 10: "
                                 "peak 630 -> 810 MB at batch 8 x length 32, 850 -> 2240 MB at 16 x 128; MiniLM "
                                 "with AdamW at 16 x 128: 2.0 -> 17.2 GB); with "
                                 "dropout the masks are the group's own (exact only without dropout); what the group "
                                 "step cannot "
                                 "run (DP-SGD, --cache-frozen, seq2seq, ...) trains one at a time, named in "
                                 "result.json", default=1)
    # Differential privacy (fednlp/privacy/; docs/privacy.md): --dp and the --dp-* flags, a `dp:` section in YAML.
    dp: DPOptions = section(DPOptions)

    def validate(self) -> None:
        super().validate()
        self.dp.validate(self)  # fednlp/privacy/options.py
        self.augment.check_privacy(self.dp.mechanism)
        if not self.partition:
            raise UserError("--partition is required")
        if not self.method:
            raise UserError("--partition-group (alias --method) is required: a group of the partition file")
        if self.rounds <= 0:
            raise UserError(f"--rounds must be positive, got {self.rounds}")
        if self.clients_per_round <= 0:
            raise UserError(f"--clients-per-round must be positive, got {self.clients_per_round}")
        if self.local_epochs is not None and self.local_steps is not None:
            raise UserError("give --local-epochs or --local-steps, not both")
        if self.local_steps is not None and self.local_steps <= 0:
            raise UserError(f"--local-steps must be positive, got {self.local_steps}")
        if self.local_epochs is not None and self.local_epochs <= 0:
            raise UserError(f"--local-epochs must be positive, got {self.local_epochs}")
        if self.server_lr is not None and self.server_lr <= 0:
            raise UserError(f"--server-lr must be positive, got {self.server_lr}")
        if self.parallel_clients < 1:
            raise UserError(f"--parallel-clients must be at least 1, got {self.parallel_clients}")
        if not 0 <= self.holdout_clients < 1:
            raise UserError(f"--holdout-clients must be a fraction in [0, 1), got {self.holdout_clients}")
        self.continual.validate()  # fednlp/federation/continual.py
        self.rounds = self.continual.rounds or self.rounds
        if self.eval_clients is not None and not (self.eval_clients == "all" or self.eval_clients.isdigit()
                                                  or self.eval_clients.startswith("ids:")):
            raise UserError(f"--eval-clients must be all, a number of clients or ids:ID,ID,..., got {self.eval_clients!r}")
        if self.eval_clients is not None and self.eval_clients.isdigit() and int(self.eval_clients) == 0:
            raise UserError("--eval-clients must be all, a positive number of clients or ids:ID,ID,..., got 0")
        if self.on_nonfinite not in ("stop", "skip-client"):
            raise UserError(f"--on-nonfinite must be stop or skip-client, got {self.on_nonfinite!r}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise UserError(f"--checkpoint-every must be positive, got {self.checkpoint_every}")


@dataclass
class CentralizedConfig(RunConfig):
    """The centralized baseline on the union of all training data."""

    epochs: float | None = _opt("training epochs (default 1 unless --steps)", replaces="steps")
    steps: int | None = _opt("fixed number of training steps instead of epochs (replaces the config's epochs)",
                             replaces="epochs")

    def validate(self) -> None:
        super().validate()
        if self.epochs is not None and self.steps is not None:
            raise UserError("give --epochs or --steps, not both")
        if (self.epochs is not None and self.epochs <= 0) or (self.steps is not None and self.steps <= 0):
            raise UserError("--epochs and --steps must be positive")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type,
                         extra: dict[str, tuple[type, str]] | None = None) -> None:
    """One flag per option (a section's flat: --dp-clip), and per `extra` option (name -> (type, help)), default
    None so that only what the user typed overrides the YAML."""
    parser.add_argument("--config", help="YAML file of options (flags override it)")
    for o in flat_options(config_cls):
        parser.add_argument(*o.flags, dest=o.name, default=None, metavar=o.kind.__name__.upper(),
                            **o.help_arguments(), **value_arguments(o.kind))
    for name, (kind, text) in (extra or {}).items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=kind.__name__.upper(),
                            help=text, **value_arguments(kind))


def load_config(config_cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None,
                extra: dict[str, tuple[type, str]] | None = None,
                shared_with: tuple[type, dict[str, tuple[type, str]]] | None = None) -> Any:
    """Defaults < `base` (e.g. a resumed run's config) < --config YAML < flags. `base` and the YAML's values are
    flat (as read_yaml_config returns them). `extra` (name -> (type, help)) are the algorithms' options: they go
    to the config's `algorithm_args`. `shared_with`: see read_yaml_config.

    A layer's value replaces the lower layers' value of the same option and of the options it `replaces`
    (--local-steps on the command line replaces the YAML's local_epochs); within one layer both are refused."""
    flags = {name: getattr(args, name) for name in [o.name for o in flat_options(config_cls)] + list(extra or {})
             if getattr(args, name, None) is not None}
    layers = [base or {}, flags]
    if getattr(args, "config", None):
        layers.insert(1, read_yaml_config(args.config, config_cls, extra, shared_with))
    replaces = {o.name: o.field.metadata.get("replaces") for o in flat_options(config_cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if value is not None and replaces.get(name) and replaces[name] not in layer:
                values.pop(replaces[name], None)
        values.update(layer)
    config = build_config(config_cls, values, extra)
    config.validate()
    return config


def build_config(config_cls: type, values: dict[str, Any], extra: dict[str, tuple[type, str]] | None = None) -> Any:
    """The config from flat values (read_yaml_config's): sections gathered, the algorithms' options (`extra`)
    into `algorithm_args`; not validated."""
    values = dict(values)
    extras = {name: values.pop(name) for name in list(values) if name in (extra or {})}
    kwargs = options_from_values(config_cls, values)
    if extras or "algorithm_args" in values:
        kwargs["algorithm_args"] = {**values.get("algorithm_args", {}), **extras}
    return config_cls(**kwargs)


def read_yaml_config(path: str | Path, config_cls: type, extra: dict[str, tuple[type, str]] | None = None,
                     shared_with: tuple[type, dict[str, tuple[type, str]]] | None = None) -> dict[str, Any]:
    """The file's options as flat names (dp_clip, whether the file says `dp: {clip: ...}` or `dp_clip: ...`),
    each parsed to its type; a one-line UserError for anything else.

    `shared_with`: (config class, its extra options) of another command that reads the same files: its options
    that `config_cls` lacks are dropped, so configs/20news.yaml serves `train` and `centralized` alike (the
    baseline has no use for `partition` or `rounds`); a key neither knows is still refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path} is not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise UserError(f"--config {path} must hold a mapping of option: value")
    known = {o.name: o.kind for o in flat_options(config_cls)}
    known.update({name: kind for name, (kind, _) in (extra or {}).items()})
    other_cls, other_extra = shared_with or (config_cls, extra)
    everyone = flat_options(config_cls) + flat_options(other_cls)
    ignored = ({o.name for o in flat_options(other_cls)} | set(other_extra or {})) - set(known)
    aliases = {o.field.metadata["flag"].replace("-", "_"): o.name for o in everyone if o.field.metadata.get("flag")}
    values = {}
    for key, value in _flat_yaml(raw, path, everyone):
        name = str(key).replace("-", "_")
        name = aliases.get(name, name)
        if name in ignored:
            continue
        if name not in known:
            raise UserError(f"--config {path}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        kind = known[name]
        if value is not None:
            try:
                value = parse_bool(value) if kind is bool else kind(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError):
                raise UserError(f"--config {path}: {key} must be {kind.__name__}, got {value!r}") from None
        values[name] = value
    return values


def _flat_yaml(raw: dict[Any, Any], path: Path, options: list[Flat]) -> list[tuple[str, Any]]:
    """(key, value) pairs with each section's mapping (`dp: {clip: 1.0}`) spelled flat (dp_clip: 1.0)."""
    in_section: dict[str, dict[str, str]] = {}
    for o in options:
        if len(o.path) == 2:
            in_section.setdefault(o.path[0], {})[o.path[1]] = o.name
    pairs = []
    for key, value in raw.items():
        section_name = str(key).replace("-", "_")
        if section_name not in in_section or not isinstance(value, dict):
            pairs.append((key, value))
            continue
        for inner, inner_value in value.items():
            name = in_section[section_name].get(str(inner).replace("-", "_"))
            if name is None:
                raise UserError(f"--config {path}: unknown option {key}.{inner}; known in {key}: "
                                f"{', '.join(sorted(in_section[section_name]))}")
            pairs.append((name, inner_value))
    return pairs


def config_dict(config: Any) -> dict[str, Any]:
    """The resolved config as result.json records it: one key per option, by its flag's name (dp_clip), the
    algorithm's options beside the others (the leaderboard's columns, older records alike)."""
    return flat_values(type(config), config_sections(config))


def config_sections(config: Any) -> dict[str, Any]:
    """The resolved config as config.yaml holds it: a section's options under its name (dp: {clip: ...}), the
    algorithm's options beside the others; `--config` and `--resume` read it back."""
    values = dataclasses.asdict(config)
    values.update(values.pop("algorithm_args", {}))
    return values
