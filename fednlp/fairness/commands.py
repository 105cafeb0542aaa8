"""The `fednlp fairness` subcommand (added to the CLI by fednlp/cli.py). Building the parser imports nothing
heavy; the command imports the metric's report when it runs."""

from __future__ import annotations

import argparse

#: --metric -> (result.json block and default report name, per-example file): fednlp/fairness/run_task.py
#: says which runs each one measures.
METRICS = {
    "flips": ("fairness", "fairness_predictions.csv"),
    "prediction-sensitivity": ("prediction_sensitivity", "prediction_sensitivity.csv"),
    "ceat": ("ceat", "ceat_effect_sizes.csv"),
    "disparity": ("disparity", "disparity_pairs.csv"),
}
CEAT_TESTS = ("weat6", "weat7", "weat8")


def add_fairness_command(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fairness",
        help="fairness of a run's saved model: counterfactual flips, prediction sensitivity, CEAT, an LM's "
        "occupation disparity",
        description="--metric flips (default): rewrite every test text holding a protected term with its "
        "counterpart (built-in binary gender pairs, or --pairs) and report prediction flips, probability change "
        "and accuracy on original vs rewritten texts, per label; per-group accuracy and equal opportunity where "
        "the data file has a group field (RUN_DIR/fairness.json, RUN_DIR/fairness_predictions.csv). "
        "--metric prediction-sensitivity: accumulated prediction sensitivity of the classifier to the embeddings "
        "of protected words (Krishna et al. 2022; RUN_DIR/prediction_sensitivity.json and .csv). --metric ceat: "
        "the contextualized embedding association test (Guo & Caliskan 2021) of WEAT 6-8 on the model's hidden "
        "states (RUN_DIR/ceat.json, RUN_DIR/ceat_effect_sizes.csv). Each also writes its block of "
        "RUN_DIR/result.json. --metric disparity: a language model's occupation disparity over gendered prompt "
        "pairs, as `fednlp distill` reports it (RUN_DIR/disparity.json, RUN_DIR/disparity_pairs.csv). Flips "
        "and prediction sensitivity measure classification runs; CEAT any encoder or LM run; disparity LM runs.",
    )
    f.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's directory, holding model/ and config.yaml")
    f.add_argument("--metric", choices=sorted(METRICS), default="flips", help="what to measure (default flips)")
    f.add_argument("--data", help="data file (.h5): its test split for flips and prediction sensitivity, all its "
                   "texts for CEAT (default: the run's own data file, config.yaml's data)")
    f.add_argument("--pairs", help="two-column file of word pairs (tab, comma or space) instead of the built-in "
                   "gender pairs; each pair is swapped in both directions (flips) or marks the protected words "
                   "(prediction sensitivity)")
    f.add_argument("--psm", choices=("wordlist", "trained"), default="wordlist",
                   help="prediction sensitivity's protected status model: the tokens of the pair list's words "
                   "(default), or a logistic model fednlp trains on the data file's group field")
    f.add_argument("--ceat-tests", default=",".join(CEAT_TESTS),
                   help=f"comma-separated WEAT tests for CEAT, of {', '.join(CEAT_TESTS)} (default all)")
    f.add_argument("--samples", type=int, default=10000, help="CEAT: effect sizes drawn (default 10000, as CEAT)")
    f.add_argument("--contexts", type=int, default=50, help="CEAT: at most this many sentences per word "
                   "(default 50)")
    f.add_argument("--ceat-variance", choices=("authors", "hedges-olkin"), default="authors",
                   help="CEAT: each draw's in-sample variance, the random-effects weight: the authors' code's "
                   "sample variance of the associations (default, comparable with published CES) or the "
                   "Hedges-Olkin variance of a standardized mean difference")
    f.add_argument("--seed", type=int, default=0, help="CEAT: seed of the sentence and embedding draws")
    f.add_argument("--out", help="write the report JSON here (default RUN_DIR/<block>.json: fairness.json, "
                   "prediction_sensitivity.json, ceat.json)")
    f.set_defaults(func=cmd_fairness)


def cmd_fairness(args: argparse.Namespace) -> None:
    from pathlib import Path

    from fednlp.errors import UserError
    from fednlp.fairness.report import write_report
    from fednlp.fairness.run_task import check_metric_task
    from fednlp.files import check_output
    from fednlp.results.run_files import RunDirectory

    tests = [t.strip() for t in args.ceat_tests.split(",") if t.strip()]
    if not tests or any(t not in CEAT_TESTS for t in tests):
        raise UserError(f"--ceat-tests {args.ceat_tests!r}: expected a comma-separated list of {', '.join(CEAT_TESTS)}")
    if args.samples < 2:
        raise UserError(f"--samples {args.samples}: expected a whole number of at least 2 (CEAT combines samples)")
    if args.contexts < 1:
        raise UserError(f"--contexts {args.contexts}: expected a whole number of at least 1")
    run_files = [Path(args.run_dir) / name for name in ("result.json", "config.yaml")]
    check_output(args.out, {"--data": args.data, "--pairs": args.pairs, "RUN_DIR's": run_files}, "report")
    directory = RunDirectory(args.run_dir)
    directory.check_model()
    check_metric_task(directory, args.metric)
    data = args.data or directory.evaluation_config().data
    if not data:
        raise UserError(f"run {directory} records no data file in config.yaml; give --data")
    check_output(args.out, {"the run's data file": data}, "report")
    block, per_example = METRICS[args.metric]
    if args.metric == "flips":
        from fednlp.fairness.report import fairness_evaluation, format_report

        report, rows = fairness_evaluation(args.run_dir, data, args.pairs)
        text = format_report(report)
    elif args.metric == "prediction-sensitivity":
        from fednlp.fairness.sensitivity_report import format_sensitivity, sensitivity_evaluation

        report, rows = sensitivity_evaluation(args.run_dir, data, args.pairs, args.psm)
        text = format_sensitivity(report)
    elif args.metric == "disparity":
        from fednlp.fairness.disparity_report import disparity_evaluation, format_disparity

        report, rows = disparity_evaluation(args.run_dir)
        text = format_disparity(report)
    else:
        from fednlp.fairness.ceat_report import ceat_evaluation, format_ceat

        report, rows = ceat_evaluation(args.run_dir, data, tests, args.samples, args.contexts, args.seed,
                                       args.ceat_variance)
        text = format_ceat(report)
    written = write_report(args.run_dir, report, args.out, rows, block=block, per_example_file=per_example)
    print(text)
    print(f"wrote {written}")
