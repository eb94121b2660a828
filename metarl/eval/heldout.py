"""Held-out evaluation of a policy at a compute cap: pass@1 (greedy, or the mean over sampled completions),
tokens, episodes, verification accuracy.

Used by ``metarl-train`` before and after training and by the demo; ``metarl-eval`` covers the
test-time strategies (pass@k, majority vote, Best-of-N, revisions, budget forcing).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from metarl.engine import GREEDY, Engine, Sampling, StreamSpec, prompt_ids_for
from metarl.metrics import mean_se
from metarl.rewards.obj1 import verification_correctness
from metarl.types import Trace


def evaluate_policy(backend, rows: Sequence[dict[str, Any]], *, cap: int, scorer, samples: int = 1,
                    temperature: float = 0.0, seed: int = 0, return_traces: bool = False) -> dict[str, Any]:
    """Completions of ``rows`` (``prompt``, ``answer``) at cap ``cap``, generated on ``backend`` with the
    scorer's meta-prover forcing an answer at the cap, then segmented and graded with ``scorer`` (its
    segmenter, grader, extractor, verdict parser; no rewards are run).

    ``temperature=0``: one greedy completion per row. ``temperature>0``: ``samples`` sampled completions per
    row, drawn under ``seed`` without touching the caller's random state; ``accuracy`` is then the mean
    over all samples (sampled pass@1, far less noisy than one greedy completion) and the traces come
    row-major (row 0's samples first). ``per_question`` gives each row's mean correctness either way.
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be >= 1")
    sample = temperature > 0
    k = samples if sample else 1
    expanded = [r for r in rows for _ in range(k)]
    engine = Engine(backend, scorer.prover)
    prompt_ids = [prompt_ids_for(engine.tokenizer, r["prompt"]) for r in expanded]
    streams = engine.run(prompt_ids, StreamSpec(cap=cap), Sampling(temperature) if sample else GREEDY, seed=seed)
    traces = []
    for r, s in zip(expanded, streams):
        t = Trace(prompt=r["prompt"] if isinstance(r["prompt"], str) else str(r["prompt"]), completion=s.text,
                  answer=str(r["answer"]), completion_ids=s.ids, prompt_ids=s.prompt_ids)
        t.meta.update(thinking_tokens=s.thinking, forced=s.forced)
        scorer.segment(t)
        t.outcome = float(bool(scorer.grader(scorer.extract_answer(t.completion), t.answer, t.prompt)))
        traces.append(t)
    summary = summarize(traces, scorer, cap)
    summary["n"], summary["samples"] = len(rows), k  # problems, completions per problem
    summary["per_question"] = [sum(t.outcome or 0.0 for t in traces[i:i + k]) / k for i in range(0, len(traces), k)]
    if k > 1 and rows:  # the standard error over questions (samples of one question are not independent)
        summary["accuracy_se"] = mean_se(summary["per_question"])[1]
    if return_traces:
        summary["traces"] = traces
    return summary


def summarize(traces: Sequence[Trace], scorer, cap: int) -> dict[str, Any]:
    n = len(traces)
    acc = sum(t.outcome or 0.0 for t in traces) / max(n, 1)
    verdicts = []
    for t in traces:
        for i, e in enumerate(t.episodes):
            if e.kind == "verify":
                v = verification_correctness(e, t.episodes[:i], t.answer, scorer.grader, scorer.extract_answer,
                                             scorer.parse_verdict, t.prompt)
                if v is not None:
                    verdicts.append(v > 0)
    toks = [t.meta.get("thinking_tokens", 0) for t in traces]
    return {
        "n": n,
        "cap": cap,
        "accuracy": acc,
        "accuracy_se": math.sqrt(acc * (1 - acc) / n) if n else float("nan"),
        "tokens": sum(toks) / max(n, 1),
        "cap_fraction": sum(x >= cap for x in toks) / max(n, 1),
        "episodes_per_trace": sum(len(t.episodes) for t in traces) / max(n, 1),
        "verification_accuracy": (sum(verdicts) / len(verdicts)) if verdicts else None,
    }
