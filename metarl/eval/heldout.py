"""Held-out evaluation of a policy at a compute cap: pass@1 (greedy, or the mean over sampled completions),
tokens, episodes, verification accuracy.

Used by ``metarl-train`` before and after training and by the demo; ``metarl-eval`` covers the
test-time strategies (pass@k, majority vote, Best-of-N, revisions, budget forcing).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from metarl.generation import complete
from metarl.metrics import mean_se
from metarl.rewards.obj1 import verification_correctness
from metarl.types import Trace


def evaluate_policy(model, tokenizer, rows: Sequence[dict[str, Any]], *, cap: int, scorer, suffix: str | None,
                    answer_stop: Sequence[str] | None = None, answer_tokens: int = 16, batch_size: int = 64,
                    samples: int = 1, temperature: float = 0.0, seed: int = 0,
                    return_traces: bool = False) -> dict[str, Any]:
    """Completions of ``rows`` (``prompt``, ``answer``) at cap ``cap``, segmented and graded with ``scorer``
    (its segmenter, grader, extractor, verdict parser; no rewards are run).

    ``temperature=0``: one greedy completion per row. ``temperature>0``: ``samples`` sampled completions per
    row, drawn under ``seed`` without touching the caller's random state; ``accuracy`` is then the mean
    over all samples (sampled pass@1, far less noisy than one greedy completion) and the traces come
    row-major (row 0's samples first). ``per_question`` gives each row's mean correctness either way.
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be >= 1")
    sample = temperature > 0
    k = samples if sample else 1
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    was_training = model.training
    model.eval()
    try:
        devices, device_type = _devices(model)
        with torch.no_grad(), torch.random.fork_rng(devices=devices, device_type=device_type):
            torch.manual_seed(seed)
            comps = complete(model, tokenizer, prompts, cap, suffix=suffix, answer_stop=answer_stop,
                             answer_tokens=answer_tokens, batch_size=batch_size, do_sample=sample,
                             temperature=temperature if sample else 1.0)
    finally:
        model.train(was_training)
    traces = []
    for r, c in zip((r for r in rows for _ in range(k)), comps):
        t = Trace(prompt=r["prompt"] if isinstance(r["prompt"], str) else str(r["prompt"]), completion=c.text,
                  answer=str(r["answer"]), completion_ids=c.completion_ids, prompt_ids=c.prompt_ids)
        t.meta.update(thinking_tokens=c.thinking_tokens, forced=c.forced)
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


def _devices(model) -> tuple[list[int], str]:
    """The accelerator devices the model's parameters sit on (their RNG states are saved and restored) and
    their type; CPU only: none ("cuda" is torch's default type, unused then)."""
    kinds = {p.device.type for p in model.parameters()} - {"cpu"}
    if not kinds:
        return [], "cuda"
    kind = sorted(kinds)[0]
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == kind}), kind


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
