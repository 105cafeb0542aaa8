"""`fednlp fairness RUN_DIR --metric disparity`: the occupation disparity (fednlp/fairness/disparity.py) of a
language-model run's saved model, the measure `fednlp distill` reports for its teacher and student, here for any
LM run (e.g. one trained with and one without `--augment counterfactual`)."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from fednlp.errors import UserError
from fednlp.results.run_files import RunDirectory


def disparity_evaluation(run_dir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The disparity report and one CSV row per prompt pair; writes nothing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fednlp.fairness.disparity import occupation_disparity
    from fednlp.run.device import pick_device
    from fednlp.tasks.models import quiet_transformers

    directory = RunDirectory(run_dir)
    model_dir = directory.check_model()
    config = directory.evaluation_config()
    quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UserError(f"{model_dir} is not a loadable language model with its tokenizer: {first_line}") from None
    device = pick_device(0, config.device)
    report = {"metric": "disparity", **occupation_disparity(model.to(device).eval(), tokenizer, device)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("male_prompt", "female_prompt", "total_variation"))
    writer.writerows((p["male"], p["female"], p["total_variation"]) for p in report["pairs"])
    return report, out.getvalue()


def format_disparity(report: dict[str, Any]) -> str:
    leaning = sorted(report["occupation_log_ratio"].items(), key=lambda item: item[1])
    return "\n".join([
        f"occupation disparity over {report['n_pairs']} gendered prompt pairs (total variation, 0 = none): "
        f"mean {report['total_variation_mean']:.4f}, max {report['total_variation_max']:.4f}",
        f"most female-leaning: {', '.join(f'{o} {r:+.3f}' for o, r in leaning[:3])}",
        f"most male-leaning: {', '.join(f'{o} {r:+.3f}' for o, r in leaning[-3:][::-1])}",
    ])
