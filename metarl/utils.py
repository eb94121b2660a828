"""Process-level settings: thread counts and seeds, the few facts about the machine that runs record, and how much
the process prints (:func:`set_verbose`, :func:`progress_bar`)."""
from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterator
from typing import Any

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


class CpuMeter:
    """How many of this process's CPUs other processes kept busy since the last reading: the busy time of those CPUs
    in ``/proc/stat`` minus this process's own CPU time (all its threads), over the wall time between readings.

    Linux only, and only where the CPUs this process may use are the ones it can read (its affinity mask, no
    tighter cgroup quota): elsewhere :meth:`others` is None and nothing is inferred from it."""

    def __init__(self) -> None:
        try:
            self._cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:
            self._cpus = []
        quota = _cgroup_quota()
        self._usable = bool(self._cpus) and (quota is None or quota >= len(self._cpus)) and self._busy() is not None
        self._last = self._reading() if self._usable else None

    def _busy(self) -> float | None:
        """Busy seconds of this process's CPUs since boot (user, nice, system, irq, softirq, steal)."""
        text = _read("/proc/stat")
        if text is None:
            return None
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        want = {f"cpu{i}" for i in self._cpus}
        busy, seen = 0, 0
        for line in text.splitlines():
            parts = line.split()
            if parts and parts[0] in want:
                v = [int(x) for x in parts[1:9]]
                busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                seen += 1
        return busy / tick if seen == len(want) else None

    def _reading(self) -> tuple[float, float, float]:
        import time

        t = os.times()
        return time.monotonic(), self._busy() or 0.0, t.user + t.system

    def others(self) -> float | None:
        """CPUs other processes kept busy since the last call (or since the meter was made), e.g. 1.0 for one
        process spinning beside this one; None where it cannot be measured or no time has passed."""
        if not self._usable:
            return None
        (w0, b0, o0), (w1, b1, o1) = self._last, self._reading()
        self._last = (w1, b1, o1)
        if w1 - w0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))


def free_cpus(sample: float = 0.1) -> float:
    """The CPUs this process may use (:func:`available_cpus`) less those other processes keep busy over ``sample``
    seconds (:class:`CpuMeter`; all of them where that cannot be measured)."""
    import time

    meter = CpuMeter()
    time.sleep(sample)
    others = meter.others()
    return available_cpus() - (others or 0.0)


def load_aware_threads(cap: int, free: float) -> int:
    """The torch thread count for at most ``cap`` threads with ``free`` CPUs idle: one per free CPU (a CPU at least
    half free counts), never fewer than 1. Threads beyond the free CPUs make every parallel region wait on a
    descheduled thread: on a 2-core CPU with one busy process beside it, a training step of the demo took 3.70 s
    with 2 threads and 1.69 s with 1 (idle: 1.16 s and 1.86 s; ``bench/threads_under_load.py``, docs/findings.md
    section 5).

    >>> load_aware_threads(2, 2.0), load_aware_threads(2, 1.0), load_aware_threads(2, 1.6), load_aware_threads(4, 0.2)
    (2, 1, 2, 1)
    """
    return max(1, min(cap, int(free + 0.5)))


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads to at most ``n``: never more than :func:`available_cpus`, and no more than the
    CPUs other processes leave free right now (:func:`load_aware_threads`), so a loaded machine does not make a
    run slower than one thread would. ``None`` or 0 leaves them as they are. Returns the count set.

    On the machines checked the thread count changes no number of a run (the demo gives the same table with 1 and
    2 threads); where it does, a run on a loaded machine can differ from one on an idle machine: the count a run
    used is in its log (``[metarl] threads``)."""
    if n is None or n <= 0:
        return torch.get_num_threads()
    n = min(n, available_cpus())
    if n > 1:
        n = load_aware_threads(n, free_cpus())
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    return n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- progress and quiet
# One switch for library chatter, shared by every app (``verbose`` in the train / score / eval / calibrate configs):
# off (the default), a phase shows one metarl progress bar and the libraries underneath stay quiet: no TRL log
# dicts, no per-step bars of Hugging Face's Trainer, no "Loading weights" / "Writing model shards" / dataset-map
# bars, no deprecation warnings from transformers, TRL, accelerate, datasets, peft or torch, and the console shows
# log records from WARNING up (a Hydra app's log file, e.g. ``train.log``, keeps everything). On, all of it shows.

_LIBRARIES = ("transformers", "trl", "accelerate", "datasets", "peft", "torch", "huggingface_hub")
_verbose: bool | None = None


def verbose() -> bool:
    """Whether library chatter is on: as :func:`set_verbose` last set it, else ``$METARL_VERBOSE`` (1/true/yes)."""
    if _verbose is not None:
        return _verbose
    return os.environ.get("METARL_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(on: bool) -> None:
    """Turn library chatter on or off for the rest of the process (what an app's ``verbose`` key does): the
    libraries' progress bars and log levels, deprecation warnings, and the level of console log handlers."""
    import logging

    global _verbose
    _verbose = bool(on)
    _library_settings(_verbose)
    _filter_library_warnings("default" if on else "ignore")
    for handler in logging.getLogger().handlers:  # Hydra's console handler; its file handler keeps every record
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.NOTSET if on else logging.WARNING)


