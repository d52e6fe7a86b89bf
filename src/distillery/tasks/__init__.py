"""Tasks, registered by name (a student's `task` param); importing this package registers them all."""

from distillery.tasks.base import TASKS, Paths, Step, Task
from distillery.tasks import classification  # noqa: F401  (registers "classification")
from distillery.tasks import multitask  # noqa: F401  (registers "multitask")

__all__ = ["TASKS", "Paths", "Step", "Task"]
