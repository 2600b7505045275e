"""Single- vs multi-label: the task object (resolved once from the spec or the table), its label cells and metrics."""

from autolabel.task.base import MULTI, REGISTRY, SINGLE, Task, resolve, task_for, task_of

__all__ = ["MULTI", "REGISTRY", "SINGLE", "Task", "resolve", "task_for", "task_of"]
