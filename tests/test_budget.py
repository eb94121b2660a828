"""L1's length-controlled rewards: LCPO-Exact / LCPO-Max numbers, clipping edges, prompts, errors."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import metarl.rewards.budget as budget
from metarl.registry import ConfigError, call_matching, instantiate
from metarl.rewards.budget import budget_prompt, budget_sentence, lcpo_exact, lcpo_max


@pytest.mark.parametrize("outcome, n_y, target, alpha_l, want", [
    (1.0, 1000, 1000, 0.0003, 1.0),           # on target, correct
    (0.0, 1000, 1000, 0.0003, 0.0),           # on target, wrong
    (1.0, 1200, 1000, 0.0003, 0.94),          # 1 - .0003*200
    (1.0, 800, 1000, 0.0003, 0.94),           # symmetric: |N - n| = 200 below the target too
    (0.0, 4000, 1000, 0.0003, -0.9),          # 0 - .0003*3000
    (1.0, 0, 5000, 0.0003, -0.5),             # 1 - 1.5: no clipping in the exact form
    (1.0, 300, 100, 0.01, -1.0),              # 1 - .01*200
])
def test_lcpo_exact(outcome, n_y, target, alpha_l, want):
    assert lcpo_exact(outcome, n_y, target, alpha_l=alpha_l) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("outcome, n_y, target, alpha_l, mult, add", [
    # s = alpha*(N - n); delta = (clip(s) + 1)/2; mult = max(0, delta)*correct; add = delta + correct
    (1.0, 2000, 1000, 0.0003, 0.35, 1.35),     # s = -.3
    (0.0, 2000, 1000, 0.0003, 0.0, 0.35),
    (1.0, 1000, 1000, 0.0003, 0.5, 1.5),       # s = 0: exactly on the budget
    (1.0, 500, 1000, 0.0003, 0.575, 1.575),    # s = +.15: under budget is rewarded
    (1.0, 0, 1000, 0.001, 1.0, 2.0),           # s = 1: upper clip edge
    (1.0, 0, 10000, 0.001, 1.0, 2.0),          # s = 10 -> clipped to 1
    (1.0, 2000, 1000, 0.001, 0.0, 1.0),        # s = -1: lower clip edge, delta = 0
    (1.0, 9000, 1000, 0.001, 0.0, 1.0),        # s = -8 -> clipped to -1
    (0.0, 9000, 1000, 0.001, 0.0, 0.0),
    (1.0, 1500, 1000, 0.001, 0.25, 1.25),      # s = -.5
])
def test_lcpo_max(outcome, n_y, target, alpha_l, mult, add):
    assert lcpo_max(outcome, n_y, target, alpha_l=alpha_l) == pytest.approx(mult, abs=1e-12)
    assert lcpo_max(outcome, n_y, target, alpha_l=alpha_l, form="additive") == pytest.approx(add, abs=1e-12)


def test_lcpo_max_is_bounded_and_monotone_in_length():
    values = [lcpo_max(1.0, n, 1000, alpha_l=0.002) for n in range(0, 3000, 50)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:]))  # shorter is never worse
    assert values[0] == 1.0 and values[-1] == 0.0


def test_unscorable_and_ungraded():
    assert lcpo_exact(None, 10, 10) is None and lcpo_max(None, 10, 10) is None
    assert math.isnan(lcpo_exact(math.nan, 10, 10))
    assert math.isnan(lcpo_max(math.nan, 10, 10)) and math.isnan(lcpo_max(math.nan, 10, 10, form="additive"))


def test_missing_target_names_the_fix():
    for fn in (lcpo_exact, lcpo_max):
        with pytest.raises(ConfigError, match="`target_tokens` column"):
            fn(1.0, 100, None)
        with pytest.raises(ConfigError, match="num_tokens is missing"):
            fn(1.0, None, 100)
    with pytest.raises(ConfigError, match="target_tokens"):
        budget_prompt("x", None)
    with pytest.raises(ConfigError, match="non-negative whole number"):
        lcpo_max(1.0, 100, -300)
    with pytest.raises(ConfigError, match="non-negative whole number"):
        lcpo_exact(1.0, 100, 12.5)
    with pytest.raises(ConfigError, match="form='mult'"):
        lcpo_max(1.0, 100, 100, form="mult")
    with pytest.raises(ValueError, match="not a graded correctness"):
        lcpo_exact("yes", 100, 100)


def test_dataset_integer_types_are_accepted():
    assert lcpo_exact(1.0, np.int64(1200), np.int64(1000)) == pytest.approx(0.94)
    assert lcpo_max(np.float32(1.0), 2000, 1000.0, alpha_l=0.0003) == pytest.approx(0.35)


def test_budget_prompt_wording():
    assert budget_sentence(1024) == "Think for 1024 tokens."
    assert budget_sentence(1024, "max") == "Think for maximum 1024 tokens."
    q = "Find x. Let's think step by step and output the final answer within \\boxed{}."
    assert budget_prompt(q, 1024) == q + " Think for 1024 tokens."
    # the prompt's closing newline (the tiny task's cue to start the completion) stays at the end
    assert budget_prompt(q + "\n", 256, mode="max") == q + " Think for maximum 256 tokens.\n"
    assert budget_prompt("", 5) == "Think for 5 tokens."
    with pytest.raises(ConfigError, match="mode='min'"):
        budget_prompt(q, 5, mode="min")


def test_budget_prompt_conversation():
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Solve x+1=3."},
            {"role": "assistant", "content": "x=2"}, {"role": "user", "content": "And x+2=5?"}]
    out = budget_prompt(conv, 64)
    assert out[-1]["content"] == "And x+2=5? Think for 64 tokens."
    assert [m["content"] for m in out[:3]] == ["Be brief.", "Solve x+1=3.", "x=2"]
    assert conv[-1]["content"] == "And x+2=5?"  # input untouched
    with pytest.raises(ValueError, match="no user message"):
        budget_prompt([{"role": "system", "content": "hi"}], 64)


def test_called_by_name_through_the_registry():
    available = {"outcome": 1.0, "num_tokens": 2000, "target_tokens": 1000, "completion": "...", "answer": "4"}
    assert call_matching(lcpo_exact, available) == pytest.approx(0.7)
    additive = instantiate({"_target_": "metarl.rewards.budget.lcpo_max", "_partial_": True, "form": "additive", "alpha_l": 0.001})
    assert call_matching(additive, available) == pytest.approx(1.0)  # s = -1 -> delta 0, + 1


def test_doctests():
    result = doctest.testmod(budget)
    assert result.failed == 0 and result.attempted >= 8


def test_lcpo_max_defaults_to_l1s_max_alpha():
    """L1's Max runs use α_L = 0.01 (0.0003 is its Exact value): 30 tokens over N give s = −0.3."""
    assert lcpo_max(1.0, 1030, 1000) == pytest.approx(0.35)
    assert lcpo_max(1.0, 1030, 1000) == lcpo_max(1.0, 1030, 1000, alpha_l=0.01)
