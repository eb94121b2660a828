"""Compute-optimal selection of test-time strategies per difficulty bin (Snell et al. 2024).

Snell et al. choose, for each question difficulty and compute budget, the strategy and hyper-parameters
that do best, fit on one set of questions and evaluated on another. Here:

* **configurations** c = (strategy name, per-sample budget B): every row name of ``eval/results.jsonl``
  (a search with its hyper-parameters, best-of-N, majority, ...) at every budget. Rows that read the gold
  answer (``oracle``: pass@k for k > 1, searches scored by μ's J) are bounds, not strategies, and are left
  out unless ``include_oracle``;
* **compute** of c on a set of questions Q: tokens_Q(c) = mean over Q of the row's ``total_tokens`` —
  every token the strategy generated for the question (n × tokens for best-of-N, all branches for a
  search) — plus, with ``scorer_tokens`` (default), the tokens its step scorer generated (the policy's
  verification probes, μ's forced answers); accuracy acc_Q(c) = mean of ``correct``;
* **splits**: questions ordered by sha256(f"{seed}|{question_id}") alternate between the *selection* split
  (even ranks) and the *evaluation* split (odd ranks): disjoint, half each (± 1), fixed by ``seed``;
* **difficulty** from two sources, both reported: ``oracle`` — the difficulty model's pass@1 quantile
  bins (``eval/difficulty.json``, graded against a*), and ``predicted`` — quantile bins of the mean
  verifier score of a question's samples (Snell et al.'s predicted difficulty: no ground truth), see
  :func:`predicted_difficulty`; bin ``"all"`` holds every question;
* **selection** for a bin b and compute T, on the bin's selection questions S only (:func:`fit`):
  c*(T) = argmax {acc_S(c) : tokens_S(c) ≤ T} (ties: fewer tokens, then row order);
* **baseline**: best-of-N at matched generated tokens — among the rows of the baseline family (``baseline``
  and its Best-of-k rows ``baseline@k``, at every budget) the one with the most tokens_S(c) ≤ T, chosen
  without looking at accuracy; the default grid of T is the baseline family's own tokens_S, so every
  compute-optimal point has a best-of-N point of the same cost;
* **report** (:func:`evaluate`) on the bin's evaluation questions E: acc_E(c*) and acc_E(baseline) with 95%
  bootstrap intervals over E, tokens_E of both, and the paired difference acc_E(c*) − acc_E(baseline) with
  a paired bootstrap interval; plus the curve acc_E / tokens_E of every configuration (the plot's lines).

The selection never reads an evaluation-split row: :func:`compute_optimal` partitions the rows by split
before :func:`fit` sees them.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from metarl.metrics import bootstrap_ci, difficulty_bins

ALL = "all"
SELECTION, EVALUATION = "selection", "evaluation"
Config = tuple[str, int]  # (strategy name, budget)
Cell = dict[str, tuple[float, float]]  # question id -> (accuracy, total tokens)


def split_questions(question_ids: Iterable[str], seed: int = 0) -> dict[str, str]:
    """``{question_id: "selection" | "evaluation"}``: alternate in sha256(seed|id) order (see module doc).

    >>> s = split_questions(["a", "b", "c", "d"]); sorted(s.values())
    ['evaluation', 'evaluation', 'selection', 'selection']
    """
    ids = sorted(set(map(str, question_ids)), key=lambda q: hashlib.sha256(f"{seed}|{q}".encode()).hexdigest())
    return {q: SELECTION if i % 2 == 0 else EVALUATION for i, q in enumerate(ids)}


def predicted_difficulty(scores: Mapping[str, Sequence[float]], n_bins: int = 5,
                         ties: str = "together") -> dict[str, tuple[float, int]]:
    """``{question_id: (mean verifier score, bin)}`` from each question's sample scores (bin 1 = the highest
    mean score = predicted easiest). Only the order of the means matters (``metrics.difficulty_bins`` on
    their ranks), so any score scale works.

    >>> predicted_difficulty({"a": [1, 1], "b": [0, 0], "c": [1, 0]}, n_bins=3)
    {'a': (1.0, 1), 'b': (0.0, 3), 'c': (0.5, 2)}
    """
    means = {q: sum(map(float, v)) / len(v) for q, v in scores.items() if len(v)}
    if not means:
        raise ValueError("predicted difficulty needs at least one question with verifier scores")
    if any(not math.isfinite(m) for m in means.values()):
        raise ValueError("predicted difficulty: a question's mean verifier score is not finite")
    levels = sorted(set(means.values()))
    rank = {v: (i / (len(levels) - 1) if len(levels) > 1 else 1.0) for i, v in enumerate(levels)}
    bins = difficulty_bins({q: rank[m] for q, m in means.items()}, n_bins=n_bins, ties=ties)
    return {q: (means[q], int(bins[q])) for q in means}


def _cells(rows: Iterable[Mapping[str, Any]], scorer_tokens: bool = True
           ) -> tuple[dict[Config, Cell], list[Config], set[Config]]:
    """config -> question -> (mean correct, mean compute) over repeated rows; configs in row order; the
    configs whose rows read the gold answer. Compute = ``total_tokens`` (+ ``scorer_tokens``)."""
    acc: dict[Config, dict[str, list[tuple[float, float]]]] = {}
    oracle: set[Config] = set()
    for r in rows:
        key = (str(r["strategy"]), int(r["budget"]))
        if r.get("oracle"):
            oracle.add(key)
        tokens = float(r.get("total_tokens", r.get("tokens", 0.0)))
        if scorer_tokens:
            tokens += float(r.get("scorer_tokens") or 0.0)
        acc.setdefault(key, {}).setdefault(str(r["question_id"]), []).append((float(r["correct"]), tokens))
    cells = {c: {q: (sum(a for a, _ in v) / len(v), sum(t for _, t in v) / len(v)) for q, v in qs.items()}
             for c, qs in acc.items()}
    return cells, list(acc), oracle


def _mean(cell: Cell, questions: Sequence[str], i: int) -> float:
    return sum(cell[q][i] for q in questions) / len(questions)


def in_family(strategy: str, baseline: str) -> bool:
    """Whether a row name belongs to the baseline family: the baseline itself or its Best-of-k rows."""
    return strategy == baseline or strategy.startswith(baseline + "@")


def fit(selection: Mapping[Config, Cell], order: Sequence[Config], questions: Sequence[str],
        compute: Sequence[float], baseline: str) -> list[dict[str, Any]]:
    """For each T in ``compute``: the compute-optimal config and the matched baseline on ``questions``
    (selection questions only; a config is a candidate only if it has a row for every one of them)."""
    full = [c for c in order if c in selection and all(q in selection[c] for q in questions)]
    stats = {c: (_mean(selection[c], questions, 0), _mean(selection[c], questions, 1)) for c in full}
    out = []
    for T in compute:
        feasible = [c for c in full if stats[c][1] <= T + 1e-9]
        if not feasible:
            continue
        best = max(feasible, key=lambda c: (stats[c][0], -stats[c][1], -full.index(c)))
        fam = [c for c in feasible if in_family(c[0], baseline)]
        base = max(fam, key=lambda c: (stats[c][1], -full.index(c))) if fam else None
        out.append({"compute": float(T), "config": best, "selection_accuracy": stats[best][0],
                    "selection_tokens": stats[best][1], "baseline": base,
                    "baseline_selection_tokens": stats[base][1] if base else None})
    return out


def _interval(values: Sequence[float], seed: int) -> tuple[float, float, float]:
    iv = bootstrap_ci(values, seed=seed)
    return iv.mean, iv.low, iv.high


def evaluate(choice: Mapping[str, Any], evaluation: Mapping[Config, Cell], questions: Sequence[str],
             seed: int = 0) -> dict[str, Any] | None:
    """acc / tokens of the chosen config and its baseline on the evaluation ``questions`` (95% bootstrap CIs)
    and their paired difference; None when the chosen config has no row for one of them."""
    c = choice["config"]
    if c not in evaluation or any(q not in evaluation[c] for q in questions):
        return None
    acc = [evaluation[c][q][0] for q in questions]
    m, lo, hi = _interval(acc, seed)
    rec = {"strategy": c[0], "budget": c[1], "accuracy": m, "ci_low": lo, "ci_high": hi,
           "tokens": _mean(evaluation[c], questions, 1), "n_evaluation": len(questions)}
    b = choice.get("baseline")
    if b is not None and b in evaluation and all(q in evaluation[b] for q in questions):
        base = [evaluation[b][q][0] for q in questions]
        bm, blo, bhi = _interval(base, seed)
        dm, dlo, dhi = _interval([x - y for x, y in zip(acc, base)], seed)
        rec.update(baseline_strategy=b[0], baseline_budget=b[1], baseline_accuracy=bm, baseline_ci_low=blo,
                   baseline_ci_high=bhi, baseline_tokens=_mean(evaluation[b], questions, 1), difference=dm,
                   difference_ci_low=dlo, difference_ci_high=dhi)
    return rec


def compute_optimal(rows: Sequence[Mapping[str, Any]], bins: Mapping[str, Mapping[str, int]], *, seed: int = 0,
                    baseline: str = "weighted_best_of_n", compute: Sequence[float] | None = None,
                    include_oracle: bool = False, scorer_tokens: bool = True,
                    notes: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Records of ``eval/compute_optimal.jsonl`` (see the module docstring).

    ``bins``: difficulty source (``"oracle"``, ``"predicted"``) -> {question_id: bin}. Records have ``kind``
    ``"choice"`` (one per source, bin and compute T) or ``"curve"`` (one per source, bin and config, on the
    evaluation split), and ``difficulty`` / ``bin``.
    """
    say = notes or (lambda m: None)
    split = split_questions((str(r["question_id"]) for r in rows), seed)
    parts = {name: [r for r in rows if split[str(r["question_id"])] == name] for name in (SELECTION, EVALUATION)}
    sel_cells, order, oracle = _cells(parts[SELECTION], scorer_tokens)  # fit() sees nothing else
    eval_cells, eval_order, eval_oracle = _cells(parts[EVALUATION], scorer_tokens)
    candidates = [c for c in order if include_oracle or c not in oracle]
    curves = list(dict.fromkeys(order + eval_order))
    out: list[dict[str, Any]] = []
    for source, qbins in bins.items():
        groups: dict[Any, list[str]] = {ALL: sorted(split)}
        for q in sorted(split):
            if q in qbins:
                groups.setdefault(int(qbins[q]), []).append(q)
        for b in [ALL] + sorted(k for k in groups if k != ALL):
            sel = [q for q in groups[b] if split[q] == SELECTION]
            ev = [q for q in groups[b] if split[q] == EVALUATION]
            if not sel or not ev:
                say(f"{source} bin {b}: {len(sel)} selection and {len(ev)} evaluation questions; skipped")
                continue
            grid = sorted(set(compute)) if compute else sorted(
                {_mean(sel_cells[c], sel, 1) for c in candidates if in_family(c[0], baseline)
                 and all(q in sel_cells[c] for q in sel)})
            if not grid:
                say(f"{source} bin {b}: no {baseline} rows to set the compute grid; pass compute_optimal.compute")
                continue
            for choice in fit(sel_cells, candidates, sel, grid, baseline):
                rec = evaluate(choice, eval_cells, ev, seed)
                if rec is None:
                    continue
                out.append({"kind": "choice", "difficulty": source, "bin": b, "compute": choice["compute"],
                            "selection_accuracy": choice["selection_accuracy"],
                            "selection_tokens": choice["selection_tokens"], "n_selection": len(sel),
                            "baseline_selection_tokens": choice["baseline_selection_tokens"], **rec})
            for c in curves:
                if c in eval_cells and all(q in eval_cells[c] for q in ev):
                    m, lo, hi = _interval([eval_cells[c][q][0] for q in ev], seed)
                    out.append({"kind": "curve", "difficulty": source, "bin": b, "strategy": c[0], "budget": c[1],
                                "accuracy": m, "ci_low": lo, "ci_high": hi, "tokens": _mean(eval_cells[c], ev, 1),
                                "n_evaluation": len(ev), "baseline": in_family(c[0], baseline),
                                "oracle": c in oracle or c in eval_oracle})
    return out
