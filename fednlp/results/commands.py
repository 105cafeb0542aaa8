"""The `fednlp compare` subcommand (added to the CLI by fednlp/cli.py). Building the parser imports nothing
heavy; the command imports the comparison when it runs."""

from __future__ import annotations

import argparse

COMPARE_HELP = "is the difference between two groups of runs a finding? means, seed spreads, Welch interval, verdict"


def add_compare_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help=COMPARE_HELP,
        description="Compare the primary metric of two groups of runs (each the seeds of one setting): each side's "
        "mean and seed spread, the difference B - A, Welch's t interval over seeds, and the docs' verdict: "
        "'finding' when the interval excludes 0 and the difference exceeds both spreads, 'not a finding: within "
        "the spread' otherwise, 'one seed: no claim' when a side has one seed.",
    )
    p.add_argument("a", metavar="A", help="group A: a directory holding result.json files (any depth), or a glob "
                   "pattern of run directories (quote it)")
    p.add_argument("b", metavar="B", help="group B, like A")
    p.add_argument("--format", default="markdown", choices=("markdown", "json"))
    p.add_argument("--confidence", type=float, default=0.95, help="the interval's confidence level (default 0.95)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY",
                   help="a setting the runs of one side may differ in besides the seed (repeatable), e.g. model "
                   "when seed s fine-tunes the model of another study's seed s")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> None:
    from fednlp.results.compare import compare

    print(compare(args.a, args.b, args.format, args.confidence, tuple(args.vary)), end="")
