"""Task heads by name (`--task`) and by the data file's task_type: `@register_task` here, or the `fednlp.tasks`
entry-point group for packages installed beside fednlp (an entry point names a Task subclass; its name is the
`--task` value)."""

from __future__ import annotations

from fednlp.errors import UserError
from fednlp.registry import Registry
from fednlp.tasks.base import Task

TASKS: Registry[type[Task]] = Registry(
    "task", "--task", group="fednlp.tasks", base=Task,
    builtins=("fednlp.tasks.classification", "fednlp.tasks.tagging", "fednlp.tasks.qa", "fednlp.tasks.seq2seq",
              "fednlp.tasks.lm"),
)


def register_task(cls: type[Task]) -> type[Task]:
    return TASKS.add(cls.name, cls)


def data_task_types(cls: type[Task]) -> tuple[str, ...]:
    """The data-file task types a head reads: its own, or those it declares (`lm` reads any text data file)."""
    return cls.data_task_types or (cls.task_type,)


def resolve_task(name: str | None, task_type: str, data_path: str) -> type[Task]:
    """The task class for `--task name`, checked against the data file's task_type (None: infer it: the head
    whose own task_type it is, so `lm`, which reads other heads' data, is only ever asked for)."""
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
