"""Tasks, registered by name (a student's `task` param). A task's module is imported when a student asks
for it, so that the main pipeline's stages run (and, in dvc.yaml, depend on) only the task they train."""

import importlib

from distillery.errors import DistilleryError
from distillery.tasks.base import TASKS, Paths, Step, Task

MODULES = {"classification": "distillery.tasks.classification", "multitask": "distillery.tasks.multitask",
           "seq2seq": "distillery.tasks.seq2seq"}


def get_task(name: str, param: str) -> type[Task]:
    """The registered task `name` (importing its module registers it)."""
    if name not in MODULES:
        raise DistilleryError(f"param {param}: unknown task {name!r}; choose one of: {', '.join(sorted(MODULES))}")
    importlib.import_module(MODULES[name])
    return TASKS.get(name, param=param)


__all__ = ["MODULES", "TASKS", "Paths", "Step", "Task", "get_task"]
