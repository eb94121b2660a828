"""metarl.metrics against hand-computed values, brute force, and MRT's regret notebook."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metarl.metrics import (
    J_at,
    area_under_curve,
    best_of_n,
    bootstrap_ci,
    cumulative_regret,
    curve_from_trace,
    difficulty_bins,
    episode_progress,
    information_gain_curve,
    majority_vote,
    mean_ci,
    mean_normalized_regret,
    median_ci,
    normalise_answer,
    normalized_regret,
    pass_at_k,
    pass_at_k_array,
    vote_accuracy,
    weighted_best_of_n,
)
from metarl.types import Episode, Trace

# ------------------------------------------------------------------ pass@k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration_of_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_hand_values_and_large_n_is_stable():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 3) == 0.0
    # C(1000, 500) overflows a float; the product form does not
    expected = 1 - math.comb(990, 500) / math.comb(1000, 500)
    assert pass_at_k(1000, 10, 500) == pytest.approx(expected, rel=1e-12)


def test_pass_at_k_array_broadcasts_the_scalar_estimator():
    n, c = np.array([4, 8, 16]), np.array([1, 0, 16])
    out = pass_at_k_array(n[:, None], c[:, None], np.array([1, 2, 4])[None, :])
    assert out.shape == (3, 3)
    for i, j in itertools.product(range(3), range(3)):
        assert out[i, j] == pass_at_k(int(n[i]), int(c[i]), [1, 2, 4][j])


@pytest.mark.parametrize("args, match", [((4, 5, 1), "0 <= c <= n"), ((4, 2, 5), "1 <= k <= n"), ((4, 2, 0), "1 <= k"), ((4.5, 2, 1), "integer")])
def test_pass_at_k_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)


# ------------------------------------------------------------------ voting


def test_normalise_answer_groups_equal_answers():
    assert normalise_answer("\\boxed{2}") == normalise_answer(" 2.0 ") == normalise_answer("$2$.") == "2"
    assert normalise_answer("1,000") == "1000"
    assert normalise_answer("\\dfrac{1}{2}") == normalise_answer("\\frac{1}{2}")
    assert normalise_answer("Yes") == "yes"
    assert normalise_answer("") is None and normalise_answer(None) is None


def test_majority_vote_counts_and_breaks_ties_by_first_occurrence():
    assert majority_vote(["3", "5", "5", "3", "5"]) == "5"
    assert majority_vote(["1", "2", "2.0", "1"]) == "1"  # 2-2 tie: "1" came first
    assert majority_vote(["2", "1", "1", "2.0"]) == "2"
    assert majority_vote([None, "", "7", None]) == "7"  # unanswered samples do not vote
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    assert majority_vote(["\\boxed{4}", "4", "3"]) == "\\boxed{4}"  # first original answer of the winner
    assert majority_vote(["a", "A", "b"], key=lambda a: a) == "a"  # custom key: no case folding


def test_weighted_best_of_n_sums_scores_per_distinct_answer():
    answers = ["a", "b", "b", "c"]
    assert weighted_best_of_n(answers, [0.9, 0.5, 0.45, 0.2]) == "b"  # b: 0.95 > a: 0.9
    assert best_of_n(answers, [0.9, 0.5, 0.45, 0.2]) == "a"
    assert majority_vote(answers) == "b"
    assert weighted_best_of_n(["a", "b", "b"], [0.6, 0.3, 0.3]) == "a"  # exact tie 0.6 = 0.6: first wins
    assert weighted_best_of_n(["b", "a"], [0.5, 0.5]) == "b"
    assert weighted_best_of_n([None, "x"], [5.0, 0.1]) == "x"  # unanswered sample cannot win
    assert best_of_n(["x", "y", "z"], [0.2, 0.7, 0.7]) == "y"
    assert best_of_n([], []) is None


def test_voting_rejects_mismatched_or_nan_scores():
    with pytest.raises(ValueError, match="one score per answer"):
        weighted_best_of_n(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="finite"):
        best_of_n(["a"], [float("nan")])


def test_vote_accuracy_splits_ties_uniformly():
    assert vote_accuracy(["1", "2", "2", "1"], [1, 0, 0, 1]) == 0.5
    assert vote_accuracy(["1", "2", "3"], [0, 1, 0]) == pytest.approx(1 / 3)
    assert vote_accuracy(["1", "2", "2"], [1, 0, 0]) == 0.0
    assert vote_accuracy(["1", "2", "2"], [1, 0, 0], scores=[0.9, 0.3, 0.3]) == 1.0
    assert vote_accuracy([None], [0]) == 0.0


# ------------------------------------------------------------------ curves and regret

A = information_gain_curve([10, 30], [0.6, 0.4], J_init=0.2, kinds=["attempt", "verify"])
B = information_gain_curve([20], [1.0], J_init=0.0, kinds=["attempt"])


def test_J_at_is_piecewise_linear_and_held_after_the_end():
    assert A.tokens == (0.0, 10.0, 30.0) and A.J == (0.2, 0.6, 0.4)
    assert J_at(A, 0) == pytest.approx(0.2)
    assert J_at(A, 5) == pytest.approx(0.4)
    assert J_at(A, 10) == pytest.approx(0.6)
    assert J_at(A, 20) == pytest.approx(0.5)
    assert J_at(A, 30) == pytest.approx(0.4)
    assert J_at(A, 1000) == pytest.approx(0.4)
    np.testing.assert_allclose(J_at(A, [5, 20, 40]), [0.4, 0.5, 0.4])
    with pytest.raises(ValueError, match=">= 0"):
        J_at(A, -1)


def test_normalized_regret_hand_computed():
    # C0 inside the first episode: ∫_0^5 = (0.2 + 0.4)/2 * 5 = 1.5
    assert normalized_regret(A, 5) == pytest.approx(1 - 1.5 / 5)
    # C0 inside the second episode: 4 + (0.6 + 0.5)/2 * 10 = 9.5
    assert normalized_regret(A, 20) == pytest.approx(1 - 9.5 / 20)
    # C0 at the end: 4 + (0.6 + 0.4)/2 * 20 = 14
    assert normalized_regret(A, 30) == pytest.approx(1 - 14 / 30)
    # C0 beyond the end: J held at 0.4 for 20 more tokens: 14 + 8 = 22
    assert normalized_regret(A, 50) == pytest.approx(1 - 22 / 50)
    assert area_under_curve(B, 50) == pytest.approx(0.5 * 20 * 1.0 + 30 * 1.0)
    assert normalized_regret(A, 50, J_star=0.5) == pytest.approx(0.5 - 22 / 50)
    with pytest.raises(ValueError, match="positive"):
        normalized_regret(A, 0)


def test_mean_regret_over_traces_of_unequal_length():
    # B ends at 20, A at 30: at C0 = 50 both are held; at C0 = 5 both are inside their first episode.
    got = mean_normalized_regret([A, B], [5, 50])
    rb5 = 1 - (0.5 * 5 * 0.25) / 5  # B's J(5) = 0.25
    np.testing.assert_allclose(got, [((1 - 1.5 / 5) + rb5) / 2, ((1 - 22 / 50) + (1 - 40 / 50)) / 2])
    # grouped (MRT): average within a question first, then over questions
    C = information_gain_curve([50], [0.0], J_init=0.0)
    g = mean_normalized_regret([A, B, C], [50], groups=["q1", "q1", "q2"])
    assert g[0] == pytest.approx((((1 - 22 / 50) + (1 - 40 / 50)) / 2 + 1.0) / 2)
    assert mean_normalized_regret([A, B, C], [50])[0] == pytest.approx(((1 - 22 / 50) + (1 - 40 / 50) + 1.0) / 3)


def test_zero_width_episode_is_a_jump():
    c = information_gain_curve([10, 10, 20], [0.5, 0.9, 0.9], J_init=0.1)
    assert J_at(c, 10) == pytest.approx(0.9)  # right-continuous
    assert J_at(c, 9.999) == pytest.approx(0.1 + 0.4 * 0.9999)
    assert area_under_curve(c, 20) == pytest.approx((0.1 + 0.5) / 2 * 10 + 0.9 * 10)


def test_curve_rejects_decreasing_offsets_and_mismatched_lengths():
    with pytest.raises(ValueError, match="non-decreasing"):
        information_gain_curve([10, 5], [0.1, 0.2])
    with pytest.raises(ValueError, match="one J per episode"):
        information_gain_curve([10], [0.1, 0.2])


def mrt_notebook_area(x: list[float], y: list[float], cutoff: float) -> float:
    """CMU-AIRe/MRT analysis/code/regret.ipynb: y = [0] + J, x = [0] + flops, trapezoid with cutoff."""
    y = [0.0] + list(y)
    x = np.array([0.0] + list(x))
    filtered_x = list(x[x < cutoff])
    if len(filtered_x) == len(x):
        return float(np.trapezoid(y + [y[-1]], list(x) + [cutoff]) / cutoff)
    ci = len(filtered_x) - 1
    iy = y[ci] + (cutoff - x[ci]) / (x[ci + 1] - x[ci]) * (y[ci + 1] - y[ci])
    return float(np.trapezoid(y[: ci + 1] + [iy], list(x[x < cutoff]) + [cutoff]) / cutoff)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.tuples(st.integers(1, 400), st.floats(0, 1)), min_size=1, max_size=8),
    st.integers(1, 3000),
)
def test_regret_equals_mrt_notebook(points, cutoff):
    xs = np.cumsum([p[0] for p in points]).astype(float).tolist()
    ys = [p[1] for p in points]
    curve = information_gain_curve(xs, ys, J_init=None)  # MRT prepends (0, 0)
    assert not curve.has_init
    assert normalized_regret(curve, cutoff) == pytest.approx(1 - mrt_notebook_area(xs, ys, cutoff), abs=1e-9)


def test_cumulative_regret_excludes_J_init():
    np.testing.assert_allclose(cumulative_regret([0.5, 1.0, 0.75]), [0.0, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(cumulative_regret([0.2, 0.2], J_star=0.5), [0.0, 0.3, 0.6])
    np.testing.assert_allclose(cumulative_regret(A.J[1:]), [0.0, 0.4, 1.0])
    np.testing.assert_allclose(episode_progress(A), [0.4, -0.2])


def trace_dict(tokens: bool = True, j_init: float | None = 0.25) -> dict:
    eps = [
        {"kind": "attempt", "start": 0, "end": 12, "text": "", "info": {"J": 0.5}},
        {"kind": "verify", "start": 12, "end": 20, "text": "", "info": {}},  # no J: skipped
        {"kind": "revise", "start": 20, "end": 31, "text": "", "info": {"J": 0.75}},
    ]
    if tokens:
        for e, (a, b) in zip(eps, [(0, 4), (4, 6), (6, 9)]):
            e["token_start"], e["token_end"] = a, b
    return {"completion": "", "meta": {} if j_init is None else {"J_init": j_init}, "episodes": eps}


def test_curve_from_trace_dicts_and_trace_objects():
    c = curve_from_trace(trace_dict())
    assert (c.tokens, c.J, c.kinds, c.unit, c.has_init) == ((0, 4, 9), (0.25, 0.5, 0.75), ("attempt", "revise"), "tokens", True)
    c = curve_from_trace(trace_dict(tokens=False, j_init=None))
    assert (c.tokens, c.J, c.unit, c.has_init) == ((0, 12, 31), (0.0, 0.5, 0.75), "chars", False)
    assert curve_from_trace(trace_dict(), unit="chars").tokens == (0, 12, 31)
    with pytest.raises(ValueError, match="token_end"):
        curve_from_trace(trace_dict(tokens=False), unit="tokens")
    assert curve_from_trace({"completion": "x", "episodes": [{"kind": "other", "end": 1}]}) is None
    tr = Trace("p", "abcd", episodes=[Episode("attempt", 0, 2, "ab", 0, 2, info={"J": 0.3}), Episode("verify", 2, 4, "cd", 2, 3, info={"J": 0.9})], meta={"J_init": 0.1})
    c = curve_from_trace(tr)
    assert c.tokens == (0, 2, 3) and c.J == (0.1, 0.3, 0.9) and c.kinds == ("attempt", "verify")


# ------------------------------------------------------------------ difficulty bins


def test_difficulty_bins_equal_quantiles_easiest_first():
    vals = [0.05, 0.95, 0.5, 0.35, 0.85, 0.15, 0.65, 0.25, 0.75, 0.45]
    assert difficulty_bins(vals) == [5, 1, 3, 4, 1, 5, 2, 4, 2, 3]
    assert difficulty_bins({"q1": 0.9, "q2": 0.1, "q3": 0.5}, n_bins=3) == {"q1": 1, "q2": 3, "q3": 2}
    assert difficulty_bins([]) == []


def test_difficulty_bins_ties():
    vals = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # together: 1.0s take ranks 0-3 (mid-rank 1.5 -> bin 1), 0.0s ranks 4-9 (mid-rank 6.5 -> bin 4)
    assert difficulty_bins(vals) == [4, 1, 4, 1, 4, 4, 1, 4, 1, 4]
    # split: ties ranked in input order, exactly two questions per bin
    assert difficulty_bins(vals, ties="split") == [3, 1, 3, 1, 4, 4, 2, 5, 2, 5]
    assert difficulty_bins([0.5] * 7) == [3] * 7


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=40), st.sampled_from(["together", "split"]))
def test_difficulty_bins_are_monotone_in_pass_at_1(vals, ties):
    bins = difficulty_bins(vals, ties=ties)
    assert all(1 <= b <= 5 for b in bins)
    for i, j in itertools.product(range(len(vals)), repeat=2):
        if vals[i] > vals[j]:
            assert bins[i] <= bins[j]
        if ties == "together" and vals[i] == vals[j]:
            assert bins[i] == bins[j]
    if ties == "split":
        counts = np.bincount(bins, minlength=6)[1:]
        assert counts.max() - counts.min() <= 1


def test_difficulty_bins_reject_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        difficulty_bins([0.5, 1.5])
    with pytest.raises(ValueError, match="ties"):
        difficulty_bins([0.5], ties="random")


# ------------------------------------------------------------------ confidence intervals


def test_t_interval_hand_computed():
    iv = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert (iv.mean, iv.n) == (2.0, 3)
    assert iv.low == pytest.approx(2 - half) and iv.high == pytest.approx(2 + half)
    iv = mean_ci([0.2, 0.4], confidence=0.9)  # t_{0.95, 1} = 6.313751514675041, s/sqrt(2) = 0.1
    assert iv.half_width == pytest.approx(0.6313751514675041)
    one = mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=95)


def test_median_interval_order_statistics_hand_computed():
    # n = 9: P(Bin(9, 1/2) <= 1) = 10/512 <= 0.025 < P(<= 2) = 46/512, so k = 2: [x_(2), x_(8)]
    iv = median_ci([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])
    assert (iv.mean, iv.low, iv.high, iv.n) == (5.0, 2.0, 8.0, 9)
    six = median_ci([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # n = 6: 1/64 <= 0.025 < 7/64, so k = 1: [x_(1), x_(6)]
    assert (six.low, six.high) == (1.0, 6.0)
    five = median_ci([1.0, 2.0, 3.0, 4.0, 5.0])  # n = 5: 1/32 > 0.025, no interval
    assert five.mean == 3.0 and math.isnan(five.low) and math.isnan(five.high)
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.9).low == 1.0  # 1/32 <= 0.05


def test_median_interval_with_censored_values():
    # censored values are lower bounds: low from the bounds; high is the 8th smallest *exact* value
    vals = [0.16, 0.68, 0.75, 0.80, 0.80, 0.81, 0.81, 0.85, 0.79]
    iv = median_ci(vals, [True, True] + [False] * 7)
    assert iv.low == 0.68 and math.isinf(iv.high)
    ok = median_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 20.0], [True] * 8 + [False])
    assert (ok.low, ok.high) == (2.0, 8.0)  # the censored value is the largest: x_(8) is still known
    low = median_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], [False] + [True] * 8)
    assert (low.low, low.high) == (2.0, 9.0)  # one censored bound (true value >= 1): 8th smallest exact is 9
    with pytest.raises(ValueError, match="exact flags"):
        median_ci([1.0, 2.0], [True])


def test_median_interval_covers_at_its_level():
    # the order-statistic interval is distribution-free: simulated coverage of a skewed law's median
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(20000, 9))
    lo, hi = np.sort(x, axis=1)[:, 1], np.sort(x, axis=1)[:, 7]
    assert median_ci(x[0]).low == lo[0] and median_ci(x[0]).high == hi[0]
    covered = np.mean((lo <= math.log(2)) & (math.log(2) <= hi))
    assert covered == pytest.approx(1 - 2 * 10 / 512, abs=0.01)


def test_bootstrap_interval():
    # resampled means of [0, 1] are 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5%/97.5% quantiles are 0 and 1
    iv = bootstrap_ci([0.0, 1.0])
    assert (iv.mean, iv.low, iv.high) == (0.5, 0.0, 1.0)
    const = bootstrap_ci([0.3] * 10)
    assert const.low == pytest.approx(0.3) and const.high == pytest.approx(0.3)
    x = np.random.default_rng(1).normal(size=400)
    b, t = bootstrap_ci(x, seed=3), mean_ci(x)
    assert b == bootstrap_ci(x, seed=3)  # deterministic given the seed
    assert b.low < b.mean < b.high
    assert b.half_width == pytest.approx(t.half_width, rel=0.15)
