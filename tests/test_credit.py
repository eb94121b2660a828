"""Per-token credit assignment: hand-computed advantages for every mode, TRL equivalence, errors."""
from __future__ import annotations

import doctest
import math
import random

import pytest
import torch

import metarl.credit as credit
from metarl.credit import build_advantages, episode_returns, nanstd, spans_to_token_index

EPS = 1e-4
SQ2 = math.sqrt(2.0)

# Two prompts (groups 0 and 1) x two samples, 1-3 episodes each, T = 6.
REWARDS = [[1.0, 0.0, 1.0], [0.0, 1.0], [2.0], [0.0, 0.0]]
OUTCOMES = [1.0, 0.0, 1.0, 1.0]
SPANS = [[(0, 1), (1, 3), (3, 4)], [(0, 2), (2, 5)], [(0, 3)], [(0, 2), (2, 6)]]
GROUPS = [0, 0, 1, 1]
T = 6
TERMINATION = [[0.5, 0.25, 1.0], [0.5, 0.0], [0.75], [1.0, 0.5]]


def tokens(per_episode: list[list[float]]) -> torch.Tensor:
    """Spread hand-computed episode advantages over SPANS' tokens, 0 elsewhere."""
    out = torch.zeros(len(SPANS), T, dtype=torch.float64)
    for i, spans in enumerate(SPANS):
        for (s, e), a in zip(spans, per_episode[i]):
            out[i, s:e] = a
    return out


def adv(**kw) -> torch.Tensor:
    kw.setdefault("gamma", 0.5)
    args = {k: kw.pop(k) for k in ("episode_rewards", "outcomes", "token_spans", "group_ids") if k in kw}
    return build_advantages(args.get("episode_rewards", REWARDS), args.get("outcomes", OUTCOMES),
                            args.get("token_spans", SPANS), args.get("group_ids", GROUPS), T,
                            dtype=torch.float64, **kw)


def test_episode_returns_and_token_index():
    assert episode_returns([1.0, 0.0, 1.0], 0.5) == [1.25, 0.5, 1.0]
    assert episode_returns([1.0, 2.0, 3.0], 1.0) == [6.0, 5.0, 3.0]
    assert episode_returns([1.0, 2.0], 0.0) == [1.0, 2.0]
    assert spans_to_token_index(SPANS, T).tolist() == [
        [0, 1, 1, 2, -1, -1], [0, 0, 1, 1, 1, -1], [0, 0, 0, -1, -1, -1], [0, 0, 1, 1, 1, 1]]


