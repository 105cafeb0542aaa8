"""What a run checks once its data file is read, before its run directory is made: a refusal here (exit 2)
leaves no config.yaml, lock or directory behind.

The config alone was checked by its validate(); what needs the data is checked here: the options of one task
when the data file decided the task (--num-beams on classification data), the continual schedule (the data's
order field, --periods no larger than its distinct values), and the reporters' packages (--report-to
tensorboard without tensorboard installed).
"""

from __future__ import annotations

from typing import Any

from fednlp.config_checks import check_context
from fednlp.data.datafile import DataFile


def check_before_writing(config: Any, data: DataFile, task_name: str) -> None:
    """Raise UserError for what the run would refuse later, once it had written its run directory."""
    from fednlp.federation.callbacks import check_reporter

    check_context(config, {"task": task_name})
    continual = getattr(config, "continual", None)  # federated runs only
    if continual is not None:
        continual.check_data(data.fields, config.data)
    check_reporter(config.report_to)
