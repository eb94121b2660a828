"""Held-out evaluation (metarl-train before/after, the demo): greedy and sampled pass@1."""
from __future__ import annotations

import math

import pytest
import torch

from metarl.engine.hf import HFBackend
from metarl.eval.heldout import evaluate_policy
from metarl.scoring import Scorer
from metarl.segmenters import TokenChunkSegmenter


def parity_grader(prediction, answer, prompt=""):
    """'Correct' when the completion has an even number of characters: spread on a random model."""
    return prediction is not None and len(prediction) % 2 == 0


def scorer(tok):
    return Scorer(segmenter=TokenChunkSegmenter(k=4), rewards=[], grader=parity_grader,
                  extract_answer=lambda t: t, parse_verdict=lambda t: None, tokenizer=tok)


ROWS = [{"prompt": f"Q{i}: {i}+{i}=", "answer": str(2 * i)} for i in range(6)]


def run(tiny, **kw):
    model, tok = tiny
    return evaluate_policy(HFBackend(model, tok), ROWS, cap=9, scorer=scorer(tok), return_traces=True, **kw)


def test_greedy_is_one_completion_per_problem(tiny):
    r = run(tiny)
    assert r["n"] == len(ROWS) and r["samples"] == 1 and len(r["traces"]) == len(ROWS)
    assert r["per_question"] == [t.outcome for t in r["traces"]]
    assert r["accuracy"] == pytest.approx(sum(r["per_question"]) / len(ROWS))
    acc = r["accuracy"]
    assert r["accuracy_se"] == pytest.approx(math.sqrt(acc * (1 - acc) / len(ROWS)))
    assert run(tiny)["per_question"] == r["per_question"]  # greedy: deterministic
    assert run(tiny, samples=5)["samples"] == 1  # samples only apply when sampling


def test_sampled_pass_at_1_averages_each_problems_samples(tiny):
    r = run(tiny, samples=4, temperature=1.0, seed=3)
    traces = r["traces"]
    assert r["n"] == len(ROWS) and r["samples"] == 4 and len(traces) == 4 * len(ROWS)
    assert [t.prompt for t in traces] == [row["prompt"] for row in ROWS for _ in range(4)]  # row-major
    per = [sum(t.outcome for t in traces[4 * i:4 * i + 4]) / 4 for i in range(len(ROWS))]
    assert r["per_question"] == per
    assert r["accuracy"] == pytest.approx(sum(t.outcome for t in traces) / len(traces))
    mean = sum(per) / len(per)
    se = math.sqrt(sum((p - mean) ** 2 for p in per) / (len(per) - 1) / len(per))
    assert r["accuracy_se"] == pytest.approx(se)  # over problems, not over (correlated) samples
    # a random model at T=1 does not repeat itself: the 4 samples of a problem differ
    assert len({t.completion for t in traces[:4]}) > 1


def test_sampling_is_seeded_and_leaves_the_callers_rng_alone(tiny):
    torch.manual_seed(123)
    a = run(tiny, samples=3, temperature=1.0, seed=7)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = run(tiny, samples=3, temperature=1.0, seed=7)
    after_b = torch.rand(1)
    torch.manual_seed(123)
    expected = torch.rand(1)
    assert [t.completion for t in a["traces"]] == [t.completion for t in b["traces"]]
    assert after_a == after_b == expected  # evaluation did not consume the training RNG
    c = run(tiny, samples=3, temperature=1.0, seed=8)
    assert [t.completion for t in c["traces"]] != [t.completion for t in a["traces"]]


def test_bad_sample_count_is_refused(tiny):
    with pytest.raises(ValueError, match="samples"):
        run(tiny, samples=0, temperature=1.0)


def test_no_rows(tiny):
    model, tok = tiny
    r = evaluate_policy(HFBackend(model, tok), [], cap=4, scorer=scorer(tok), samples=2, temperature=1.0)
    assert r["n"] == 0 and r["per_question"] == []