def test_mrt_no_scaling_hand_computed():
    # R (gamma=.5): t0 [1.25, .5, 1], t1 [.5, 1], t2 [2], t3 [0, 0]; G = R + r:
    # t0 [2.25, 1.5, 2], t1 [.5, 1], t2 [3], t3 [1, 1]; group means of G_0: 1.375 and 2.
    got = adv(normalize="mrt", scale_rewards="none")
    want = tokens([[0.875, 0.125, 0.625], [-0.875, -0.375], [1.0], [-1.0, -1.0]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got[0].tolist() == pytest.approx([0.875, 0.125, 0.125, 0.625, 0.0, 0.0])
    assert got[3].tolist() == pytest.approx([-1.0] * 6)


def test_mrt_group_and_batch_scaling_hand_computed():
    base = [[0.875, 0.125, 0.625], [-0.875, -0.375], [1.0], [-1.0, -1.0]]
    s0, s1 = 1.75 / SQ2 + EPS, 2.0 / SQ2 + EPS  # Bessel std of {2.25, .5} and {3, 1}
    got = adv(normalize="mrt", scale_rewards="group")
    want = tokens([[a / s for a in row] for row, s in zip(base, [s0, s0, s1, s1])])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # batch: std of {2.25, .5, 3, 1} (mean 1.6875, squared deviations sum 3.921875, n-1 = 3)
    sb = math.sqrt(3.921875 / 3) + EPS
    got = adv(normalize="mrt", scale_rewards="batch")
    torch.testing.assert_close(got, tokens([[a / sb for a in row] for row in base]), rtol=0, atol=1e-12)


def test_mrt_weights():
    # dense_weight .5, alpha 2: G = .5 R + 2 r: t0 [2.625, 2.25, 2.5], t1 [.25, .5], t2 [3], t3 [2, 2]
    got = adv(normalize="mrt", scale_rewards="none", alpha=2.0, dense_weight=0.5)
    want = tokens([[1.1875, 0.8125, 1.0625], [-1.1875, -0.9375], [0.5], [-0.5, -0.5]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_separate_hand_computed():
    # outcome stream: group 0 r = {1, 0} -> +-.5 / (1/sqrt2 + eps); group 1 r = {1, 1} -> 0.
    o = 0.5 / (1 / SQ2 + EPS)
    # dense stream, group 0 episodes {1,0,1,0,1}: mean .6, Bessel var 1.2/4 = .3.
    s = math.sqrt(0.3) + EPS
    # r_hat: t0 [.4, -.6, .4]/s -> reward-to-go (gamma .5): [.2, -.4, .4]/s; t1 [-.6, .4]/s -> [-.4, .4]/s
    # group 1 episodes {2, 0, 0}: mean 2/3, Bessel var (16/9 + 4/9 + 4/9)/2 = 4/3.
    s1 = math.sqrt(4 / 3) + EPS
    # t2 [4/3]/s1; t3 [-2/3, -2/3]/s1 -> [-1, -2/3]/s1
    got = adv(normalize="separate", scale_rewards="group")
    want = tokens([[0.2 / s + o, -0.4 / s + o, 0.4 / s + o], [-0.4 / s - o, 0.4 / s - o],
                   [(4 / 3) / s1], [-1 / s1, (-2 / 3) / s1]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    got = adv(normalize="separate", scale_rewards="group", alpha=2.0, dense_weight=0.5)
    want = tokens([[0.5 * 0.2 / s + 2 * o, 0.5 * -0.4 / s + 2 * o, 0.5 * 0.4 / s + 2 * o],
                   [0.5 * -0.4 / s - 2 * o, 0.5 * 0.4 / s - 2 * o], [0.5 * (4 / 3) / s1],
                   [0.5 * -1 / s1, 0.5 * (-2 / 3) / s1]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_separate_no_scaling_and_batch():
    # "none": centred only. dense t0 [.4,-.6,.4] -> rtg [.2,-.4,.4]; t1 [-.6,.4] -> [-.4,.4];
    # t2 [4/3]; t3 [-2/3,-2/3] -> [-1,-2/3]; outcome +-.5 and 0.
    got = adv(normalize="separate", scale_rewards="none")
    want = tokens([[0.7, 0.1, 0.9], [-0.9, -0.1], [4 / 3], [-1.0, -2 / 3]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # "batch": outcome std over {1,0,1,1} = .5; dense std over all 8 episode rewards
    # {1,0,1,0,1,2,0,0}: mean 5/8, squared deviations 3*(3/8)^2 + 4*(5/8)^2 + (11/8)^2 = 3.875, /7.
    so, sd = 0.5 + EPS, math.sqrt(3.875 / 7) + EPS
    got = adv(normalize="separate", scale_rewards="batch")
    want = tokens([[0.2 / sd + 0.5 / so, -0.4 / sd + 0.5 / so, 0.4 / sd + 0.5 / so],
                   [-0.4 / sd - 0.5 / so, 0.4 / sd - 0.5 / so], [(4 / 3) / sd], [-1 / sd, (-2 / 3) / sd]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_termination_baseline_hand_computed():
    # A = G - b with G as in the mrt test: t0 [2.25-.5, 1.5-.25, 2-1], t1 [.5-.5, 1-0], t2 [3-.75], t3 [1-1, 1-.5]
    base = [[1.75, 1.25, 1.0], [0.0, 1.0], [2.25], [0.0, 0.5]]
    got = adv(baseline="termination", termination_values=TERMINATION, scale_rewards="none")
    torch.testing.assert_close(got, tokens(base), rtol=0, atol=1e-12)
    s0, s1 = 1.75 / SQ2 + EPS, 2.0 / SQ2 + EPS  # group std of G_0 = {2.25, .5} and {3, 1}
    got = adv(baseline="termination", termination_values=TERMINATION, scale_rewards="group")
    want = tokens([[a / s for a in row] for row, s in zip(base, [s0, s0, s1, s1])])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # normalize is not used with the termination baseline
    torch.testing.assert_close(got, adv(baseline="termination", termination_values=TERMINATION, normalize="mrt"))


def test_padding_and_gaps_are_zero():
    spans = [[(1, 2), (4, 5)], [(0, 6)], [], [(2, 3)]]
    got = build_advantages([[1.0, 3.0], [2.0], [], [5.0]], [1.0, 0.0, 1.0, 0.0], spans, [0, 0, 1, 1], T,
                           normalize="mrt")
    mask = spans_to_token_index(spans, T) < 0
    assert got.shape == (4, T) and got.dtype == torch.float32
    assert (got[mask] == 0).all() and (got[~mask] != 0).all()


def test_nan_episode_reward_counts_as_zero():
    nan_rewards = [[1.0, math.nan, 1.0], [0.0, 1.0], [2.0], [math.nan, 0.0]]
    for mode in ("mrt", "separate"):
        assert torch.equal(adv(episode_rewards=nan_rewards, normalize=mode), adv(normalize=mode))


def test_nan_outcome_is_unscorable():
    outcomes = [1.0, math.nan, 1.0, 1.0]
    # mrt, no scaling: group 0 baseline is t0's own G_0 = 2.25 -> t0 [0, -.75, -.25]; t1 all 0.
    got = adv(outcomes=outcomes, normalize="mrt", scale_rewards="none")
    want = tokens([[0.0, -0.75, -0.25], [0.0, 0.0], [1.0], [-1.0, -1.0]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # separate: t1 is dropped from the dense statistics too: t0's episodes {1,0,1} alone (mean 2/3,
    # Bessel var 1/3); t0's outcome term is centred on itself -> 0, its dense credit survives.
    s = math.sqrt(1 / 3) + EPS
    got = adv(outcomes=outcomes, normalize="separate")
    x, y = (1 / 3) / s, (-2 / 3) / s  # r_hat for 1 and 0
    assert got[1].abs().sum() == 0
    torch.testing.assert_close(got[0, :4], torch.tensor([x + 0.5 * y + 0.25 * x, y + 0.5 * x, y + 0.5 * x, x],
                                                        dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(got[2:], adv(normalize="separate")[2:], rtol=0, atol=0)
    assert (build_advantages([[], []], [None, 1.0], [[(0, 2)], [(0, 2)]], [0, 0], 2) == 0).all()


def test_trace_without_dense_rewards_gets_outcome_term_only():
    rewards = [[1.0, 0.0, 1.0], [], [2.0], [0.0, 0.0]]
    got = adv(episode_rewards=rewards, normalize="separate")
    o = 0.5 / (1 / SQ2 + EPS)
    assert got[1, :5].tolist() == pytest.approx([-o] * 5, abs=1e-12)
    s = math.sqrt(1 / 3) + EPS  # t0's dense statistics use its own three episodes only
    assert got[0, 3].item() == pytest.approx((1 / 3) / s + o, abs=1e-12)


def test_one_episode_mrt_is_grpo_on_the_sum():
    # with one episode per trace, mrt credit is plain GRPO on the scalar r_i + dense_i
    rng = random.Random(0)
    dense = [[rng.uniform(-1, 1)] for _ in range(8)]
    outcomes = [float(rng.random() < 0.5) for _ in range(8)]
    spans = [[(0, rng.randint(1, 5))] for _ in range(8)]
    got = build_advantages(dense, outcomes, spans, [0] * 4 + [1] * 4, 5, normalize="mrt", dtype=torch.float64)
    total = torch.tensor([d[0] + r for d, r in zip(dense, outcomes)], dtype=torch.float64).view(2, 4)
    want = ((total - total.mean(1, keepdim=True)) / (total.std(1, keepdim=True) + EPS)).flatten()
    torch.testing.assert_close(got[:, 0], want, rtol=0, atol=1e-12)


def test_group_order_and_ids_do_not_matter():
    perm = [3, 0, 2, 1]
    base = adv(normalize="separate")
    got = adv(normalize="separate", episode_rewards=[REWARDS[p] for p in perm],
              outcomes=[OUTCOMES[p] for p in perm], token_spans=[SPANS[p] for p in perm],
              group_ids=[["a", "a", "b", "b"][p] for p in perm])
    torch.testing.assert_close(got, base[perm], rtol=0, atol=1e-12)


def _trl_advantages(rewards: list[float], num_generations: int, scale_rewards: str) -> torch.Tensor:
    """TRL 1.16 GRPOTrainer._generate_and_score_completions, sum_then_normalize, one reward function."""
    from trl.trainer.utils import nanstd as trl_nanstd

    rewards_per_func = torch.tensor(rewards, dtype=torch.float32).unsqueeze(1)
    reward_weights = torch.ones(1, dtype=torch.float32)
    unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    r = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
    r[unscorable_mask] = torch.nan
    mean_grouped = torch.nanmean(r.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        if num_generations > 1:
            std = trl_nanstd(r.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
        else:
            std = torch.zeros_like(r)
    else:
        std = trl_nanstd(r).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
    advantages = r - mean_grouped
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("num_generations", [1, 2, 4])
def test_reduces_exactly_to_trl_grpo(scale_rewards, num_generations):
    rng = random.Random(num_generations)
    batch = 12
    outcomes = [rng.choice([0.0, 1.0, rng.random(), rng.uniform(-3, 3)]) for _ in range(batch)]
    outcomes[2] = math.nan  # an unscorable completion
    outcomes[4:4 + num_generations] = [0.3] * num_generations  # a zero-std group
    groups = [i // num_generations for i in range(batch)]
    lengths = [rng.randint(0, 7) for _ in range(batch)]
    T = 8
    want = _trl_advantages(outcomes, num_generations, scale_rewards)
    spans_one = [[(0, n)] for n in lengths]
    spans_many = [[(0, n // 2), (n // 2, n)] for n in lengths]
    cases = [
        ([[] for _ in range(batch)], spans_one, {}),
        ([[] for _ in range(batch)], spans_many, {"gamma": 0.7}),
        ([[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(batch)], spans_many, {"dense_weight": 0.0}),
    ]
    for dense, spans, kw in cases:
        for normalize in ("separate", "mrt"):
            got = build_advantages(dense, outcomes, spans, groups, T, normalize=normalize,
                                   scale_rewards=scale_rewards, **kw)
            for i, n in enumerate(lengths):
                assert torch.equal(got[i, :n], want[i].expand(n)), (normalize, kw, i)
                assert (got[i, n:] == 0).all()


def test_nanstd_matches_trl():
    from trl.trainer.utils import nanstd as trl_nanstd

    x = torch.tensor([[0.1, 0.7, math.nan, 0.3], [1.0, math.nan, math.nan, math.nan], [2.0, 2.0, 2.0, 5.0]])
    torch.testing.assert_close(nanstd(x, dim=1), trl_nanstd(x, dim=1), equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(nanstd(x), trl_nanstd(x), equal_nan=True, rtol=0, atol=0)
    assert torch.isnan(nanstd(x, dim=1)[1])  # one value: undefined


def test_float32_default_and_empty_batch():
    got = build_advantages([], [], [], [], 3)
    assert got.shape == (0, 3) and got.dtype == torch.float32
    assert build_advantages([[1.0]], [1.0], [[(0, 0)]], [0], 0).shape == (1, 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"outcomes": [1.0, 0.0]}, "one entry per trace"),
    ({"token_spans": [[(0, 1), (1, 3), (3, 7)], *SPANS[1:]]}, r"not inside \[0, num_tokens=6\]"),
    ({"token_spans": [[(0, 2), (1, 3), (3, 4)], *SPANS[1:]]}, "must not overlap"),
    ({"token_spans": [[(2, 1), (2, 3), (3, 4)], *SPANS[1:]]}, "start <= end"),
    ({"token_spans": [[(0, 1.5), (2, 3), (3, 4)], *SPANS[1:]]}, "pair of ints"),
    ({"episode_rewards": [[1.0], *REWARDS[1:]]}, "1 episode rewards but 3 token spans"),
    ({"episode_rewards": [[1.0, math.inf, 0.0], *REWARDS[1:]]}, "must be finite"),
    ({"episode_rewards": [[1.0, "x", 0.0], *REWARDS[1:]]}, "not a number"),
    ({"outcomes": [1.0, -math.inf, 0.0, 0.0]}, "outcomes must be finite"),
    ({"normalize": "rloo"}, "normalize='rloo' is not supported; use one of mrt, separate, per_kind, prime, pure"),
    ({"scale_rewards": "std"}, "scale_rewards='std'"),
    ({"baseline": "termination"}, "needs termination_values"),
    ({"termination_values": TERMINATION}, "set baseline='termination'"),
    ({"baseline": "termination", "termination_values": [[0.5], [0.5, 0.0], [0.75], [1.0, 0.5]]},
     "1 termination values but 3 episodes"),
    ({"baseline": "termination", "termination_values": [[0.5, math.nan, 1.0], *TERMINATION[1:]]}, "must be finite"),
    ({"gamma": 1.5}, "must lie in \\[0, 1\\]"),
    ({"eps": 0.0}, "eps=0.0 must be > 0"),
    ({"alpha": math.nan}, "alpha must be a finite number"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adv(**kwargs)


def test_bad_num_tokens_and_group_ids():
    with pytest.raises(ValueError, match="num_tokens must be a non-negative int"):
        build_advantages([[]], [1.0], [[(0, 1)]], [0], -1)
    with pytest.raises(ValueError, match="group_ids has 2 traces"):
        build_advantages([[]], [1.0], [[(0, 1)]], [0, 0], 1)
    with pytest.raises(ValueError, match="not a usable group id"):
        build_advantages([[]], [1.0], [[(0, 1)]], [[0]], 1)


def test_doctests():
    result = doctest.testmod(credit)
    assert result.failed == 0 and result.attempted >= 5


def test_mrt_with_equal_whole_trace_returns_does_not_blow_up():
    """Both traces return 1 in total, so the group std is 0; their episode returns still differ.

    Trace 0: rewards [1, 0] -> G = [1, 0]; trace 1: [0, 1] -> G = [1, 1]; group mean of G_0 is 1.
    The advantages are G - 1 (no division by a zero std), not (G - 1) / 1e-4.
    """
    A = build_advantages([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], [[(0, 1), (1, 2)], [(0, 1), (1, 2)]], [0, 0], 2,
                         normalize="mrt")
    assert A.tolist() == [[0.0, -1.0], [0.0, 0.0]]


def test_per_kind_statistics_and_the_stop_step_by_hand():
    """Dense statistics per episode kind; a stop step never enters them (hand-computed, alpha=0, no scaling)."""
    rewards = [[0.0, 1.0, 0.0], [1.0, 1.0]]
    kinds = [["attempt", "verify", "stop"], ["attempt", "verify"]]
    spans = [[(0, 1), (1, 2), (2, 3)], [(0, 1), (1, 2)]]
    kw = dict(alpha=0.0, scale_rewards="none", episode_kinds=kinds)
    # per kind: attempts {0, 1} -> -0.5, +0.5; verifications {1, 1} -> 0, 0; the stop step -> 0
    per_kind = build_advantages(rewards, [0.0, 1.0], spans, [0, 0], 3, normalize="per_kind", **kw)
    assert per_kind.tolist() == [[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]
    # pooled over the 4 real episodes (mean 0.75): A = [-0.75, 0.25, stop 0], B = [0.25, 0.25]; reward-to-go
    pooled = build_advantages(rewards, [0.0, 1.0], spans, [0, 0], 3, normalize="separate", **kw)
    assert pooled.tolist() == [[-0.5, 0.25, 0.0], [0.5, 0.25, 0.0]]
    # without kinds the stop step would count as an episode with reward 0 (mean 0.6) and penalise stopping
    blind = build_advantages(rewards, [0.0, 1.0], spans, [0, 0], 3, normalize="separate", alpha=0.0,
                             scale_rewards="none")
    assert blind[0].tolist() == pytest.approx([-0.8, -0.2, -0.6])


def test_per_kind_needs_kinds_that_match_the_spans():
    with pytest.raises(ValueError, match="per_kind"):
        build_advantages([[1.0]], [1.0], [[(0, 1)]], [0], 1, normalize="per_kind")
    with pytest.raises(ValueError, match="one kind per token span"):
        build_advantages([[1.0]], [1.0], [[(0, 1)]], [0], 1, episode_kinds=[["attempt", "verify"]])


def test_lone_scorable_group_gets_zero_with_group_scaling():
    """Fewer than two scorable traces in a group: the group std is undefined, so every normalised advantage of
    that group is 0 (mrt and termination alike), never the raw, undivided numerator."""
    lone = dict(episode_rewards=[[], []], outcomes=[1.0, None], token_spans=[[(0, 2)], [(0, 2)]], group_ids=[0, 0],
                num_tokens=3)
    got = build_advantages(**lone, baseline="termination", termination_values=[[0.25], [0.5]])
    assert got.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # was 0.75 = 1 - 0.25 on the first row
    # mrt: with dense rewards the later episodes of the lone trace differ from its own G_0
    got = build_advantages([[1.0, 0.0], []], [1.0, None], [[(0, 1), (1, 2)], [(0, 2)]], [0, 0], 2,
                           normalize="mrt")
    assert got.tolist() == [[0.0, 0.0], [0.0, 0.0]]  # was [0, -1]: G - mean G_0, undivided
    # a lone trace beside a normal group: the normal group is divided by its std, the lone group gets 0
    rewards, outcomes = [[1.0], [0.0], [0.0], [2.0]], [1.0, 0.0, 1.0, None]
    spans, groups = [[(0, 1)], [(0, 1)], [(0, 1)], [(0, 1)]], [0, 0, 1, 1]
    values = [[0.5], [0.25], [0.25], [0.0]]
    got = build_advantages(rewards, outcomes, spans, groups, 1, baseline="termination",
                           termination_values=values, dtype=torch.float64)
    s = 2.0 / SQ2 + EPS  # std of G = {2, 0}
    assert got[:, 0].tolist() == pytest.approx([1.5 / s, -0.25 / s, 0.0, 0.0], abs=1e-12)
    got = build_advantages(rewards, outcomes, spans, groups, 1, normalize="mrt", dtype=torch.float64)
    assert got[:, 0].tolist() == pytest.approx([1.0 / s, -1.0 / s, 0.0, 0.0], abs=1e-12)
    # batch scaling over a batch of one scorable trace: undefined as well
    got = build_advantages([[1.0, 0.0]], [1.0], [[(0, 1), (1, 2)]], [0], 2, normalize="mrt", scale_rewards="batch")
    assert got.tolist() == [[0.0, 0.0]]
    # the statistic "none" uses (the mean) is defined for one trace: G - G_0 is kept, as documented
    got = build_advantages([[1.0, 0.0], []], [1.0, None], [[(0, 1), (1, 2)], [(0, 2)]], [0, 0], 2,
                           normalize="mrt", scale_rewards="none")
    assert got.tolist() == [[0.0, -1.0], [0.0, 0.0]]


# ---------------------------------------------------------------- min-form credit (PURE)
# The fixture with credit="min" (gamma 1): raw min returns t0 [0, 0, 1], t1 [0, 1], t2 [2], t3 [0, 0].
KINDS = [["attempt", "verify", "attempt"], ["attempt", "verify"], ["attempt"], ["attempt", "verify"]]


def test_min_credit_mrt_hand_computed():
    # G = M + r: t0 [1, 1, 2], t1 [0, 1], t2 [3], t3 [1, 1]; group means of G_0: 0.5 and 2.
    base = [[0.5, 0.5, 1.5], [-0.5, 0.5], [1.0], [-1.0, -1.0]]
    got = adv(normalize="mrt", scale_rewards="none", gamma=1.0, credit="min")
    torch.testing.assert_close(got, tokens(base), rtol=0, atol=1e-12)
    s0, s1 = 1 / SQ2 + EPS, SQ2 + EPS  # Bessel std of G_0 = {1, 0} and {3, 1}
    got = adv(normalize="mrt", scale_rewards="group", gamma=1.0, credit="min")
    want = tokens([[a / s for a in row] for row, s in zip(base, [s0, s0, s1, s1])])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_min_credit_separate_takes_the_min_over_raw_rewards_then_the_baseline():
    # raw min returns (gamma 1): t0 [0, 0, 1], t1 [0, 1], t2 [2], t3 [0, 0]; the dense stream is centred on
    # the group mean of the whole-trace min R_0: group 0 {0, 0} -> 0, group 1 {2, 0} -> 1; outcome +-.5 and 0.
    got = adv(normalize="separate", scale_rewards="none", gamma=1.0, credit="min")
    want = tokens([[0.5, 0.5, 1.5], [-0.5, 0.5], [1.0], [-1.0, -1.0]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # group std: group 0's R_0 are equal (std 0: divided by 1), group 1's Bessel std is sqrt 2
    s1, o = SQ2 + EPS, 0.5 / (1 / SQ2 + EPS)
    got = adv(normalize="separate", scale_rewards="group", gamma=1.0, credit="min", alpha=2.0, dense_weight=0.5)
    want = tokens([[2 * o, 2 * o, 0.5 + 2 * o], [-2 * o, 0.5 - 2 * o], [0.5 / s1], [-0.5 / s1, -0.5 / s1]])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_min_credit_refuses_per_kind_and_prime():
    with pytest.raises(ValueError, match="credit='min' does not combine with normalize='per_kind'"):
        adv(normalize="per_kind", gamma=1.0, credit="min", episode_kinds=KINDS)
    with pytest.raises(ValueError, match="PRIME defines no min-form"):
        adv(normalize="prime", gamma=1.0, credit="min")


def test_min_credit_termination_baselines_hand_computed():
    # per episode: A = G - b, G as in the mrt min test
    base = [[0.5, 0.75, 1.0], [-0.5, 1.0], [2.25], [0.0, 0.5]]
    got = adv(baseline="termination", termination_values=TERMINATION, scale_rewards="none", gamma=1.0, credit="min")
    torch.testing.assert_close(got, tokens(base), rtol=0, atol=1e-12)
    s0, s1 = 1 / SQ2 + EPS, SQ2 + EPS
    got = adv(baseline="termination", termination_values=TERMINATION, gamma=1.0, credit="min")
    torch.testing.assert_close(got, tokens([[a / s for a in row] for row, s in zip(base, [s0, s0, s1, s1])]),
                               rtol=0, atol=1e-12)
    # per sequence (MRT's README): G_0 - b_0 = 1 - .5, 0 - .5, 3 - .75, 1 - 1 on every token
    got = adv(baseline="mrt_termination", termination_values=TERMINATION, gamma=1.0, credit="min")
    torch.testing.assert_close(got, tokens([[0.5] * 3, [-0.5] * 2, [2.25], [0.0] * 2]), rtol=0, atol=1e-12)


def test_min_credit_leaves_the_stop_step_out_of_the_min():
    """The stop step's reward 0 must not cap the positive rewards before it; its own dense return is 0."""
    rewards, kinds = [[1.0, 2.0, 0.0], [3.0, 0.0]], [["attempt", "attempt", "stop"], ["attempt", "stop"]]
    spans = [[(0, 1), (1, 2), (2, 3)], [(0, 1), (1, 2)]]
    # M_A = [1, 2, 0], M_B = [3, 0]; G = M + r: A [2, 3, 1], B [3, 0]; mean of G_0 = 2.5
    got = build_advantages(rewards, [1.0, 0.0], spans, [0, 0], 3, normalize="mrt", scale_rewards="none",
                           credit="min", episode_kinds=kinds)
    assert got.tolist() == [[-0.5, 0.5, -1.5], [0.5, -2.5, 0.0]]
    # separate: the stop steps are out of the min; the baseline (mean of R_0 = {1, 3}: 2) is subtracted after
    # it from every span, the stop step's return 0 included
    got = build_advantages(rewards, [1.0, 0.0], spans, [0, 0], 3, normalize="separate", scale_rewards="none",
                           credit="min", episode_kinds=kinds, alpha=0.0)
    assert got.tolist() == [[-1.0, 0.0, -2.0], [1.0, -2.0, 0.0]]
    # without kinds the 0 counts as an episode reward and is everyone's minimum
    blind = build_advantages(rewards, [1.0, 0.0], spans, [0, 0], 3, normalize="mrt", scale_rewards="none",
                             credit="min")
    assert blind.tolist() == [[0.5, 0.5, 0.5], [-0.5, -0.5, 0.0]]


def test_min_credit_without_dense_rewards_is_grpo_and_sum_is_the_default():
    for normalize in ("separate", "mrt"):
        for scale in ("group", "batch", "none"):
            no_dense = dict(episode_rewards=[[], [], [], []], normalize=normalize, scale_rewards=scale, gamma=1.0)
            assert torch.equal(adv(credit="min", **no_dense), adv(**no_dense))
            assert torch.equal(adv(normalize=normalize, scale_rewards=scale, credit="sum"),
                               adv(normalize=normalize, scale_rewards=scale))
    assert torch.equal(adv(baseline="termination", termination_values=TERMINATION, credit="sum"),
                       adv(baseline="termination", termination_values=TERMINATION))
    # a trace without dense rewards has dense return 0 under min too
    rewards = [[1.0, 0.0, 1.0], [], [2.0], [0.0, 0.0]]
    got = adv(episode_rewards=rewards, normalize="mrt", scale_rewards="none", gamma=1.0, credit="min")
    assert got[1, 0].item() == pytest.approx(0.0 - 0.5)  # G_1 = 0 + 0, group mean of G_0 = (1 + 0) / 2


def test_episode_returns_min():
    assert episode_returns([3.0, -1.0, 2.0, 0.5], credit="min") == [-1.0, -1.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="takes no discount"):
        episode_returns([1.0], gamma=0.5, credit="min")


# ---------------------------------------------------------------- MRT's termination baseline, per sequence


def test_mrt_termination_baseline_hand_computed():
    # README: adv = R - R_termination per sequence; R = w_d R_0 + alpha r, b = termination_values[i][0].
    # sum form (gamma .5) G_0: t0 2.25, t1 .5, t2 3, t3 1; b_0: .5, .5, .75, 1.
    want = tokens([[1.75] * 3, [0.0] * 2, [2.25], [0.0] * 2])
    for scale in ("group", "batch", "none"):  # no std scaling: scale_rewards and normalize are not used
        got = adv(baseline="mrt_termination", termination_values=TERMINATION, scale_rewards=scale)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(adv(baseline="mrt_termination", termination_values=TERMINATION, normalize="mrt"),
                               want, rtol=0, atol=1e-12)
    # outcome only (MRT's own setting, conf/objective/termination.yaml: dense []), alpha 2: 2 r - b_0
    got = adv(episode_rewards=[[], [], [], []], baseline="mrt_termination", termination_values=TERMINATION, alpha=2.0)
    torch.testing.assert_close(got, tokens([[1.5] * 3, [-0.5] * 2, [1.25], [1.0] * 2]), rtol=0, atol=1e-12)
    # today's per-episode variant is a different thing on the same input
    assert not torch.allclose(adv(baseline="termination", termination_values=TERMINATION), want)
    # a lone scorable trace still gets R - b (no statistic is involved); an unscorable one 0
    got = build_advantages([[], []], [1.0, None], [[(0, 2)], [(0, 2)]], [0, 0], 3, baseline="mrt_termination",
                           termination_values=[[0.25], [0.5]])
    assert got.tolist() == [[0.75, 0.75, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("kwargs, match", [
    ({"credit": "max"}, "credit='max' is not supported; use one of sum, min"),
    ({"credit": "min", "gamma": 0.5}, "credit='min' takes no discount"),
    ({"baseline": "mrt_termination"}, "baseline='mrt_termination' needs termination_values"),
    ({"baseline": "minimum"}, "use one of group, termination, mrt_termination"),
])
def test_bad_credit_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adv(**kwargs)


def test_objective_delegates_to_the_credit_check():
    from metarl.registry import ConfigError
    from metarl.scoring import Objective

    assert Objective(credit="min").credit == "min" and Objective().credit == "sum"
    assert Objective(baseline="mrt_termination").termination_baseline and not Objective().termination_baseline
    with pytest.raises(ConfigError, match=r"objective\.credit='min' takes no discount: objective\.gamma=0\.9"):
        Objective(credit="min", gamma=0.9)
    with pytest.raises(ConfigError, match=r"objective\.credit='max' is not supported; use one of sum, min"):
        Objective(credit="max")
    with pytest.raises(ConfigError, match=r"objective\.baseline='x' is not supported"):
        Objective(baseline="x")


# ---------------------------------------------------------------- MRT's credit: the telescoped form


def test_mrt_is_the_telescoped_progress_plus_alpha_outcome():
    """Progress rewards dJ_j = J_j - J_(j-1): tokens of episode j get alpha r + w (J_last - J_(j-1)), then one group
    normalisation with the statistics of the whole-trace return alpha r + w (J_last - J_(-1))."""
    J = [[0.2, 0.5, 0.4, 0.9], [0.2, 0.1, 0.3]]  # J_(-1), then J after every episode
    outcomes, alpha, w = [1.0, 0.0], 1.0, 0.5
    rewards = [[b - a for a, b in zip(js, js[1:])] for js in J]  # [.3, -.1, .5] and [-.1, .2]
    spans = [[(0, 1), (1, 3), (3, 4)], [(0, 2), (2, 4)]]
    kw = dict(alpha=alpha, dense_weight=w, gamma=1.0, normalize="mrt", dtype=torch.float64)
    # before normalisation (G itself): J_last - J_(j-1) = [.7, .4, .5] and [.1, .2]
    G = [[alpha * outcomes[i] + w * (js[-1] - js[j]) for j in range(len(js) - 1)] for i, js in enumerate(J)]
    assert G[0] == pytest.approx([1.35, 1.2, 1.25]) and G[1] == pytest.approx([0.05, 0.1])
    # the group mean of G_0 is (1.35 + .05) / 2 = .7; "none" only subtracts it
    got = build_advantages(rewards, outcomes, spans, [0, 0], 4, scale_rewards="none", **kw)
    want = torch.tensor([[0.65, 0.5, 0.5, 0.55], [-0.65, -0.65, -0.6, -0.6]], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # "group" divides by the Bessel std of {1.35, .05}: 1.3 / sqrt 2
    got = build_advantages(rewards, outcomes, spans, [0, 0], 4, scale_rewards="group", **kw)
    torch.testing.assert_close(got, want / (1.3 / SQ2 + EPS), rtol=0, atol=1e-12)
    # the same traces with J shifted by a constant per trace (J_(-1) differs) give the same progress
    # rewards and so the same credit: only differences of J enter
    shifted = [[j + 0.05 for j in js] for js in J]
    same = [[b - a for a, b in zip(js, js[1:])] for js in shifted]
    torch.testing.assert_close(build_advantages(same, outcomes, spans, [0, 0], 4, **kw),
                               build_advantages(rewards, outcomes, spans, [0, 0], 4, **kw), rtol=0, atol=1e-12)


def test_joint_is_an_alias_of_mrt():
    for scale in ("group", "batch", "none"):
        assert torch.equal(adv(normalize="joint", scale_rewards=scale), adv(normalize="mrt", scale_rewards=scale))
    assert torch.equal(adv(normalize="joint", gamma=1.0, credit="min"), adv(normalize="mrt", gamma=1.0, credit="min"))


def test_separate_z_scores_break_telescoping():
    """Equal progress (J from .2 to .6), one trace in two steps, one in four: MRT credits the first episode of both
    the same; separate adds the (n - j) * mean / std term, so the longer trace's first episode gets more."""
    rewards = [[0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]
    spans = [[(0, 1), (1, 2)], [(0, 1), (1, 2), (2, 3), (3, 4)]]
    mrt = build_advantages(rewards, [0.0, 0.0], spans, [0, 0], 4, normalize="mrt", scale_rewards="none",
                           dtype=torch.float64)
    assert mrt[0, 0].item() == pytest.approx(mrt[1, 0].item())  # both 0: equal whole-trace returns
    sep = build_advantages(rewards, [0.0, 0.0], spans, [0, 0], 4, normalize="separate", scale_rewards="none",
                           dtype=torch.float64)
    # episodes {.2, .2, .1, .1, .1, .1}: mean 2/15; r_hat .2 - 2/15 = 1/15 and .1 - 2/15 = -1/30
    assert sep[0, 0].item() == pytest.approx(2 / 15) and sep[1, 0].item() == pytest.approx(-4 / 30)


# ---------------------------------------------------------------- PRIME


def prime_whiten(values: list[float]) -> list[float]:
    """PRIME's masked_whiten over a flat list of tokens: (x - mean) * rsqrt(Bessel var + 1e-8)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n * n / (n - 1)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


def test_prime_hand_computed():
    # gamma .5, alpha 2, w .5 on the fixture (T = 6). Outcome stream, PRIME's form r n/(n-1) - sum r/(n-1):
    # group 0 r {1, 0}: [2 - 1, 0 - 1] = [1, -1]; group 1 {1, 1}: [0, 0]; times alpha 2: [2, -2, 0, 0].
    # Dense stream: trace means m = [2/3, 1/2 | 2, 0]; group sums 7/6 and 2; n = 2, so q = 2 r - sum m:
    # t0 [2 - 7/6, -7/6, 2 - 7/6] = [5/6, -7/6, 5/6], t1 [-7/6, 5/6]; t2 [4 - 2] = [2], t3 [-2, -2].
    # Reverse sums (gamma .5): t0 [5/6 - 7/12 + 5/24, -7/6 + 5/12, 5/6] = [11/24, -3/4, 5/6];
    # t1 [-7/6 + 5/12, 5/6] = [-3/4, 5/6]; t2 [2]; t3 [-3, -2]. Times w .5, plus the outcome term:
    G = [[2 + 11 / 48, 2 - 3 / 8, 2 + 5 / 12], [-2 - 3 / 8, -2 + 5 / 12], [1.0], [-1.5, -1.0]]
    flat = [g for i, spans in enumerate(SPANS) for (s, e), g in zip(spans, G[i]) for _ in range(e - s)]
    white = iter(prime_whiten(flat))
    want = torch.zeros(4, T, dtype=torch.float64)
    for i, spans in enumerate(SPANS):
        for s, e in spans:
            for t in range(s, e):
                want[i, t] = next(white)
    got = adv(normalize="prime", alpha=2.0, dense_weight=0.5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert abs(got[got != 0].mean().item()) < 1e-12  # whitened over the tokens: mean 0
    # scale_rewards and eps are not used
    assert torch.equal(adv(normalize="prime", scale_rewards="none", eps=0.5), adv(normalize="prime"))


def test_prime_leave_one_out_needs_two_samples():
    # group 1 has one scorable trace: its outcome and dense LOO terms are 0; group 0's survive, then whitening
    outcomes = [1.0, 0.0, 1.0, None]
    got = adv(normalize="prime", outcomes=outcomes, gamma=1.0)
    assert got[3].abs().sum().item() == 0.0
    # outcome [1, -1 | 0]; dense q as in test_prime_hand_computed, summed undiscounted; t2's LOO terms are 0
    G = [[1 + 5 / 6 - 7 / 6 + 5 / 6, 1 - 7 / 6 + 5 / 6, 1 + 5 / 6], [-1 - 7 / 6 + 5 / 6, -1 + 5 / 6], [0.0]]
    flat = [g for i, spans in enumerate(SPANS[:3]) for (s, e), g in zip(spans, G[i]) for _ in range(e - s)]
    got_flat = [got[i, t].item() for i, spans in enumerate(SPANS[:3]) for s, e in spans for t in range(s, e)]
    assert got_flat == pytest.approx(prime_whiten(flat), abs=1e-6)


# ---------------------------------------------------------------- PURE


def test_pure_hand_computed():
    # credit min (gamma 1) on the fixture: raw R t0 [0, 0, 1], t1 [0, 1], t2 [2], t3 [0, 0]; steps 3, 2, 1, 2;
    # R_0 / steps: [0, 0 | 2, 0]; b (the other sample's): [0, 0 | 0, 2]; c_ij: t0 [3, 2, 1], t1 [2, 1], t2 [1],
    # t3 [2, 1]. D = R - c b: t0 [0, 0, 1], t1 [0, 1], t2 [2], t3 [-4, -2].
    # Outcome RLOO: group 0 [1, -1], group 1 [0, 0].
    G = [[1.0, 1.0, 2.0], [-1.0, 0.0], [2.0], [-4.0, -2.0]]
    flat = [g for i, spans in enumerate(SPANS) for (s, e), g in zip(spans, G[i]) for _ in range(e - s)]
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((g - mean) ** 2 for g in flat) / len(flat))  # population variance, as PURE
    got = adv(normalize="pure", gamma=1.0, credit="min")
    torch.testing.assert_close(got, tokens([[(g - mean) / std for g in row] for row in G]), rtol=0, atol=1e-12)
    # sum form with PURE's baselines: R = reward-to-go t0 [2, 1, 1], t1 [1, 1], t2 [2], t3 [0, 0];
    # R_0 / steps [2/3, 1/2 | 2, 0]; b [1/2, 2/3 | 0, 2]; D t0 [2 - 1.5, 1 - 1, 1 - .5], t1 [1 - 4/3, 1 - 2/3]
    G = [[1.5, 1.0, 1.5], [-1 - 1 / 3, -1 + 1 / 3], [2.0], [-4.0, -2.0]]
    flat = [g for i, spans in enumerate(SPANS) for (s, e), g in zip(spans, G[i]) for _ in range(e - s)]
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((g - mean) ** 2 for g in flat) / len(flat))
    got = adv(normalize="pure", gamma=1.0)
    torch.testing.assert_close(got, tokens([[(g - mean) / std for g in row] for row in G]), rtol=0, atol=1e-12)


def test_pure_min_is_over_raw_rewards():
    """A trace whose worst step is bad stays bad however the other episodes of the group look: the min is taken
    before any statistic (a min over z-scores would depend on the group's other rewards)."""
    spans = [[(0, 1), (1, 2)], [(0, 1), (1, 2)]]
    a = build_advantages([[-0.5, 1.0], [0.5, 0.5]], [0.0, 0.0], spans, [0, 0], 2, normalize="pure", credit="min",
                         dtype=torch.float64)
    # R: [-.5, 1] and [.5, .5]; per step -.25 and .25; b = [.25, -.25]; c [2, 1];
    # D: [-.5 - .5, 1 - .25] = [-1, .75] and [.5 + .5, .5 + .25] = [1, .75]; outcome 0
    flat = [-1.0, 0.75, 1.0, 0.75]
    mean = sum(flat) / 4
    std = math.sqrt(sum((g - mean) ** 2 for g in flat) / 4)
    assert a.flatten().tolist() == pytest.approx([(g - mean) / std for g in flat], abs=1e-12)


def test_pure_and_prime_options_are_checked():
    with pytest.raises(ValueError, match="normalize='pure' takes no discount"):
        adv(normalize="pure", gamma=0.5)
    from metarl.registry import ConfigError
    from metarl.scoring import Objective

    assert Objective(normalize="prime").normalize == "prime" and Objective(normalize="joint").normalize == "joint"
    with pytest.raises(ConfigError, match=r"objective\.credit='min' does not combine with objective\.normalize="):
        Objective(normalize="per_kind", credit="min")
