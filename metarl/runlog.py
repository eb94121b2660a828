"""Append-only run records: ``metrics.jsonl`` and ``rollouts.jsonl`` in the run directory.

Every record carries the training ``step`` it belongs to and is written as one line, flushed and
fsynced. On resume the records after the restored checkpoint's step are dropped (they will be produced
again), and a line torn by a kill is removed, so a killed-and-resumed run has no lost and no duplicated
records. Checkpoints count only once their ``.complete`` marker exists (written after the save finished).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from metarl.registry import ConfigError

COMPLETE_MARKER = ".complete"


class RunDirError(ConfigError, RuntimeError):
    """The run directory cannot be used (unwritable, disk full); a ``ConfigError`` on the ``run_dir`` key, so
    the command-line tools report it as a configuration error (exit code 2) before any model loads."""


def check_writable(run_dir: str | Path, min_free_mb: int = 50) -> Path:
    """Create ``run_dir`` and fail early with a clear message if it cannot hold a run."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-") as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunDirError(f"run_dir={str(run_dir)!r} is not writable ({e.strerror or e}); "
                          f"choose another with run_dir=PATH") from None
    free_mb = shutil.disk_usage(run_dir).free / 2**20
    if free_mb < min_free_mb:
        raise RunDirError(f"run_dir={str(run_dir)!r} has only {free_mb:.0f} MiB free (need {min_free_mb}); "
                          f"free space or choose another with run_dir=PATH")
    return run_dir


HYDRA_FILES = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})


def discard_unused_run_dir(run_dir: str | Path | None = None) -> bool:
    """Remove a run directory that holds nothing but what Hydra writes before the app starts (``.hydra/`` and
    an empty ``<app>.log``): a configuration error found by the app leaves no empty run behind. A directory
    holding anything else (a run's files, your own) is left as it is. ``run_dir`` defaults to Hydra's output
    directory of this run. True when it was removed."""
    if run_dir is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            run_dir = HydraConfig.get().runtime.output_dir
        except Exception:  # noqa: BLE001 - not inside a Hydra app: nothing of Hydra's to remove
            return False
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    hydra_dir = run_dir / ".hydra"
    for p in run_dir.iterdir():
        if p == hydra_dir and p.is_dir() and {q.name for q in p.iterdir()} <= HYDRA_FILES:
            continue
        if p.suffix == ".log" and p.is_file() and p.stat().st_size == 0:
            continue
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return not run_dir.exists()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLog:
    """Append JSON lines to files in a run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def append(self, name: str, records: dict[str, Any] | list[dict[str, Any]]) -> None:
        if isinstance(records, dict):
            records = [records]
        if not records:
            return
        lines = "".join(json.dumps({k: _finite(v) for k, v in r.items()}, default=_json_default,
                                   ensure_ascii=False) + "\n" for r in records)
        # backslashreplace: a lone surrogate in untrusted text is written as its JSON escape (\udXXX), which
        # reads back as the same string, instead of failing the write
        with open(self.path(name), "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, name: str, step: int) -> int:
        """Keep only complete records with ``step <= step``; return how many were dropped."""
        p = self.path(name)
        if not p.exists():
            return 0
        kept, dropped = [], 0
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    dropped += 1  # torn by a kill mid-write
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    dropped += 1
                    continue
                if int(rec.get("step", 0)) <= step:
                    kept.append(line)
                else:
                    dropped += 1
        tmp = p.with_suffix(p.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        return dropped


def jsonl_objects(lines, path: str | Path, problems: list[str]):
    """Yield ``(line number, object)`` for each JSON-object line of an open JSONL file; blank lines are
    skipped and every other line is reported in ``problems`` as ``"path:line: problem; line skipped"``."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); line skipped")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}; line skipped")
            continue
        yield lineno, obj


def last_complete_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The highest ``checkpoint-N`` directory whose save finished (has the ``.complete`` marker)."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return None
    found = []
    for c in d.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", c.name)
        if m and c.is_dir() and (c / COMPLETE_MARKER).exists():
            found.append((int(m.group(1)), c))
    return max(found)[1] if found else None


def mark_complete(checkpoint: str | Path) -> None:
    p = Path(checkpoint) / COMPLETE_MARKER
    with open(p, "w") as f:
        f.write("ok\n")
        f.flush()
        os.fsync(f.fileno())
    dir_fd = os.open(str(checkpoint), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
