"""Held-out evaluation of a policy at a compute cap: pass@1 (greedy, or the mean over sampled completions),
tokens, episodes, verification accuracy.

Used by ``metarl-train`` before and after training and by the demo; ``metarl-eval`` covers the
test-time strategies (pass@k, majority vote, Best-of-N, revisions, budget forcing).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from metarl.engine import GREEDY, Engine, Sampling, StreamSpec, prompt_ids_for, prompt_text
from metarl.metrics import mean_se
from metarl.rewards.obj1 import GENERATION_KINDS, verification_correctness
from metarl.types import Trace
from metarl.utils import progress_bar


class CountingBackend:
    """``backend`` (any engine backend: attributes pass through) reporting the rows it generates in the first call
    of ``method`` (``generate`` or ``branch``): ``on_start(rows)`` before that call, ``on_rows(k)`` after each batch
    of ``k`` rows. The transformers backend reports after each of its batches (``batch_size`` rows), any other
    backend once, after the call. What is generated, and with which random draws, is unchanged: a progress bar
    over one call of a backend that sees the whole workload at once (the sampled pass@1 of ``metarl-train``,
    the forced answers of ``metarl-calibrate``)."""

    def __init__(self, backend: Any, on_rows: Callable[[int], None], on_start: Callable[[int], None] | None = None,
                 method: str = "generate") -> None:
        if method not in ("generate", "branch"):
            raise ValueError(f"method={method!r}: use generate or branch")
        self._backend, self._on_rows, self._on_start, self._method = backend, on_rows, on_start, method
        self._counted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def generate(self, requests, sampling, seed=None):
        rows = sum(r.n for r in requests if r.max_tokens > 0)
        return self._call("generate", rows, requests, sampling, seed)

    def branch(self, sequences, prefixes, n, *args, **kwargs):
        rows = sum(len(p) for p in prefixes) * n if n > 0 else 0
        return self._call("branch", rows, sequences, prefixes, n, *args, **kwargs)

    def _call(self, method: str, rows: int, *args: Any, **kwargs: Any) -> Any:
        call = getattr(self._backend, method)
        if method != self._method or self._counted:
            return call(*args, **kwargs)
        self._counted = True
        if self._on_start is not None:
            self._on_start(rows)
        from metarl.engine.hf import HFBackend

        inner = self._backend
        run = getattr(inner, "_run", None)  # the transformers backend: one _run per batch of rows, one list per row
        if not isinstance(inner, HFBackend) or run is None or "_run" in vars(inner):
            out = call(*args, **kwargs)
            self._on_rows(rows)
            return out

        def counted(ids, *a, **k):
            out = run(ids, *a, **k)
            self._on_rows(len(out))
            return out

        inner._run = counted  # an instance attribute for this call only: the class is untouched
        try:
            return call(*args, **kwargs)
        finally:
            del inner._run


def evaluate_policy(backend, rows: Sequence[dict[str, Any]], *, cap: int, scorer, samples: int = 1,
                    temperature: float = 0.0, seed: int = 0, return_traces: bool = False,
                    progress: bool = True, desc: str | None = None) -> dict[str, Any]:
    """Completions of ``rows`` (``prompt``, ``answer``) at cap ``cap``, generated on ``backend`` with the
    scorer's meta-prover forcing an answer at the cap, then segmented and graded with ``scorer`` (its
    segmenter, grader, extractor, verdict parser; no rewards are run).

    ``temperature=0``: one greedy completion per row. ``temperature>0``: ``samples`` sampled completions per
    row, drawn under ``seed`` without touching the caller's random state; ``accuracy`` is then the mean
    over all samples (sampled pass@1, far less noisy than one greedy completion) and the traces come
    row-major (row 0's samples first). ``per_question`` gives each row's mean correctness either way.

    ``progress``: one progress bar on stderr (``desc``, default "held-out evaluation, cap C") over the problems,
    advanced as the backend finishes each batch (``samples`` finished completions make one problem's worth), with the
    rate in problems/s and an ETA; :class:`CountingBackend` leaves the generation itself unchanged.
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be >= 1")
    sample = temperature > 0
    k = samples if sample else 1
    expanded = [r for r in rows for _ in range(k)]
    per = f" x {k} samples" if k > 1 else ""
    bar = progress_bar(total=len(rows), desc=desc or f"held-out evaluation, cap {cap} ({len(rows)} problems{per})",
                       unit="problem", disable=not progress or not rows)
    done = [0]

    def advance(n: int) -> None:  # n completions: whole problems' worth of them move the bar
        done[0] = min(len(expanded), done[0] + n)
        bar.update(done[0] // k - bar.n)

    engine = Engine(CountingBackend(backend, advance) if progress else backend, scorer.prover)
    prompt_ids = [prompt_ids_for(engine.tokenizer, r["prompt"]) for r in expanded]
    try:
        streams = engine.run(prompt_ids, StreamSpec(cap=cap), Sampling(temperature) if sample else GREEDY, seed=seed)
    finally:
        bar.close()
    traces = []
    for r, s in zip(expanded, streams):  # segmented and graded by the scorer, as in training (no rewards run)
        t = Trace.from_stream(s, prompt_text(engine.tokenizer, r["prompt"]), r["answer"])
        scorer.segment(t)
        t.outcome = scorer.grade(t)
        traces.append(t)
    per_trace = [behaviour(t, scorer) for t in traces]
    summary = summarize(traces, per_trace, cap)
    summary["n"], summary["samples"] = len(rows), k  # problems, completions per problem
    summary["per_question"] = [sum(t.outcome or 0.0 for t in traces[i:i + k]) / k for i in range(0, len(traces), k)]
    summary["behaviour"] = per_question_behaviour(per_trace, k)  # episodes, verify_acc, revise_after_refuted
    if k > 1 and rows:  # the standard error over questions (samples of one question are not independent)
        summary["accuracy_se"] = mean_se(summary["per_question"])[1]
    if return_traces:
        summary["traces"] = traces
    return summary


BEHAVIOURS = ("episodes", "verify_acc", "revise_after_refuted")
"""Per-question behaviour of a policy (:func:`behaviour`), each a mean over the question's samples."""


def behaviour(trace: Trace, scorer) -> dict[str, int]:
    """What a segmented, graded trace does with its budget: ``episodes``; ``verdicts`` (verify episodes whose
    verdict can be judged) and ``right_verdicts`` (those matching the true correctness of the attempt they check);
    ``refuted`` (verify episodes whose stated verdict is "incorrect") and ``revised`` (those followed by another
    attempt or revision rather than the end of the stream).

    >>> from types import SimpleNamespace
    >>> from metarl.types import Episode
    >>> sc = SimpleNamespace(grader=lambda p, a, q="": p == a, extract_answer=lambda t: t,
    ...                      parse_verdict=lambda t: {"correct": True, "incorrect": False}.get(t))
    >>> t = Trace(prompt="", completion="", answer="2+2")
    >>> t.episodes = [Episode("attempt", 0, 1, "1+2"), Episode("verify", 1, 2, "incorrect"),
    ...               Episode("revise", 2, 3, "2+2"), Episode("verify", 3, 4, "incorrect")]
    >>> behaviour(t, sc)
    {'episodes': 4, 'verdicts': 2, 'right_verdicts': 1, 'refuted': 2, 'revised': 1}
    """
    out = {"episodes": len(trace.episodes), "verdicts": 0, "right_verdicts": 0, "refuted": 0, "revised": 0}
    eps = trace.episodes
    for i, e in enumerate(eps):
        if e.kind != "verify":
            continue
        v = verification_correctness(e, eps[:i], trace.answer, scorer.grader, scorer.extract_answer,
                                     scorer.parse_verdict, trace.prompt)
        if v is not None:
            out["verdicts"] += 1
            out["right_verdicts"] += int(v > 0)
        if scorer.parse_verdict(e.text) is False:
            out["refuted"] += 1
            out["revised"] += int(i + 1 < len(eps) and eps[i + 1].kind in GENERATION_KINDS)
    return out


def per_question_behaviour(per_trace: Sequence[dict[str, int]], k: int) -> dict[str, list[float | None]]:
    """:data:`BEHAVIOURS` per question from :func:`behaviour` of its ``k`` consecutive traces: mean episodes per
    trace, the share of right verdicts, the share of "incorrect" verdicts followed by a revision (None where the
    question's samples have no judged verdict, or no "incorrect" verdict).

    >>> per_question_behaviour([{"episodes": 4, "verdicts": 2, "right_verdicts": 1, "refuted": 2, "revised": 1},
    ...                         {"episodes": 1, "verdicts": 0, "right_verdicts": 0, "refuted": 0, "revised": 0}], 2)
    {'episodes': [2.5], 'verify_acc': [0.5], 'revise_after_refuted': [0.5]}
    """
    out: dict[str, list[float | None]] = {b: [] for b in BEHAVIOURS}
    for i in range(0, len(per_trace), k):
        g = per_trace[i:i + k]
        tot = {key: sum(x[key] for x in g) for key in g[0]}
        out["episodes"].append(tot["episodes"] / len(g))
        out["verify_acc"].append(tot["right_verdicts"] / tot["verdicts"] if tot["verdicts"] else None)
        out["revise_after_refuted"].append(tot["revised"] / tot["refuted"] if tot["refuted"] else None)
    return out


def summarize(traces: Sequence[Trace], per: Sequence[dict[str, int]], cap: int) -> dict[str, Any]:
    """Accuracy, tokens, episodes, verification accuracy and the share of "incorrect" verdicts followed by a
    revision over ``traces``, whose :func:`behaviour` is ``per``."""
    n = len(traces)
    acc = sum(t.outcome or 0.0 for t in traces) / max(n, 1)
    verdicts = sum(b["verdicts"] for b in per)
    refuted = sum(b["refuted"] for b in per)
    toks = [t.thinking_tokens or 0 for t in traces]
    return {
        "n": n,
        "cap": cap,
        "accuracy": acc,
        "accuracy_se": math.sqrt(acc * (1 - acc) / n) if n else float("nan"),
        "tokens": sum(toks) / max(n, 1),
        "cap_fraction": sum(x >= cap for x in toks) / max(n, 1),
        "episodes_per_trace": sum(len(t.episodes) for t in traces) / max(n, 1),
        "verification_accuracy": sum(b["right_verdicts"] for b in per) / verdicts if verdicts else None,
        "revise_after_refuted": sum(b["revised"] for b in per) / refuted if refuted else None,
    }
