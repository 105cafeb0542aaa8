"""Task heads by name (`--task`) and by the data file's task_type."""

from __future__ import annotations

from fednlp.errors import UserError
from fednlp.registry import Registry
from fednlp.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task", "--task")


def register_task(cls: type[Task]) -> type[Task]:
    return TASKS.add(cls.name, cls)


def _load_builtin_tasks() -> None:
    import importlib

    for module in ("classification", "tagging", "qa", "seq2seq", "lm"):
        try:
            importlib.import_module(f"fednlp.tasks.{module}")
        except ModuleNotFoundError as exc:  # a head not written yet must not break the others
            if exc.name != f"fednlp.tasks.{module}":
                raise


def data_task_types(cls: type[Task]) -> tuple[str, ...]:
    """The data-file task types a head reads: its own, or several (`lm` reads any text data file)."""
    return tuple(getattr(cls, "data_task_types", (cls.task_type,)))


def resolve_task(name: str | None, task_type: str, data_path: str) -> type[Task]:
    """The task class for `--task name`, checked against the data file's task_type (None: infer it: the head
    whose own task_type it is, so `lm`, which reads other heads' data, is only ever asked for)."""
    _load_builtin_tasks()
    by_type = {cls.task_type: cls for cls in TASKS.values()}
    if name is None:
        if task_type not in by_type:
            raise UserError(f"data file {data_path} holds {task_type} data, for which no task head exists")
        return by_type[task_type]
    if name not in TASKS:
        raise UserError(f"--task {name!r} is not a known task; known: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    if task_type not in data_task_types(cls):
        needs = " or ".join(data_task_types(cls))
        raise UserError(f"--task {name} needs {needs} data, but data file {data_path} holds {task_type} data")
    return cls
