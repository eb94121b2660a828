"""Built-in reasoning tasks with programmatic verifiers, a difficulty knob and disjoint splits.

``build_task("subset_sum")`` (or a dotted path, or a mapping with ``_target_`` and keyword arguments)
returns a :class:`~metarl.tasks.base.Task`; a task object passes through unchanged.
"""
from __future__ import annotations

from typing import Any

from metarl.registry import build
from metarl.tasks.base import Split, Task
from metarl.tasks.subset_sum import LEVELS, Level, SubsetSumTask

#: Short task names -> dotted paths (what ``task=<name>`` in a config refers to).
TASKS: dict[str, str] = {
    "subset_sum": "metarl.tasks.subset_sum.SubsetSumTask",
}


def build_task(spec: Any, **kwargs: Any) -> Task:
    """A task from a short name (see :data:`TASKS`), a dotted path, a ``_target_`` mapping or a task object.

    >>> build_task({"_target_": "subset_sum", "difficulty": 3}).level().n_numbers
    5
    """
    if isinstance(spec, Task):
        return spec
    task = build(spec, names=TASKS, kind="task", **kwargs)
    if not all(hasattr(task, a) for a in ("generate", "verify", "extract_answer")):
        raise TypeError(f"task spec {spec!r} built {task!r}, which lacks generate / verify / extract_answer; "
                        "a task subclasses metarl.tasks.base.Task")
    return task


__all__ = ["LEVELS", "Level", "Split", "SubsetSumTask", "TASKS", "Task", "build_task"]
