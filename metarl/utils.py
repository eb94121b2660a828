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
