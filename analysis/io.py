"""Read a run's outputs into plain Python records, reporting (never raising on) bad input.

A run is a directory (or a single JSONL file such as a ``metarl-score`` output). Every ``*.jsonl``
under it (hidden and checkpoint folders skipped) is read and each JSON object is classified by its
keys:

* trace: has ``completion`` or ``episodes`` (``rollouts.jsonl``, score outputs);
* compute-optimal record: ``kind`` ``choice`` or ``curve`` with a ``difficulty`` source
  (``eval/compute_optimal.jsonl``);
* eval result: has ``strategy`` and ``budget`` (``eval/results.jsonl``);
* held-out curve row: has ``step``, ``budget`` and ``accuracy`` but no ``strategy`` (``eval/curve.jsonl``:
  the policy evaluated every N training steps at each cap C);
* training metrics: has ``step`` (``metrics.jsonl``).

Malformed lines are collected as ``"file:line: problem"`` strings for the report.
"""
from __future__ import annotations

import json
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl.runlog import jsonl_objects

SKIP_DIRS = ("checkpoint", "wandb", "__pycache__")
MAX_DEPTH = 3


@dataclass
class RunData:
    """Everything the report needs from one run; ``label`` groups seeds of one configuration."""

    path: Path
    label: str
    seed: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    eval_results: list[dict[str, Any]] = field(default_factory=list)
    compute_optimal: list[dict[str, Any]] = field(default_factory=list)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_jsonl(path: Path | str) -> tuple[list[dict[str, Any]], list[str]]:
    """JSON objects of a JSONL file and ``"file:line: problem"`` for each line that is not one."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as e:
        return rows, [f"{path}: cannot read ({e.strerror or e})"]
    with fh:
        for lineno, obj in jsonl_objects(fh, path, problems):
            obj["_source"] = f"{path}:{lineno}"
            rows.append(obj)
    return rows, problems


def is_number(v: Any) -> bool:
    """A finite int/float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _jsonl_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*.jsonl")):
        rel = p.relative_to(root).parts
        if len(rel) > MAX_DEPTH or any(s.startswith(".") or s.startswith(SKIP_DIRS) for s in rel[:-1]):
            continue
        out.append(p)
    return out


def _read_config(root: Path, run: RunData) -> None:
    if root.is_file():
        return
    for cand in (root / "config.yaml", root / ".hydra" / "config.yaml"):
        if cand.is_file():
            try:
                import yaml

                cfg = yaml.safe_load(cand.read_text(encoding="utf-8"))
            except Exception as e:  # a broken config must not stop the report
                run.problems.append(f"{cand}: cannot parse YAML ({e}); run label taken from the folder name")
                return
            if isinstance(cfg, dict):
                run.config = cfg
                run.files.append(str(cand))
            else:
                run.problems.append(f"{cand}: expected a mapping at top level, got {type(cfg).__name__}")
            return
    run.notes.append(f"{root}: no config.yaml; run label taken from the folder name")


def run_label(config: dict[str, Any], fallback: str) -> str:
    """``name``, else ``recipe`` (a string or a mapping with ``name``), else ``fallback``."""
    for v in (config.get("name"), config.get("recipe")):
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"]:
            return v["name"]
    return fallback


def load_run(path: Path | str) -> RunData:
    """Read one run directory (or one JSONL file); missing pieces become notes, bad lines problems."""
    root = Path(path)
    run = RunData(path=root, label=root.stem if root.is_file() else root.resolve().name)
    if not root.exists():
        run.problems.append(f"{root}: no such file or directory; run skipped")
        return run
    _read_config(root, run)
    run.label = run_label(run.config, run.label)
    run.seed = run.config.get("seed")
    unknown = 0
    for f in _jsonl_files(root):
        rows, problems = read_jsonl(f)
        run.problems.extend(problems)
        run.files.append(str(f))
        for r in rows:
            if "completion" in r or "episodes" in r:
                run.traces.append(r)
            elif r.get("kind") in ("choice", "curve") and "difficulty" in r:
                run.compute_optimal.append(r)
            elif "strategy" in r and "budget" in r:
                run.eval_results.append(r)
            elif "step" in r and "budget" in r and "accuracy" in r:
                run.heldout.append(r)
            elif "step" in r:
                run.metrics.append(r)
            else:
                unknown += 1
    if unknown:
        run.notes.append(f"{root}: {unknown} JSON rows were neither traces, eval results nor metrics; ignored")
    if not run.files:
        run.notes.append(f"{root}: no JSONL files found")
    return run


def group_runs(runs: list[RunData]) -> dict[str, list[RunData]]:
    """Runs by label, in first-seen order: runs sharing a label are seeds of one configuration."""
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    return groups


def question_key(row: dict[str, Any]) -> Hashable:
    """Identify a question: ``question_id``, else the prompt text, else the row's source line."""
    for k in ("question_id", "prompt", "_source"):
        if row.get(k) is not None:
            v = row[k]
            return v if isinstance(v, Hashable) else json.dumps(v, sort_keys=True)
    return id(row)