def _filter_library_warnings(action: str) -> None:
    """``warnings.filterwarnings(action)`` for the libraries' FutureWarning and DeprecationWarning."""
    import warnings

    pattern = rf"({'|'.join(_LIBRARIES)})(\.|$)"
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings(action, category=category, module=pattern)


def _library_settings(on: bool) -> dict[str, object]:
    """Apply chatter on/off to transformers, datasets and the libraries' loggers; return the previous settings
    (for :func:`quiet_libraries` to restore)."""
    import logging

    import datasets
    import transformers.utils.logging as tlog

    before = {"transformers_bars": tlog.is_progress_bar_enabled(), "transformers_level": tlog.get_verbosity(),
              "datasets_bars": datasets.is_progress_bar_enabled(),
              "levels": {name: logging.getLogger(name).level for name in ("trl", "accelerate")}}
    if on:
        tlog.enable_progress_bar()
        datasets.enable_progress_bars()
    else:
        tlog.disable_progress_bar()  # also huggingface_hub's bars
        tlog.set_verbosity(max(tlog.get_verbosity(), logging.ERROR))
        datasets.disable_progress_bars()
        for name in ("trl", "accelerate"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.ERROR))
    return before


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within: library chatter off as with ``set_verbose(False)`` (progress bars, log levels, deprecation warnings;
    console handlers are left alone), restored afterwards; nothing changes when :func:`verbose` is on. For library
    functions with a phase of their own (the warm starts), which may run outside an app."""
    if verbose():
        yield
        return
    import logging
    import warnings

    import datasets
    import transformers.utils.logging as tlog

    before = _library_settings(False)
    try:
        with warnings.catch_warnings():
            _filter_library_warnings("ignore")
            yield
    finally:
        if before["transformers_bars"]:
            tlog.enable_progress_bar()
        tlog.set_verbosity(int(before["transformers_level"]))
        if before["datasets_bars"]:
            datasets.enable_progress_bars()
        for name, level in before["levels"].items():
            logging.getLogger(name).setLevel(level)


def progress_bar(iterable: Any = None, *, total: float | None = None, desc: str | None = None, unit: str = "it",
                 leave: bool | None = None, disable: bool = False, **kwargs: Any):
    """A metarl progress bar: tqdm on stderr with a rate and an ETA, redrawn at most once a second on a terminal and
    every 30 s otherwise (a log file gets a few lines a minute, not one per step). ``leave`` (default: unless another
    bar is open, e.g. an evaluation during training): keep the finished bar on screen."""
    import sys

    from tqdm import tqdm

    if leave is None:
        leave = not any(not getattr(b, "disable", False) for b in list(getattr(tqdm, "_instances", ())))

    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    kwargs.setdefault("mininterval", 1.0 if tty else 30.0)
    kwargs.setdefault("dynamic_ncols", tty)
    if not tty:
        kwargs.setdefault("ncols", 100)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, file=sys.stderr,
                **kwargs)
