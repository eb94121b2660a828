"""Read a run's outputs: plain JSON records (:func:`load_run`) or typed traces (:func:`load_traces`).

A run is a directory written by ``metarl-train`` / ``metarl-score`` / ``metarl-eval`` (or a single JSONL
file such as a ``metarl-score`` output). Every ``*.jsonl`` under it (hidden and checkpoint folders skipped)
is read and each JSON object is classified by its keys:

* trace: has ``completion`` or ``episodes`` (``rollouts.jsonl``, score outputs);
* compute-optimal record: ``kind`` ``choice`` or ``curve`` with a ``difficulty`` source
  (``eval/compute_optimal.jsonl``);
* eval result: has ``strategy`` and ``budget`` (``eval/results.jsonl``);
* held-out curve row: has ``step``, ``budget`` and ``accuracy`` but no ``strategy`` (``eval/curve.jsonl``:
  the policy evaluated every N training steps at each cap C);
* training metrics: has ``step`` (``metrics.jsonl``).

Malformed lines are collected as ``"file:line: problem"`` strings, never raised. :func:`load_traces` turns the
trace records into :class:`LoggedTrace` objects (a :class:`metarl.types.Trace` with the training step and the
file line it came from); :func:`select_traces` says which traces of a training run count.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl.runlog import jsonl_objects
from metarl.types import Branch, Episode, Trace

__all__ = ["RunData", "LoggedTrace", "load_run", "load_traces", "read_jsonl", "select_traces", "trace_from_record",
           "group_runs", "question_key", "run_label", "is_number"]

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
    """JSON objects of a JSONL file (each with ``_source = "file:line"``) and ``"file:line: problem"`` for each
    line that is not one.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "t.jsonl"
    >>> _ = f.write_text('{"step": 1}\\n[1, 2]\\n')
    >>> rows, problems = read_jsonl(f)
    >>> rows[0]["step"], rows[0]["_source"].endswith("t.jsonl:1"), problems[0].split(": ", 1)[1]
    (1, True, 'expected a JSON object, got list; line skipped')
    """
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
    """A finite int/float that is not a bool.

    >>> is_number(0.5), is_number(True), is_number(float("nan")), is_number("1")
    (True, False, False, False)
    """
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
    """``name``, else ``recipe`` (a string or a mapping with ``name``), else ``fallback``.

    >>> run_label({"recipe": {"name": "obj2_progress"}}, "20261207-101158"), run_label({}, "folder")
    ('obj2_progress', 'folder')
    """
    for v in (config.get("name"), config.get("recipe")):
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"]:
            return v["name"]
    return fallback


def load_run(path: Path | str) -> RunData:
    """Read one run directory (or one JSONL file) into plain records; missing pieces become notes, bad lines
    problems (nothing raises). ``label`` is the config's ``name`` (or ``recipe``), else the folder name.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "config.yaml").write_text("name: demo\\nseed: 3\\n")
    >>> _ = (d / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\\nnot json\\n')
    >>> (d / "eval").mkdir()
    >>> _ = (d / "eval" / "results.jsonl").write_text('{"strategy": "greedy", "budget": 64, "correct": 1}\\n')
    >>> run = load_run(d)
    >>> run.label, run.seed, len(run.metrics), len(run.eval_results), len(run.problems)
    ('demo', 3, 1, 1, 1)
    """
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
    """Runs by label, in first-seen order: runs sharing a label are seeds of one configuration.

    >>> runs = [RunData(Path("a"), "obj2", seed=0), RunData(Path("b"), "obj1"), RunData(Path("c"), "obj2", seed=1)]
    >>> {label: [r.seed for r in rs] for label, rs in group_runs(runs).items()}
    {'obj2': [0, 1], 'obj1': [None]}
    """
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    return groups


def question_key(row: Any) -> Hashable:
    """Identify a question: ``question_id``, else the prompt text, else the row's source line. Takes a JSON
    record or a :class:`LoggedTrace`.

    >>> question_key({"question_id": 7, "prompt": "2+2?"}), question_key({"prompt": "2+2?"})
    (7, '2+2?')
    >>> question_key(trace_from_record({"prompt": "2+2?", "completion": "4", "question_id": "q1"}))
    'q1'
    """
    if not isinstance(row, Mapping):  # a Trace or LoggedTrace
        row = {**(getattr(row, "extra", None) or {}), "prompt": getattr(row, "prompt", None),
               "_source": getattr(row, "source", None) or None}
    for k in ("question_id", "prompt", "_source"):
        if row.get(k) is not None:
            v = row[k]
            return v if isinstance(v, Hashable) else json.dumps(v, sort_keys=True)
    return id(row)


ROLLOUTS = "rollouts.jsonl"
"""The trainer's log of sampled traces: one block per logged step (any other trace file is a scored file)."""


def _source_file(t: dict[str, Any]) -> str:
    src = str(t.get("_source", ""))
    return src.rsplit(":", 1)[0] if ":" in src else src


def select_traces(traces: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda t: True,
                  all_steps: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Trace records passing ``keep``, and a note for every file about what was kept and why.

    A scored file (any trace file not named ``rollouts.jsonl``) gives every trace. A training run's
    ``rollouts.jsonl`` logs a few traces every N steps: only its last logged step's traces (the trained
    policy) are kept, unless ``all_steps``.

    >>> rows = [{"step": s, "_source": f"run/rollouts.jsonl:{i}"} for i, s in enumerate([1, 1, 5], 1)]
    >>> kept, notes = select_traces(rows)
    >>> [t["step"] for t in kept], len(select_traces(rows, all_steps=True)[0])
    ([5], 3)
    """
    by_file: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        by_file.setdefault(_source_file(t), []).append(t)
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for path, ts in by_file.items():
        kept = [t for t in ts if keep(t)]
        steps = sorted({float(t["step"]) for t in kept if is_number(t.get("step"))})
        if Path(path).name == ROLLOUTS and len(steps) > 1 and not all_steps:
            last = steps[-1]
            sel = [t for t in kept if is_number(t.get("step")) and float(t["step"]) == last]
            notes.append(f"`{path}`: kept the {len(sel)} traces of the last logged step {last:g} of {len(steps)} "
                         f"logged steps ({len(kept)} traces with values); --all-steps for every step")
            kept = sel
        elif Path(path).name == ROLLOUTS and len(steps) > 1:
            notes.append(f"`{path}`: kept all {len(kept)} traces of {len(steps)} logged steps "
                         f"({steps[0]:g}..{steps[-1]:g}, --all-steps)")
        elif kept and len(kept) < len(ts):
            notes.append(f"`{path}`: kept {len(kept)} of {len(ts)} traces (the others have no values to plot)")
        out += kept
    return out, notes


@dataclass
class LoggedTrace(Trace):
    """A :class:`metarl.types.Trace` read back from a run: ``step`` is the training step that logged it (None
    for a scored file), ``source`` the ``"file:line"`` it came from, ``extra`` the record's other keys
    (``question_id``, ``task``, ...)."""

    step: int | float | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_TRACE_KEYS = ("prompt", "completion", "answer", "target_tokens", "completion_ids", "prompt_ids", "episodes", "outcome",
               "rewards", "meta", "answer_start", "answer_token_start", "thinking_tokens", "forced", "branch")
_EPISODE_KEYS = ("kind", "start", "end", "text", "token_start", "token_end", "rewards", "info")


def trace_from_record(record: dict[str, Any]) -> LoggedTrace:
    """The typed trace of one JSON record (a ``rollouts.jsonl`` line, a ``metarl-score`` output line): the
    inverse of :meth:`metarl.types.Trace.to_dict`, plus ``step`` and ``_source``. Non-mapping episodes are dropped.

    >>> t = trace_from_record({"step": 4, "prompt": "2+2?", "completion": "4", "meta": {"J_init": 0.25},
    ...                        "episodes": [{"kind": "attempt", "start": 0, "end": 1, "text": "4",
    ...                                      "token_start": 0, "token_end": 1, "info": {"J": 0.75}}]})
    >>> t.step, t.meta["J_init"], t.episodes[0].token_end, t.episodes[0].info["J"]
    (4, 0.25, 1, 0.75)
    """
    eps = [Episode(kind=str(e.get("kind", "other")), start=e.get("start", 0), end=e.get("end", 0),
                   text=e.get("text", ""), token_start=e.get("token_start"), token_end=e.get("token_end"),
                   rewards=dict(e.get("rewards") or {}), info=dict(e.get("info") or {}))
           for e in record.get("episodes") or [] if isinstance(e, dict)]
    answer = record.get("answer")
    return LoggedTrace(
        prompt=str(record.get("prompt", "")), completion=str(record.get("completion", "")),
        answer=None if answer is None else str(answer), target_tokens=record.get("target_tokens"),
        completion_ids=record.get("completion_ids"), prompt_ids=record.get("prompt_ids"), episodes=eps,
        outcome=record.get("outcome"), rewards=dict(record.get("rewards") or {}), meta=dict(record.get("meta") or {}),
        answer_start=record.get("answer_start"), answer_token_start=record.get("answer_token_start"),
        thinking_tokens=record.get("thinking_tokens", (record.get("meta") or {}).get("thinking_tokens")),
        forced=bool(record.get("forced", (record.get("meta") or {}).get("forced", False))),
        branch=Branch(**record["branch"]) if isinstance(record.get("branch"), dict) else None,
        step=record.get("step"), source=str(record.get("_source", "")),
        extra={k: v for k, v in record.items() if k not in _TRACE_KEYS and k not in ("step", "_source")})


def load_traces(path: Path | str, all_steps: bool = False) -> list[LoggedTrace]:
    """The typed traces (records with ``episodes``) of a run directory or a scored JSONL file: every trace of a
    scored file; of a training run's ``rollouts.jsonl``, the last logged step's traces unless ``all_steps``
    (:func:`select_traces`). Raises ``FileNotFoundError`` for a missing path; malformed lines are skipped
    (:func:`load_run` lists them).

    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> rows = [{"step": s, "prompt": "q", "completion": "ab", "episodes": [
    ...     {"kind": "attempt", "start": 0, "end": 2, "text": "ab", "info": {"J": j}}]} for s, j in [(1, 0.2), (5, 0.9)]]
    >>> _ = (d / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
    >>> [(t.step, t.episodes[0].info["J"]) for t in load_traces(d)]
    [(5, 0.9)]
    >>> len(load_traces(d, all_steps=True))
    2
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such run directory or JSONL file")
    run = load_run(path)
    records, _ = select_traces(run.traces, lambda t: isinstance(t.get("episodes"), list) and bool(t["episodes"]),
                               all_steps)
    return [trace_from_record(r) for r in records]
