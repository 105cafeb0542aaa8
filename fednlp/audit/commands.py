"""The `fednlp audit` and `fednlp canaries insert` subcommands (added to the CLI by fednlp/cli.py)."""

from __future__ import annotations

import argparse


def add_audit_commands(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "audit",
        help="privacy audit of a run's saved model: membership inference, canary exposure and extraction",
        description="Membership inference at the example level (training examples of the clients that trained vs "
        "a seeded equal-sized sample of test examples) and the user level (trained vs held-out clients), by loss "
        "and by loss calibrated against a reference model; with --canaries, the exposure and extraction of the "
        "canaries in the run's data file. Writes RUN_DIR/audit.json, RUN_DIR/audit_roc.png and result.json's "
        "audit block.",
    )
    a.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's directory (model/, config.yaml, result.json)")
    a.add_argument("--reference", metavar="RUN_DIR", help="calibrate with this run's model (e.g. one trained "
                   "without the members) instead of the audited run's initial model")
    a.add_argument("--canaries", action="store_true", help="also measure the exposure (and, for a classifier, "
                   "the extraction) of the canaries listed in the run's data file (fednlp canaries insert)")
    a.add_argument("--max-examples", type=int, help="at most N members and N non-members (seeded sample)")
    a.add_argument("--user-level", choices=("auto", "true", "false"), default="auto",
                   help="user-level inference: auto (when the run held clients out), true (required), false")
    a.add_argument("--client-examples", type=int, help="user level: score a client by at most N of its examples "
                   "(seeded sample; default all)")
    a.add_argument("--extrapolate", type=int, metavar="N", help="exposure of a secret space over 10^6 candidates: "
                   "the skew-normal extrapolation from N sampled candidates (Carlini et al. 2019)")
    a.add_argument("--extraction-steps", type=int, default=300, help="model-inversion steps per restart (300)")
    a.add_argument("--extraction-restarts", type=int, default=3, help="model-inversion restarts per canary (3)")
    a.add_argument("--extraction-lr", type=float, default=0.1, help="Adam learning rate of the inversion (0.1)")
    a.set_defaults(func=cmd_audit)

    c = sub.add_parser("canaries", help="insert canaries (secrets) into a data file and partition")
    c_sub = c.add_subparsers(dest="canaries_command", required=True, metavar="COMMAND")
    i = c_sub.add_parser(
        "insert",
        help="write a data file and partition group with canaries in some clients' training data",
        description="Copy a data file and a partition group, adding --count canaries per repeat count: the "
        "template filled with a random secret, repeated in one client or spread over several. Which secret went "
        "where is recorded in the new data file's attributes (canaries), never in its fields.",
    )
    i.add_argument("--data", required=True, help="data file (.h5): text classification or seq2seq")
    i.add_argument("--partition", required=True, help="partition file (.h5)")
    i.add_argument("--method", required=True, help="partition group, e.g. uniform_clients=10")
    i.add_argument("--out-data", required=True, help="the new data file (.h5)")
    i.add_argument("--out-partition", required=True, help="partition file to add the canaried group to")
    i.add_argument("--template", required=True, help="text holding {secret} once, e.g. 'my pin code is {secret}'")
    i.add_argument("--secret", required=True, help="digits:N (codes of N digits, written '1 2 3 4') or a file of "
                   "candidate secrets, one per line")
    i.add_argument("--repeats", default="1,10,100", help="copies of each canary, one or more comma-separated counts")
    i.add_argument("--clients", default="one", choices=("one", "spread"),
                   help="one: all copies of a canary in one client (each canary another); spread: over clients")
    i.add_argument("--label", help="text classification: the canaries' label")
    i.add_argument("--task", help="the head the canaried runs train (e.g. lm): the secret goes into a field it "
                   "reads (an LM reads a seq2seq file's source, not its target); default: the data's own head")
    i.add_argument("--count", type=int, default=1, help="canaries per repeat count (1)")
    i.add_argument("--seed", type=int, default=0)
    i.set_defaults(func=cmd_canaries_insert)


def cmd_audit(args: argparse.Namespace) -> None:
    from fednlp.audit.extraction import ExtractionBudget
    from fednlp.audit.report import AuditOptions, format_audit, run_audit, write_audit
    from fednlp.errors import UserError
    from fednlp.federation.communicator import make_communicator

    for flag, value in (("--extraction-steps", args.extraction_steps), ("--extraction-restarts", args.extraction_restarts)):
        if value < 1:
            raise UserError(f"{flag} {value}: expected a positive whole number")
    if not args.extraction_lr > 0 or args.extraction_lr == float("inf"):
        raise UserError(f"--extraction-lr {args.extraction_lr}: expected a positive finite number")
    options = AuditOptions(
        reference=args.reference, canaries=args.canaries, max_examples=args.max_examples,
        user_level={"auto": None, "true": True, "false": False}[args.user_level],
        client_examples=args.client_examples, extrapolate=args.extrapolate,
        extraction=ExtractionBudget(steps=args.extraction_steps, lr=args.extraction_lr,
                                    restarts=args.extraction_restarts),
    )
    comm = make_communicator()
    report, png = run_audit(args.run_dir, options, comm)
    if comm.rank == 0:
        written = write_audit(args.run_dir, report, png)
        print(format_audit(report))
        print(f"wrote {written}")


def cmd_canaries_insert(args: argparse.Namespace) -> None:
    from fednlp.audit.canaries import CanaryOptions, insert_canaries, parse_repeats
    from fednlp.config_checks import check_output_path
    from fednlp.files import check_output
    from fednlp.locks import locked_output

    options = CanaryOptions(data=args.data, partition=args.partition, method=args.method, out_data=args.out_data,
                            out_partition=args.out_partition, template=args.template, secret=args.secret,
                            repeats=parse_repeats(args.repeats), clients=args.clients, label=args.label,
                            count=args.count, seed=args.seed, task=args.task)
    check_output_path(args.out_data, "--out-data", file="the canaried data file to write (.h5)")
    check_output_path(args.out_partition, "--out-partition", file="the partition file to write (.h5)")
    inputs = {"--data": args.data, "--partition": args.partition, "--secret": args.secret}
    check_output(args.out_data, {**inputs, "--out-partition": args.out_partition}, "data", "--out-data")
    check_output(args.out_partition, inputs, "partition", "--out-partition")
    with locked_output(args.out_data, f"--out-data {args.out_data}"), \
            locked_output(args.out_partition, f"--out-partition {args.out_partition}"):
        summary = insert_canaries(options)
    print(f"wrote {args.out_data} (+{summary['n_examples_added']} training examples: {summary['n_canaries']} canaries "
          f"from {summary['secret_space_size']:,} candidate secrets) and group {summary['group']} of {args.out_partition}")
