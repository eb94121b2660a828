"""Process-level settings: thread counts and seeds, and the few facts about the machine that runs record."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import torch


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (where the OS has one), lowered to a container's CPU
    quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, rounded up) when one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """The CPU quota of this process's cgroup in CPUs (None: none set, or no cgroup files to read)."""
    v2 = _read("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"
    if v2 is not None:
        quota, period = (v2.split() + ["100000"])[:2]
    else:
        quota = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # -1: none
        if quota is None:
            return None
        period = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or "100000"
    try:
        q, p = float(quota), float(period)
    except ValueError:  # "max", or unreadable
        return None
    return q / p if q > 0 and p > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and the CPUs this process may use, e.g. ``AMD EPYC x2``: recorded
    with benchmark results and comparison jobs, which may come from several machines."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} x{available_cpus()}"


def checkpointing_key(args_cls: type) -> str:
    """The name of the gradient-checkpointing field of a transformers ``TrainingArguments`` class (or a TRL config
    deriving from it): ``activation_checkpointing`` from transformers 5.2x on (the old name still works there,
    with a deprecation warning), ``gradient_checkpointing`` before."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(args_cls)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads to ``n``, but never more than :func:`available_cpus` (more threads than
    cores only contend); ``None`` or 0 leaves them as they are. Which count is fastest depends on the model
    size and the machine: measure (``threads`` in every app's config)."""
    if n is None or n <= 0:
        return
    n = min(n, available_cpus())
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
