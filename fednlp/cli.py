"""`fednlp` and its subcommands. Thin: parse, validate, call the library.

Every subcommand is one function `cmd_<name>(args)`; a UserError anywhere becomes one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Callable

from fednlp.errors import RunDiverged, RunInterrupted, UserError


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="prepare data files")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = data_sub.add_parser(
        "prepare",
        help="read a raw dataset and write a data file (HDF5)",
        description="Read a raw dataset (a file or folder as it lies in ../shared/data, or hf:NAME[:CONFIG]) "
        "and write the data file of DESIGN.md.",
    )
    p.add_argument("--dataset", required=True, help="reader name (see `fednlp data list`) or hf:NAME[:CONFIG]")
    p.add_argument("--source", required=True, help="the dataset's file or folder")
    p.add_argument("--out", required=True, help="data file to write (.h5)")
    p.add_argument("--text-column", help="text column (csv/tsv/jsonl/hf)")
    p.add_argument("--label-column", help="label column (csv/tsv/jsonl/hf)")
    p.add_argument("--token-column", type=int, default=0, help="token column index (conll), default 0")
    p.add_argument("--tag-column", type=int, default=-1, help="tag column index (conll), default -1 (last)")
    p.add_argument("--source-column", help="seq2seq source column (jsonl/hf), or per-example group column")
    p.add_argument("--target-column", help="seq2seq target column (jsonl/hf)")
    p.add_argument("--user-column", help="who wrote each example, stored as field user (csv/tsv/jsonl/hf)")
    p.add_argument("--time-column", help="when, as a number, stored as field order (csv/tsv/jsonl/hf)")
    p.add_argument("--group-column", help="protected group for group fairness, stored as field group "
                   "(csv/tsv/jsonl/hf)")
    p.add_argument("--task", help="task type for hf: datasets: text_classification, sequence_tagging, "
                   "span_extraction or seq2seq")
    p.add_argument("--test-fraction", type=float, help="make a seeded test split of this fraction")
    p.add_argument("--seed", type=int, default=0, help="seed of the test split")
    p.add_argument("--name", help="the dataset's name in run records and leaderboards (default: --dataset)")
    p.add_argument("--bad-records", choices=("error", "skip"), default="error",
                   help="a malformed raw record (a row, line, sentence or question): error (default) refuses the "
                   "whole file naming FILE:LINE; skip drops it with a warning naming FILE:LINE and lists it in the "
                   "data file's attributes (skipped_records, skipped_locations)")
    p.set_defaults(func=cmd_data_prepare)
    lst = data_sub.add_parser("list", help="list the dataset readers")
    lst.set_defaults(func=cmd_data_list)


def _add_partition_commands(sub: argparse._SubParsersAction) -> None:
    from fednlp.data_partition import METHODS

    p = sub.add_parser(
        "partition",
        help="split a data file over clients; adds one group to a partition file",
        description="Add one partition (a group named like FedNLP's) to the partition file, created if missing.",
    )
    p.add_argument("--data", required=True, help="data file (.h5)")
    p.add_argument("--out", required=True, help="partition file (.h5), created if missing")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--clients", type=int, required=True, help="number of clients")
    p.add_argument("--alpha", type=float, help="Dirichlet concentration (niid_label, niid_cluster)")
    p.add_argument("--beta", type=float, help="Dirichlet concentration of client sizes (niid_quantity)")
    p.add_argument("--clusters", type=int, help="number of k-means clusters (niid_cluster)")
    p.add_argument("--labels-per-client", type=int, help="labels per client (pathological)")
    p.add_argument("--field", help="per-example field whose values are the clients (natural); default source")
    p.add_argument("--min-examples", type=int, help="natural: drop the values (users) with fewer than K training "
                   "examples (reported, and recorded in the group)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
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
    from fednlp.centralized import train_centralized
    from fednlp.config import CentralizedConfig, load_config
    from fednlp.run.session import final_line

    result = train_centralized(load_config(CentralizedConfig, args))
    print(final_line(result))


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from fednlp.results.leaderboard import write_leaderboard

    text = write_leaderboard(args.runs, args.format, args.out, args.plots)
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
    from fednlp.locks import locked_output

    options = ReaderOptions(
        text_column=args.text_column,
        label_column=args.label_column,
        token_column=args.token_column,
        tag_column=args.tag_column,
        source_column=args.source_column,
        target_column=args.target_column,
        task=args.task,
        test_fraction=args.test_fraction,
        seed=args.seed,
        bad_records=args.bad_records,
        user_column=args.user_column,
        time_column=args.time_column,
        group_column=args.group_column,
    )
    check_numbers(options)
    check_output_path(args.out, file="the data file to write (.h5)")
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


def cmd_data_list(args: argparse.Namespace) -> None:
    from fednlp.data.readers import READERS, _load_builtin_readers

    _load_builtin_readers()
    for name, entry in sorted(READERS.items()):
        print(f"{name:12s} {entry.task_type:20s} {entry.help}")


def cmd_partition(args: argparse.Namespace) -> None:
    from fednlp.config_checks import check_numbers, check_output_path
    from fednlp.data_partition import PartitionParams, add_partition
    from fednlp.locks import locked_output

    params = PartitionParams(
        method=args.method,
        n_clients=args.clients,
        alpha=args.alpha,
        beta=args.beta,
        clusters=args.clusters,
        labels_per_client=args.labels_per_client,
        field=args.field,
        min_examples=args.min_examples,
        seed=args.seed,
    )
    check_numbers(params, flags={"n_clients": "--clients"})
    check_output_path(args.out, file="the partition file to write (.h5)")
    with locked_output(args.out, f"--out {args.out}"):  # two commands adding groups would lose one
        group = add_partition(args.data, args.out, params, overwrite=args.overwrite, layout=args.layout)
    print(f"wrote group {group} to {args.out}")
    from fednlp.data_partition.client_sizes import dropped_line
    from fednlp.data_partition.partition_file import read_partition

    if params.min_examples is not None and (dropped := dropped_line(read_partition(args.out, group).values)):
        print(dropped)


def cmd_partition_stats(args: argparse.Namespace) -> None:
    from fednlp.data_partition.stats import partition_stats_report

    print(partition_stats_report(args.data, args.partition, args.method, args.plot, args.sizes_plot))


def _add_fairness_command(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fairness",
        help="counterfactual and group fairness of a run's saved text classifier",
        description="Rewrite every test text holding a protected term with its counterpart (built-in binary gender "
        "pairs, or --pairs) and report prediction flips, probability change and accuracy on original vs rewritten "
        "texts, per label; per-group accuracy and equal opportunity where the data file has a group field. "
        "Writes RUN_DIR/fairness.json and the fairness block of RUN_DIR/result.json.",
    )
    f.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's directory, holding model/ and config.yaml")
    f.add_argument("--data", required=True, help="text classification data file (.h5) whose test split is evaluated")
    f.add_argument("--pairs", help="two-column file of word pairs (tab, comma or space) instead of the built-in "
                   "gender pairs; each pair is swapped in both directions")
    f.add_argument("--out", help="write the report JSON here (default RUN_DIR/fairness.json)")
    f.set_defaults(func=cmd_fairness)


def cmd_fairness(args: argparse.Namespace) -> None:
    from fednlp.fairness.report import fairness_report, format_report, write_report

    report = fairness_report(args.run_dir, args.data, args.pairs)
    written = write_report(args.run_dir, report, args.out)
    print(format_report(report))
    print(f"wrote {written}")


def _add_audit_commands(sub: argparse._SubParsersAction) -> None:
    from fednlp.audit.commands import add_audit_commands

    add_audit_commands(sub)


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
    from fednlp.config import _parse_bool

    group = train.add_argument_group("options of the algorithms (each algorithm refuses the others')")
    for name, (kind, text) in sorted(algorithm_option_fields().items()):
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_parse_bool if kind is bool else kind,
                           default=None, metavar=kind.__name__.upper(), help=text)


COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_commands,
    _add_partition_commands,
    _add_training_commands,
    _add_supervise_command,
    _add_fairness_command,
    _add_audit_commands,
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
    "fairness": ("counterfactual and group fairness of a run's saved text classifier", _add_fairness_command),
    "audit": ("privacy audit of a run's saved model: membership inference, canary exposure and extraction",
              _add_audit_commands),
    "canaries": ("insert canaries (secrets) into a data file and partition", _add_audit_commands),
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
