"""Single- vs multi-label: the task object, its label cells and metrics."""
