"""Which head a run trained, and whether a fairness metric can measure it.

`fednlp fairness` once loaded any run's model as a sequence classifier: on an LM run that is GPT-2 with a
freshly initialised classification head, whose flip rate means nothing. Each metric declares the heads it
measures and every run is checked before a model is loaded.
"""

from __future__ import annotations

import json

import yaml

from fednlp.errors import UserError
from fednlp.results.run_files import RunDirectory

#: The heads each metric measures. Flips and prediction sensitivity read a text classifier's class
#: probabilities; CEAT reads the hidden states of any encoder or of the causal LM (a seq2seq model's last
#: hidden states are the decoder's, which need a target text, so it is left out).
METRIC_TASKS: dict[str, tuple[str, ...]] = {
    "flips": ("classification",),
    "prediction-sensitivity": ("classification",),
    "ceat": ("classification", "tagging", "qa", "lm"),
    "disparity": ("lm",),  # a causal LM's continuations of gendered prompts (fednlp/fairness/disparity.py)
}

#: The end of a saved model's architecture name -> the fednlp head that saves it.
_ARCHITECTURE_TASKS = (("ForSequenceClassification", "classification"), ("ForTokenClassification", "tagging"),
                       ("ForQuestionAnswering", "qa"), ("LMHeadModel", "lm"), ("ForCausalLM", "lm"),
                       ("ForConditionalGeneration", "seq2seq"))


def run_task(directory: RunDirectory) -> str | None:
    """The run's head: result.json's `task`, else config.yaml's `task`, else the saved model's architecture
    (runs written by hand or by an older fednlp lack the first two); None if nothing tells."""
    if directory.result_path.is_file() and directory.result.task:
        return directory.result.task
    if directory.config_path.is_file():
        try:
            raw = yaml.safe_load(directory.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raw = {}  # evaluation_config() reports a broken config.yaml in its own words
        if isinstance(raw, dict) and isinstance(raw.get("task"), str):
            return raw["task"]
    model_config = directory.model_dir / "config.json"
    try:
        architectures = json.loads(model_config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    for suffix, task in _ARCHITECTURE_TASKS:
        if any(str(name).endswith(suffix) for name in architectures):
            return task
    return None


def check_metric_task(directory: RunDirectory, metric: str) -> str:
    """The run's head, if `metric` measures it; else the one line saying what the metric needs."""
    task = run_task(directory)
    needs = METRIC_TASKS[metric]
    if task is None:
        raise UserError(f"cannot tell which head run {directory} trained (no task in result.json or config.yaml, "
                        f"no known architecture in model/config.json); --metric {metric} measures "
                        f"{' or '.join(needs)} runs")
    if task not in needs:
        raise UserError(f"run {directory} is a {task} run; --metric {metric} measures {' or '.join(needs)} runs "
                        f"only (its numbers on a {task} model would be meaningless)")
    return task
