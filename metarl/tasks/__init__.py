"""Built-in reasoning tasks with programmatic verifiers, a difficulty knob and disjoint splits.

``build_task({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 2})`` (a config node, as in
``conf/task/subset_sum.yaml``'s ``task`` key) returns a :class:`~metarl.tasks.base.Task`; a task object passes
through unchanged.
"""
from __future__ import annotations

from typing import Any

from metarl.registry import instantiate
from metarl.tasks.base import Split, Task
from metarl.tasks.subset_sum import LEVELS, Level, SubsetSumTask


def build_task(spec: Any, **kwargs: Any) -> Task:
    """A task from a ``_target_`` mapping (built by Hydra's ``instantiate``) or a task object.

    >>> build_task({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 3}).level().n_numbers
    5
    """
    if isinstance(spec, Task):
        return spec
    task = instantiate(spec, "task", "task.task", **kwargs)
    if not all(hasattr(task, a) for a in ("generate", "verify", "extract_answer")):
        raise TypeError(f"task spec {spec!r} built {task!r}, which lacks generate / verify / extract_answer; "
                        "a task subclasses metarl.tasks.base.Task")
    return task


__all__ = ["LEVELS", "Level", "Split", "SubsetSumTask", "Task", "build_task"]
