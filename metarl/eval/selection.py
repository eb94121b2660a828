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
  compute-optimal point has a best-of-N point of the same cost (``beyond`` adds multiples of its largest:
  budgets only costlier strategies such as the searches can use, against best-of-N's largest);
* **report** (:func:`evaluate`) on the bin's evaluation questions E: acc_E(c*) and acc_E(baseline) with 95%
  bootstrap intervals over E, tokens_E of both, and the paired difference acc_E(c*) − acc_E(baseline) with
  a paired bootstrap interval; plus the curve acc_E / tokens_E of every configuration (the plot's lines).

The selection never reads an evaluation-split row: :func:`compute_optimal` partitions the rows by split
before :func:`fit` sees them.

**Efficiency ratio** (Snell et al.'s "compute best-of-N needs for the same accuracy", :func:`efficiency_ratios`):
for a bin and compute T with choice c* (fit on the selection split), on the evaluation questions E

    R(T) = tokens_BoN(acc_E(c*)) / tokens_E(c*)

where tokens_BoN(a) is read off best-of-N's curve on E (:func:`tokens_to_reach`): the points
(tokens_E(b), acc_E(b)) of the baseline family, their running maximum in tokens, interpolated linearly in
log tokens. R > 1: best-of-N needs R times the compute of c* for c*'s accuracy (Snell et al.: about 4);
R = inf: best-of-N never reaches it ("not reached"). Its interval resamples E (the same questions for
every configuration) and re-reads the curve per resample; c* stays fixed (it was chosen on the other split).
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


def _grid(cells: Mapping[Config, Cell], candidates: Sequence[Config], questions: Sequence[str], baseline: str,
          compute: Sequence[float] | None, beyond: Sequence[float]) -> list[tuple[float, str | None]]:
    """The compute grid of a bin: ``compute`` if given, else the baseline family's own costs on ``questions``
    (label: that configuration), plus ``m ×`` the largest of them for each m in ``beyond`` (label ``"m×"``):
    budgets above best-of-N's largest, where only costlier strategies (searches) add options."""
    if compute:
        return [(float(T), None) for T in sorted(set(compute))]
    own: dict[float, str] = {}
    for c in candidates:
        if in_family(c[0], baseline) and all(q in cells[c] for q in questions):
            own.setdefault(_mean(cells[c], questions, 1), f"{c[0]} @ {c[1]}")
    grid = sorted(own.items())
    if grid:
        top = grid[-1][0]
        grid += [(float(m) * top, f"{float(m):g}×") for m in sorted(set(beyond)) if float(m) > 1]
    return grid


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


NOT_REACHED, CHEAPEST, INTERPOLATED = "not reached", "cheapest", "interpolated"
TOL = 1e-9  # accuracies closer than this are equal (means of the same values in another summation order)


def tokens_to_reach(curve: Iterable[tuple[float, float]], target: float) -> tuple[float, str]:
    """Tokens a (tokens, accuracy) curve needs to reach accuracy ``target``, and how it was read.

    The points are sorted by tokens and replaced by their running maximum of accuracy (a curve that spends
    more for less is never preferred). With ``(t_i, a_i)`` the first point with ``a_i ≥ target`` and
    ``(t_{i-1}, a_{i-1})`` the one before it::

        tokens = t_{i-1} · (t_i / t_{i-1}) ** ((target − a_{i-1}) / (a_i − a_{i-1}))

    (linear in log tokens, the scale on which best-of-N's accuracy grows with N). A target at or below the
    cheapest point's accuracy costs that point's tokens (``"cheapest"``: the curve has no cheaper point); a
    target above every point is ``(inf, "not reached")``.

    >>> tokens_to_reach([(100, 0.25), (400, 0.75)], 0.5)  # halfway in accuracy: the geometric mean
    (200.0, 'interpolated')
    >>> tokens_to_reach([(100, 0.25), (400, 0.75)], 0.1), tokens_to_reach([(100, 0.25), (400, 0.75)], 0.8)
    ((100.0, 'cheapest'), (inf, 'not reached'))
    """
    pts = sorted(((float(t), float(a)) for t, a in curve), key=lambda p: (p[0], -p[1]))
    if not pts:
        raise ValueError("tokens_to_reach needs at least one (tokens, accuracy) point")
    if any(not t > 0 or not math.isfinite(t) or not math.isfinite(a) for t, a in pts):
        raise ValueError(f"tokens_to_reach needs positive finite tokens and finite accuracies, got {pts}")
    # TOL: an accuracy the curve holds, summed in another order, still counts as reached
    if target - TOL <= pts[0][1]:
        return pts[0][0], CHEAPEST
    best_t, best_a = pts[0]
    for t, a in pts[1:]:
        if a >= target - TOL:  # first point of the running maximum at or above the target (best_a < target)
            frac = min(1.0, (target - best_a) / (a - best_a))
            return best_t * (t / best_t) ** frac, INTERPOLATED
        if a > best_a:
            best_t, best_a = t, a
    return math.inf, NOT_REACHED


def efficiency_ratio(accuracy: float, tokens: float, curve: Iterable[tuple[float, float]]) -> float:
    """R = tokens_to_reach(curve, accuracy) / tokens: how many times the compute of a configuration with this
    accuracy and cost the curve (best-of-N) needs for the same accuracy; inf when it never gets there.

    >>> efficiency_ratio(0.5, 50.0, [(100, 0.25), (400, 0.75)])  # best-of-N needs 200 tokens: 4x
    4.0
    """
    if not tokens > 0:
        raise ValueError(f"efficiency_ratio: the configuration's tokens must be positive, got {tokens}")
    return tokens_to_reach(curve, accuracy)[0] / float(tokens)


def _percentiles(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Percentile interval by order statistics (inf allowed: a resample best-of-N never matched)."""
    v = sorted(values)
    alpha = (1.0 - confidence) / 2
    lo = v[min(len(v) - 1, max(0, int(math.floor(alpha * len(v)))))]
    hi = v[min(len(v) - 1, max(0, int(math.ceil((1.0 - alpha) * len(v))) - 1))]
    return lo, hi


def ratio_interval(chosen: Sequence[tuple[float, float]], curve: Mapping[Any, Sequence[tuple[float, float]]], *,
                   n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The efficiency ratio of one choice on evaluation questions, with a paired percentile bootstrap interval.

    ``chosen``: per evaluation question, (correct, tokens) of the chosen configuration; ``curve``: per
    best-of-N configuration, the same questions' (correct, tokens) in the same order. Each resample draws the
    questions once (with replacement) for every configuration, recomputes the means and re-reads the curve.
    ``share_not_reached``: the share of resamples in which best-of-N never reaches the chosen accuracy.
    """
    import numpy as np

    n = len(chosen)
    if n == 0 or not curve or any(len(v) != n for v in curve.values()):
        raise ValueError("ratio_interval needs the same non-empty list of questions for the choice and every curve point")
    c = np.asarray(chosen, dtype=float)
    pts = np.asarray([curve[k] for k in curve], dtype=float)  # configs x questions x (correct, tokens)

    def one(idx: Any) -> tuple[float, float, float, str]:
        acc, tok = c[idx, 0].mean(), c[idx, 1].mean()
        means = pts[:, idx, :].mean(axis=1)
        need, how = tokens_to_reach([(t, a) for a, t in means], acc)
        return need / tok, acc, tok, how

    ratio, acc, tok, how = one(np.arange(n))
    need = ratio * tok
    rng = np.random.default_rng(seed)
    boot = [one(rng.integers(0, n, size=n))[0] for _ in range(n_resamples)] if n > 1 else []
    lo, hi = _percentiles(boot, confidence) if boot else (math.nan, math.nan)
    return {"ratio": ratio, "ratio_low": lo, "ratio_high": hi, "how": how, "accuracy": acc, "tokens": tok,
            "baseline_tokens_needed": need, "baseline_max_tokens": float(pts[:, :, 1].mean(axis=1).max()),
            "share_not_reached": (sum(math.isinf(r) for r in boot) / len(boot)) if boot else math.nan,
            "n_evaluation": n}


def _split_bins(rows: Sequence[Mapping[str, Any]], bins: Mapping[str, Mapping[str, int]], seed: int,
                scorer_tokens: bool) -> tuple[Any, Any, Any, list[tuple[str, Any, list[str], list[str]]]]:
    """The split's cells and the bins to walk: ``(selection, evaluation)`` as :func:`_cells` gives them, and
    ``(source, bin, selection questions, evaluation questions)`` for every source and bin (``"all"`` first)."""
    split = split_questions((str(r["question_id"]) for r in rows), seed)
    parts = {name: [r for r in rows if split[str(r["question_id"])] == name] for name in (SELECTION, EVALUATION)}
    walk = []
    for source, qbins in bins.items():
        groups: dict[Any, list[str]] = {ALL: sorted(split)}
        for q in sorted(split):
            if q in qbins:
                groups.setdefault(int(qbins[q]), []).append(q)
        for b in [ALL] + sorted(k for k in groups if k != ALL):
            walk.append((source, b, [q for q in groups[b] if split[q] == SELECTION],
                         [q for q in groups[b] if split[q] == EVALUATION]))
    return _cells(parts[SELECTION], scorer_tokens), _cells(parts[EVALUATION], scorer_tokens), split, walk


def efficiency_ratios(rows: Sequence[Mapping[str, Any]], bins: Mapping[str, Mapping[str, int]], *, seed: int = 0,
                      baseline: str = "weighted_best_of_n", compute: Sequence[float] | None = None,
                      include_oracle: bool = False, scorer_tokens: bool = True, n_resamples: int = 2000,
                      confidence: float = 0.95, beyond: Sequence[float] = ()) -> list[dict[str, Any]]:
    """Per difficulty source, bin and compute T: the compute-optimal choice of :func:`compute_optimal` (same
    split, grid and :func:`fit`) and its efficiency ratio over best-of-N on the evaluation split (module doc),
    from ``eval/results.jsonl`` rows. Records: ``difficulty``, ``bin``, ``compute``, ``grid_config`` (what set T:
    the best-of-N configuration of that selection-split cost, or ``"m×"`` its largest), ``strategy`` / ``budget`` of c*, and the
    fields of :func:`ratio_interval`.

    The best-of-N curve is every non-oracle configuration of the baseline family with a row for each
    evaluation question of the bin.
    """
    (sel_cells, order, oracle), (eval_cells, eval_order, eval_oracle), _, walk = _split_bins(rows, bins, seed,
                                                                                           scorer_tokens)
    candidates = [c for c in order if include_oracle or c not in oracle]
    family = [c for c in dict.fromkeys(order + eval_order) if in_family(c[0], baseline)
              and c not in oracle and c not in eval_oracle]
    out: list[dict[str, Any]] = []
    for source, b, sel, ev in walk:
        if not sel or not ev:
            continue
        grid = _grid(sel_cells, candidates, sel, baseline, compute, beyond)
        curve = {c: [eval_cells[c][q] for q in ev] for c in family
                 if c in eval_cells and all(q in eval_cells[c] for q in ev)}
        if not grid or not curve:
            continue
        label = dict(grid)
        for choice in fit(sel_cells, candidates, sel, [T for T, _ in grid], baseline):
            c = choice["config"]
            if c not in eval_cells or any(q not in eval_cells[c] for q in ev):
                continue
            rec = ratio_interval([eval_cells[c][q] for q in ev], curve, n_resamples=n_resamples,
                                 confidence=confidence, seed=seed)
            out.append({"difficulty": source, "bin": b, "compute": choice["compute"],
                        "grid_config": label.get(choice["compute"]), "strategy": c[0],
                        "budget": c[1], "selection_accuracy": choice["selection_accuracy"],
                        "n_selection": len(sel), **rec})
    return out


def compute_optimal(rows: Sequence[Mapping[str, Any]], bins: Mapping[str, Mapping[str, int]], *, seed: int = 0,
                    baseline: str = "weighted_best_of_n", compute: Sequence[float] | None = None,
                    include_oracle: bool = False, scorer_tokens: bool = True,
                    notes: Callable[[str], None] | None = None, beyond: Sequence[float] = ()) -> list[dict[str, Any]]:
    """Records of ``eval/compute_optimal.jsonl`` (see the module docstring); ``beyond``: multiples of the
    baseline's largest cost added to the default grid (see :func:`_grid`).

    ``bins``: difficulty source (``"oracle"``, ``"predicted"``) -> {question_id: bin}. Records have ``kind``
    ``"choice"`` (one per source, bin and compute T) or ``"curve"`` (one per source, bin and config, on the
    evaluation split), and ``difficulty`` / ``bin``.
    """
    say = notes or (lambda m: None)
    # fit() sees the selection cells only
    (sel_cells, order, oracle), (eval_cells, eval_order, eval_oracle), _, walk = _split_bins(rows, bins, seed,
                                                                                           scorer_tokens)
    candidates = [c for c in order if include_oracle or c not in oracle]
    curves = list(dict.fromkeys(order + eval_order))
    out: list[dict[str, Any]] = []
    for source, b, sel, ev in walk:
        if not sel or not ev:
            say(f"{source} bin {b}: {len(sel)} selection and {len(ev)} evaluation questions; skipped")
            continue
        grid = [T for T, _ in _grid(sel_cells, candidates, sel, baseline, compute, beyond)]
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
