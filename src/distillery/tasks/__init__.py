"""Tasks, registered by name (a student's `task` param) in `tasks.base.TASKS`. A task's module is imported when a
student or a stage asks for it, so that a stage runs (and, in dvc.yaml, depends on) only the task it serves: the
main pipeline's prepare, teacher and soft-labels stages never load a task at all."""

import importlib

from distillery.errors import DistilleryError

MODULES = {"classification": "distillery.tasks.classification", "multitask": "distillery.tasks.multitask",
           "seq2seq": "distillery.tasks.seq2seq", "mlm": "distillery.tasks.mlm"}


def get_task(name: str, param: str):
    """The registered task `name` (importing its module registers it)."""
    if name not in MODULES:
        raise DistilleryError(f"param {param}: unknown task {name!r}; choose one of: {', '.join(sorted(MODULES))}")
    importlib.import_module(MODULES[name])
    return importlib.import_module("distillery.tasks.base").TASKS.get(name, param=param)


__all__ = ["MODULES", "get_task"]
