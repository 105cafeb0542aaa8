"""The `fednlp fairness` subcommand (added to the CLI by fednlp/cli.py). Building the parser imports nothing
heavy; the command imports the report when it runs."""

from __future__ import annotations

import argparse


def add_fairness_command(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fairness",
        help="counterfactual and group fairness of a run's saved text classifier",
        description="Rewrite every test text holding a protected term with its counterpart (built-in binary gender "
        "pairs, or --pairs) and report prediction flips, probability change and accuracy on original vs rewritten "
        "texts, per label; per-group accuracy and equal opportunity where the data file has a group field. "
        "Writes RUN_DIR/fairness.json, the per-example predictions RUN_DIR/fairness_predictions.csv and the "
        "fairness block of RUN_DIR/result.json.",
    )
    f.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's directory, holding model/ and config.yaml")
    f.add_argument("--data", required=True, help="text classification data file (.h5) whose test split is evaluated")
    f.add_argument("--pairs", help="two-column file of word pairs (tab, comma or space) instead of the built-in "
                   "gender pairs; each pair is swapped in both directions")
    f.add_argument("--out", help="write the report JSON here (default RUN_DIR/fairness.json)")
    f.set_defaults(func=cmd_fairness)


def cmd_fairness(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fednlp.fairness.report import fairness_evaluation, format_report, write_report
    from fednlp.files import check_output

    run_files = [Path(args.run_dir) / name for name in ("result.json", "config.yaml")]
    check_output(args.out, {"--data": args.data, "--pairs": args.pairs, "RUN_DIR's": run_files}, "report")
    report, predictions = fairness_evaluation(args.run_dir, args.data, args.pairs)
    written = write_report(args.run_dir, report, args.out, predictions)
    print(format_report(report))
    print(f"wrote {written}")
