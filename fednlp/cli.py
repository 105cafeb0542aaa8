"""`fednlp` and its subcommands. Thin: parse, validate, call the library.

Every subcommand is one function `cmd_<name>(args)`; a UserError anywhere becomes one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Callable

from fednlp.audit.commands import add_audit_commands
from fednlp.errors import RunDiverged, RunInterrupted, UserError
from fednlp.fairness.commands import add_fairness_command
from fednlp.results.commands import COMPARE_HELP, add_compare_command


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from fednlp.data.readers import ReaderOptions
    from fednlp.options import add_option_arguments

    data = sub.add_parser("data", help="prepare data files")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = data_sub.add_parser(
        "prepare",
        help="read a raw dataset and write a data file (HDF5)",
        description="Read a raw dataset (a file or folder as it lies in ../shared/data, or hf:NAME[:CONFIG]) "
        "and write the data file of docs/design.md.",
    )
    p.add_argument("--dataset", required=True, help="reader name (see `fednlp data list`) or hf:NAME[:CONFIG]")
    p.add_argument("--source", required=True, help="the dataset's file or folder")
    p.add_argument("--out", required=True, help="data file to write (.h5)")
    add_option_arguments(p, ReaderOptions)  # --text-column ... --bad-records: fednlp/data/readers/__init__.py
    p.add_argument("--name", help="the dataset's name in run records and leaderboards (default: --dataset)")
    p.set_defaults(func=cmd_data_prepare)
    lst = data_sub.add_parser("list", help="list the dataset readers")
    lst.set_defaults(func=cmd_data_list)
    v = data_sub.add_parser(
        "validation-split",
        help="carve a validation data file out of a data file's training split (for tuning, never on test)",
        description="Write a data file holding only --data's training examples, a seeded --fraction of them as "
        "its test list: tune on it (partition it, train on it), then run the chosen settings on --data.",
    )
    v.add_argument("--data", required=True, help="the data file whose training split is carved (.h5)")
    v.add_argument("--fraction", type=float, default=0.1, help="share of the training examples held out (default 0.1)")
    v.add_argument("--seed", type=int, default=0, help="seed of the held-out choice (default 0)")
    v.add_argument("--out", required=True, help="validation data file to write (.h5)")
    v.set_defaults(func=cmd_data_validation_split)


def _add_partition_commands(sub: argparse._SubParsersAction) -> None:
    from fednlp.data_partition import PartitionParams
    from fednlp.options import add_option_arguments, value_arguments

    p = sub.add_parser(
        "partition",
        help="split a data file over clients; adds one group to a partition file",
        description="Add one partition (a group named like FedNLP's) to the partition file, created if missing.",
    )
    p.add_argument("--data", required=True, help="data file (.h5)")
    p.add_argument("--out", required=True, help="partition file (.h5), created if missing")
    add_option_arguments(p, PartitionParams)  # --method ... --seed: fednlp/data_partition/params.py
    p.add_argument("--overwrite", default=False, metavar="BOOL", **value_arguments(bool),
                   help="replace a group of the same name made with other settings (another seed, parameters or data "
                   "file, or by FedNLP's scripts); without it such a group is kept and the request refused")
    p.add_argument("--layout", choices=("csr", "fednlp"), default="csr",
                   help="csr (default): each split's indices end to end plus offsets per client, four datasets for "
                   "any number of clients; fednlp: FedNLP's partition_data/<client>/train|test, for FedNLP's code")
    p.set_defaults(func=cmd_partition)

    s = sub.add_parser(
        "partition-stats",
        help="print a partition's statistics and draw its client x label heat map",
    )
    s.add_argument("--data", required=True, help="data file (.h5)")
    s.add_argument("--partition", required=True, help="partition file (.h5)")
    s.add_argument("--method", help="group name in the partition file; default: every group")
    s.add_argument("--plot", help="write the client x label heat map to this PNG")
    s.add_argument("--sizes-plot", help="write the client-size distribution (log-log) to this PNG")
    s.set_defaults(func=cmd_partition_stats)


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    from fednlp.config import CentralizedConfig, TrainConfig, add_config_arguments

    t = sub.add_parser(
        "train",
        help="federated training (one process, or under mpirun -n R)",
        description="Federated training of a task head on a data file and a partition method. "
        "Options come from --config (YAML) and flags of the same names; flags win.",
    )
    add_config_arguments(t, TrainConfig)
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest complete "
                   "checkpoint, with its saved config (flags given here override it, e.g. more --rounds)")
    t.set_defaults(func=cmd_train)
    c = sub.add_parser(
        "centralized",
        help="the centralized baseline on the union of all training data",
        description="Train the same task and model on all training data of the data file; same run files.",
    )
    add_config_arguments(c, CentralizedConfig)
    c.set_defaults(func=cmd_centralized)

    from fednlp.results.leaderboard import FORMATS

    b = sub.add_parser("leaderboard", help="table of every run under a directory, with the gap to centralized")
    b.add_argument("runs", nargs="?", default="runs", help="directory searched for result.json files (default runs)")
    b.add_argument("--format", default="markdown", choices=FORMATS)
    b.add_argument("--out", help="write the table here instead of printing it")
    b.add_argument("--plots", help="also write the study's figures (PNG) into this directory")
    b.add_argument("--chance-data", nargs="+", metavar="FILE", help="data files (.h5) to compute chance levels from, "
                   "matched to the runs by checksum (kept in RUNS/chance.json; default: the runs' own data files)")
    b.add_argument("--update-docs", metavar="DOC", help="rebuild the tables between '<!-- table: RUNS -->' markers "
                   "of this Markdown page from their records (RUNS relative to the page), instead of one table")
    b.add_argument("--check", action="store_true", help="with --update-docs: only check, exit 2 if a table differs")
    b.set_defaults(func=cmd_leaderboard)

    a = sub.add_parser("algorithms", help="list the registered federated algorithms")
    a.set_defaults(func=cmd_algorithms)


def _add_supervise_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "supervise",
        help="run a training command; resume it from its newest checkpoint when the job dies (at most N times)",
        description="Run COMMAND (fednlp train, under mpirun or not, with --out RUN_DIR and --checkpoint-every) and "
        "restart it with --resume RUN_DIR when the job dies for a reason outside the run's control (a killed rank, "
        "SIGTERM from a scheduler); bad input (exit 2), a non-finite loss (exit 3) and Ctrl-C are not restarted. "
        "Each restart is logged on stderr and in RUN_DIR/restarts.jsonl.",
    )
    p.add_argument("--max-restarts", type=int, required=True, help="restarts allowed, 0 or more")
    p.add_argument("--restart-delay", type=float, default=2.0, help="seconds to wait before a restart (default 2)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the training command, after --")
    p.set_defaults(func=cmd_supervise)


DISTILL_HELP = "distil a language model from a trained one, with counterfactual role reversal (gender-fair student)"


def _add_distill_command(sub: argparse._SubParsersAction) -> None:
    from fednlp.config import add_config_arguments
    from fednlp.fairness.distill import DistillConfig

    p = sub.add_parser("distill", help=DISTILL_HELP, description="Train a student language model on the teacher "
                       "run's next-token distributions (KL at --temperature), optionally with --augment counterfactual "
                       "and --perturb equalise|swap (Gupta et al., ACL Findings 2022); the student's options are those "
                       "of `fednlp centralized` (--data and --max-seq-length default to the teacher's, --model to "
                       "tiny-gpt2). result.json gets a `distill` block: perplexities and occupation disparity.")
    add_config_arguments(p, DistillConfig)
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> None:
    from fednlp.config import load_config
    from fednlp.fairness.distill import DistillConfig, distill, teacher_base
    from fednlp.run.session import final_line

    if not args.teacher:
        raise UserError("--teacher RUN_DIR is required: a fednlp language-model run with its model/")
    result = distill(load_config(DistillConfig, args, teacher_base(args.teacher)))
    block = result["distill"]["disparity"]
    print(final_line(result) + f"; occupation disparity (TV) teacher {block['teacher']['total_variation_mean']:.4f}, "
          f"student {block['student']['total_variation_mean']:.4f}")


def cmd_supervise(args: argparse.Namespace) -> None:
    from fednlp.supervisor import supervise

    if args.max_restarts < 0:
        raise UserError(f"--max-restarts must be 0 or more, got {args.max_restarts}")
    if not 0 <= args.restart_delay < float("inf"):
        raise UserError(f"--restart-delay must be a finite number of seconds, 0 or more, got {args.restart_delay}")
    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    code = supervise(job, args.max_restarts, args.restart_delay)
    if code:
        raise SystemExit(code)


def cmd_train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fednlp.algorithms.registry import algorithm_option_fields
    from fednlp.config import TrainConfig, load_config, read_yaml_config
    from fednlp.federation.runtime import train_federated

    extra = algorithm_option_fields()
    base = None
    if args.resume:
        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume {args.resume}: no config.yaml there; is it a run directory?")
        base = {**read_yaml_config(saved, TrainConfig, extra), "out": args.resume}
    result = train_federated(load_config(TrainConfig, args, base, extra), resume=bool(args.resume))
    if result.get("world_size", 1) == 1 or _rank() == 0:
        from fednlp.run.session import final_line

        print(final_line(result))


def cmd_centralized(args: argparse.Namespace) -> None:
    from fednlp.algorithms.registry import algorithm_option_fields
    from fednlp.centralized import train_centralized
    from fednlp.config import CentralizedConfig, TrainConfig, load_config
    from fednlp.run.session import final_line

    # A --config shared with `fednlp train` (configs/*.yaml) loads here too, without its federation-only keys.
    config = load_config(CentralizedConfig, args, shared_with=(TrainConfig, algorithm_option_fields()))
    result = train_centralized(config)
    print(final_line(result))


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from fednlp.results.leaderboard import write_leaderboard

    if args.update_docs:
        from fednlp.results.docs_tables import update_docs

        changed = update_docs(args.update_docs, args.check, args.chance_data)
        print(f"{args.update_docs}: " + (f"rebuilt the tables of {', '.join(changed)}" if changed else "up to date"))
        return
    if args.check:
        raise UserError("--check goes with --update-docs DOC")
    from fednlp.files import check_output

    check_output(args.out, {"--chance-data": args.chance_data}, "report")
    check_output(args.plots, {"--chance-data": args.chance_data, "--out": args.out}, "directory", "--plots")
    text = write_leaderboard(args.runs, args.format, args.out, args.plots, args.chance_data)
    print(f"wrote {args.out}" if args.out else text)


def cmd_algorithms(args: argparse.Namespace) -> None:
    from fednlp.algorithms.registry import load_algorithms

    import dataclasses

    for name, cls in sorted(load_algorithms().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:12s} {doc[0] if doc else cls.__module__}")
        if cls.Options is not None:
            flags = ", ".join(f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls.Options))
            print(f"{'':12s} options: {flags}")


def _rank() -> int:
    from fednlp.federation.communicator import make_communicator

    return make_communicator().rank


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from fednlp.config_checks import check_numbers, check_output_path
    from fednlp.data.prepare import prepare
    from fednlp.data.readers import ReaderOptions
    from fednlp.files import check_output
    from fednlp.locks import locked_output
    from fednlp.options import from_arguments

    options = from_arguments(ReaderOptions, args)
    check_numbers(options)
    check_output_path(args.out, file="the data file to write (.h5)")
    check_output(args.out, {"--source": args.source}, "data")
    with locked_output(args.out, f"--out {args.out}"):  # a second prepare of the same file is refused
        data = prepare(args.dataset, args.source, args.out, options, name=args.name)
    print(
        f"wrote {args.out}: {data.task_type}, {data.n_examples} examples "
        f"({len(data.train_index_list)} train, {len(data.test_index_list)} test), {data.num_labels} labels"
    )
    skipped = data.attributes.get("skipped_records", 0)
    if skipped:
        print(f"fednlp: warning: skipped {skipped} bad record(s) in all; {args.out} lists them in its attributes "
              "(skipped_locations)", file=sys.stderr, flush=True)


def cmd_data_validation_split(args: argparse.Namespace) -> None:
    from fednlp.config_checks import check_output_path
    from fednlp.data.datafile import write_data_file
    from fednlp.data.validation import validation_file
    from fednlp.files import check_output
    from fednlp.locks import locked_output

    check_output_path(args.out, file="the validation data file to write (.h5)")
    check_output(args.out, {"--data": args.data}, "data")
    data = validation_file(args.data, args.fraction, args.seed)
    with locked_output(args.out, f"--out {args.out}"):
        write_data_file(data, args.out)
    print(f"wrote {args.out}: {len(data.train_index_list)} train, {len(data.test_index_list)} validation examples "
          f"(seed {args.seed}) from the training split of {args.data}")


def cmd_data_list(args: argparse.Namespace) -> None:
    from fednlp.data.readers import READERS, _load_builtin_readers

    _load_builtin_readers()
    for name, entry in sorted(READERS.items()):
        print(f"{name:12s} {entry.task_type:20s} {entry.help}")


def cmd_partition(args: argparse.Namespace) -> None:
    from fednlp.config_checks import check_numbers, check_output_path
    from fednlp.data_partition import PartitionParams, add_partition
    from fednlp.files import check_output
    from fednlp.locks import locked_output
    from fednlp.options import from_arguments

    params = from_arguments(PartitionParams, args)
    check_numbers(params)
    check_output_path(args.out, file="the partition file to write (.h5)")
    check_output(args.out, {"--data": args.data}, "partition")
    with locked_output(args.out, f"--out {args.out}"):  # two commands adding groups would lose one
        group = add_partition(args.data, args.out, params, overwrite=args.overwrite, layout=args.layout)
    print(f"wrote group {group} to {args.out}")
    from fednlp.data_partition.client_sizes import dropped_line
    from fednlp.data_partition.partition_file import read_partition

    if params.min_examples is not None and (dropped := dropped_line(read_partition(args.out, group).values)):
        print(dropped)


def cmd_partition_stats(args: argparse.Namespace) -> None:
    from fednlp.data_partition.stats import partition_stats_report
    from fednlp.files import check_output

    for flag, plot in (("--plot", args.plot), ("--sizes-plot", args.sizes_plot)):
        check_output(plot, {"--data": args.data, "--partition": args.partition}, "report", flag)
    print(partition_stats_report(args.data, args.partition, args.method, args.plot, args.sizes_plot))


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage error (an unknown flag, `--seed abc`) is one line too, like every other bad input; exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"fednlp: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="fednlp", description="Federated learning benchmarks for NLP: data, partitions, training, leaderboards."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    words = sys.argv[1:] if argv is None else argv
    for add in command_groups(words[0] if words else None):
        add(sub)
    for name, (text, _) in COMMANDS.items():  # the other commands: a name and a help line, nothing imported
        if name not in sub.choices:
            sub.add_parser(name, help=text)
    if words[:1] == ["train"]:
        _add_algorithm_options(sub.choices["train"])
    return parser


def command_groups(command: str | None) -> list[Callable[[argparse._SubParsersAction], None]]:
    """The groups whose parsers are built: the one holding `command` (building a group imports what its
    options need: the config, numpy, h5py, ...), and any group COMMANDS does not list; every group when
    `command` is "all" (the test that COMMANDS says what the groups add)."""
    listed = {group for _, group in COMMANDS.values()}
    if command == "all":
        return list(COMMAND_GROUPS)
    chosen = [COMMANDS[command][1]] if command in COMMANDS else []
    return chosen + [group for group in COMMAND_GROUPS if group not in listed and group not in chosen]


def _add_algorithm_options(train: argparse.ArgumentParser) -> None:
    """Every registered algorithm's own options as flags of `fednlp train` (only when training: loading the
    algorithms imports torch, which `fednlp --help` and `fednlp partition` should not wait for)."""
    from fednlp.algorithms.registry import algorithm_option_fields
    from fednlp.options import value_arguments

    taken = {a.dest for a in train._actions} | {s.lstrip("-").replace("-", "_") for a in train._actions
                                                for s in a.option_strings}
    group = train.add_argument_group("options of the algorithms (each algorithm refuses the others')")
    for name, (kind, text) in sorted(algorithm_option_fields(reserved=taken).items()):
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=kind.__name__.upper(),
                           help=text, **value_arguments(kind))  # a bool option alone means true


COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_commands,
    _add_partition_commands,
    _add_training_commands,
    _add_supervise_command,
    add_fairness_command,
    add_audit_commands,
    add_compare_command,
    _add_distill_command,
]

#: Each command's help line and the group that builds its parser. `fednlp --help` lists them without building
#: any group, so it imports neither torch nor numpy; `fednlp partition` builds only the partition group
#: (tests/test_startup.py checks that these lines are the groups' own and that each group is listed).
COMMANDS: dict[str, tuple[str, Callable[[argparse._SubParsersAction], None]]] = {
    "data": ("prepare data files", _add_data_commands),
    "partition": ("split a data file over clients; adds one group to a partition file", _add_partition_commands),
    "partition-stats": ("print a partition's statistics and draw its client x label heat map",
                        _add_partition_commands),
    "train": ("federated training (one process, or under mpirun -n R)", _add_training_commands),
    "centralized": ("the centralized baseline on the union of all training data", _add_training_commands),
    "leaderboard": ("table of every run under a directory, with the gap to centralized", _add_training_commands),
    "algorithms": ("list the registered federated algorithms", _add_training_commands),
    "supervise": ("run a training command; resume it from its newest checkpoint when the job dies (at most N "
                  "times)", _add_supervise_command),
    "fairness": ("fairness of a run's saved model: counterfactual flips, prediction sensitivity, CEAT, an LM's "
                 "occupation disparity",
                 add_fairness_command),
    "audit": ("privacy audit of a run's saved model: membership inference, canary exposure and extraction",
              add_audit_commands),
    "canaries": ("insert canaries (secrets) into a data file and partition", add_audit_commands),
    "compare": (COMPARE_HELP, add_compare_command),
    "distill": (DISTILL_HELP, _add_distill_command),
}


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser(argv)
    except UserError as exc:  # a broken plugin's options
        print(f"fednlp: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        from fednlp.data.readers.layout import one_line

        print(f"fednlp: error: {one_line(str(exc))}", file=sys.stderr, flush=True)
        return _end_job(exc.exit_code)
    except (RunInterrupted, RunDiverged) as exc:
        if _rank() == 0:
            print(f"fednlp: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except BaseException as exc:
        if not _under_mpi():
            raise
        import traceback

        traceback.print_exc()
        print(f"fednlp: rank {_rank()} failed: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        return _end_job(1)
    return 0


def _under_mpi() -> bool:
    from fednlp.federation.communicator import launched_by_mpi

    return launched_by_mpi()


def _end_job(code: int) -> int:
    """Under MPI a failing rank ends the whole job: no other rank may wait forever in a collective."""
    if _under_mpi():
        from fednlp.federation.communicator import make_communicator

        comm = make_communicator()
        if comm.world_size > 1:
            comm.abort(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
