"""Model-specific question difficulty (Snell et al.): pass@1 of a base model, cut into quantile bins.

A question's difficulty is the base model's pass@1 = c/n over ``n`` samples at a reference budget;
``metrics.difficulty_bins`` cuts the questions into ``n_bins`` quantile bins (bin 1 = easiest). The
per-question table is written to ``eval/difficulty.json`` and can be reused by a later evaluation
(``difficulty.file``), so a fine-tuned model is binned by its base model's difficulty.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metarl.metrics import difficulty_bins
from metarl.registry import ConfigError


@dataclass(frozen=True)
class QuestionDifficulty:
    """One question's base-model pass@1 (``c`` of ``n`` samples correct) and its difficulty bin."""

    question_id: str
    n: int
    c: int
    pass_at_1: float
    difficulty_bin: int


def compute_difficulty(counts: Mapping[str, tuple[int, int]], n_bins: int = 5,
                       ties: str = "together") -> list[QuestionDifficulty]:
    """Bins from ``{question_id: (n, c)}``; questions keep the mapping's order.

    >>> [d.difficulty_bin for d in compute_difficulty({"a": (4, 4), "b": (4, 0), "c": (4, 2)}, n_bins=3)]
    [1, 3, 2]
    """
    if not counts:
        raise ValueError("no questions to bin: difficulty needs at least one question with samples")
    p1: dict[str, float] = {}
    for q, (n, c) in counts.items():
        if n < 1 or not 0 <= c <= n:
            raise ValueError(f"question {q!r}: need n >= 1 and 0 <= c <= n samples, got n={n}, c={c}")
        p1[q] = c / n
    bins = difficulty_bins(p1, n_bins=n_bins, ties=ties)
    return [QuestionDifficulty(q, counts[q][0], counts[q][1], p1[q], int(bins[q])) for q in counts]


def counts_from_samples(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """``{question_id: (n, c)}`` from sample records with ``question_id`` and ``correct``."""
    out: dict[str, list[int]] = {}
    for r in records:
        nc = out.setdefault(str(r["question_id"]), [0, 0])
        nc[0] += 1
        nc[1] += int(bool(r["correct"]))
    return {q: (v[0], v[1]) for q, v in out.items()}


def write_difficulty(path: str | Path, entries: Iterable[QuestionDifficulty], **meta: Any) -> Path:
    """Write ``{**meta, "questions": [...]}`` as JSON (meta: model, budget, n, n_bins, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "questions": [asdict(e) for e in entries]}, indent=1), encoding="utf-8")
    return path


def read_difficulty(path: str | Path) -> dict[str, int]:
    """``{question_id: difficulty_bin}`` from a file written by :func:`write_difficulty`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"difficulty.file={str(path)!r}: cannot read it ({e.strerror or e}); give the "
                          "eval/difficulty.json of an earlier metarl-eval run") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"difficulty.file={str(path)!r}: not JSON ({e.msg} at line {e.lineno}); give the "
                          "eval/difficulty.json of an earlier metarl-eval run") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise ConfigError(f"difficulty.file={str(path)!r} has no `questions` list; is it an eval/difficulty.json?")
    out: dict[str, int] = {}
    for i, q in enumerate(questions):
        if not isinstance(q, dict) or "question_id" not in q or not isinstance(q.get("difficulty_bin"), int):
            raise ConfigError(f"difficulty.file={str(path)!r}: entry {i} lacks question_id / integer difficulty_bin")
        out[str(q["question_id"])] = int(q["difficulty_bin"])
    return out
