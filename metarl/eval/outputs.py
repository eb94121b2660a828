"""The files of an evaluation and its printed table.

``eval/results.jsonl`` (one row per question × strategy × budget), ``eval/samples.jsonl`` (every
sample), ``eval/summary.csv`` (strategy × budget × difficulty bin: accuracy with a 95% bootstrap CI
over questions, mean tokens per sample, mean total tokens) and ``eval/difficulty.json``.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from metarl.metrics import bootstrap_ci

ALL = "all"
SUMMARY_FIELDS = ["strategy", "budget", "difficulty_bin", "accuracy", "ci_low", "ci_high", "mean_tokens",
                  "mean_total_tokens", "n_questions"]


def attach_bins(rows: Iterable[dict[str, Any]], bins: Mapping[str, int] | None) -> int:
    """Set ``difficulty_bin`` on every row whose question has a bin; return how many rows have none."""
    missing = 0
    for r in rows:
        b = None if bins is None else bins.get(str(r["question_id"]))
        if b is None:
            r.pop("difficulty_bin", None)
            missing += 1
        else:
            r["difficulty_bin"] = int(b)
    return missing


def summarize(rows: Sequence[Mapping[str, Any]], confidence: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Accuracy (mean over questions), CI, mean tokens per cell (strategy, budget, bin); bin ``"all"`` first.

    Repeated rows of one question in a cell are averaged first (so each question weighs the same).
    """
    cells: dict[tuple[str, int, Any], dict[str, list[list[float]]]] = {}
    for r in rows:
        bins: list[Any] = [ALL] + ([r["difficulty_bin"]] if r.get("difficulty_bin") is not None else [])
        for b in bins:
            q = cells.setdefault((str(r["strategy"]), int(r["budget"]), b), {}).setdefault(str(r["question_id"]), [])
            q.append([float(r["correct"]), float(r["tokens"]), float(r.get("total_tokens", r["tokens"]))])
    order = {s: i for i, s in enumerate(dict.fromkeys(str(r["strategy"]) for r in rows))}
    out = []
    for (strat, budget, b) in sorted(cells, key=lambda k: (order[k[0]], k[1], 0 if k[2] == ALL else 1,
                                                      0 if k[2] == ALL else int(k[2]))):
        per_q = [[sum(col) / len(col) for col in zip(*vals)] for vals in cells[(strat, budget, b)].values()]
        acc = [v[0] for v in per_q]
        iv = bootstrap_ci(acc, confidence=confidence, seed=seed)
        out.append({"strategy": strat, "budget": budget, "difficulty_bin": b, "accuracy": iv.mean,
                    "ci_low": iv.low, "ci_high": iv.high,
                    "mean_tokens": sum(v[1] for v in per_q) / len(per_q),
                    "mean_total_tokens": sum(v[2] for v in per_q) / len(per_q), "n_questions": len(per_q)})
    return out


def format_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Accuracy (and mean thinking tokens per sample) of every strategy at every budget, all questions."""
    rows = [r for r in summary if r["difficulty_bin"] == ALL]
    if not rows:
        return "(no results)"
    budgets = sorted({int(r["budget"]) for r in rows})
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    cell = {(r["strategy"], int(r["budget"])): r for r in rows}
    width = max(len("strategy"), *(len(s) for s in strategies))
    nq = max(int(r["n_questions"]) for r in rows)
    lines = [f"accuracy (mean thinking tokens per sample) over {nq} questions",
             "strategy".ljust(width) + "".join(f"  {'budget ' + str(b):>16}" for b in budgets)]
    for s in strategies:
        parts = []
        for b in budgets:
            r = cell.get((s, b))
            parts.append(f"  {'-':>16}" if r is None else f"  {r['accuracy']:>7.3f} ({r['mean_tokens']:6.1f})")
        lines.append(s.ljust(width) + "".join(parts))
    return "\n".join(lines)


def _json_line(obj: Mapping[str, Any]) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return json.dumps({k: clean(v) for k, v in obj.items()}, ensure_ascii=False)


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records one JSON object per line (non-finite floats become null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(_json_line(r) + "\n")
    return path


def write_summary_csv(path: Path, summary: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for r in summary:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in SUMMARY_FIELDS})
    return path
