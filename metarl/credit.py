r"""Per-token credit assignment: dense episode rewards -> a (B, T) advantage tensor.

TRL's GRPO gives every token of completion i one scalar advantage. With dense per-episode
rewards the tokens of episode j should instead be credited with what happens *from episode j
on*. :func:`build_advantages` is a pure function from rewards to the (B, T) tensor that the
trainer hands to TRL's loss in place of its (B,) advantages.

Notation: trace i (a sample of prompt group g = g(i)) has episodes j = 0..n_i−1 with dense
rewards r̃_ij (already the weighted sum of the episode estimators), token spans
[s_ij, e_ij) into the completion tokens, and an outcome-stream reward r_i (r(x, y) or an LCPO
reward). The episode reward-to-go is

    R_ij = Σ_{k≥j} γ^{k−j} r̃_ik            (R_i0 is the whole-trace dense return).

Every token t ∈ [s_ij, e_ij) gets A_ij; tokens outside every span (padding) get 0.

``normalize`` picks the credit of the group baseline (``baseline="group"``); every mode is a named
source's credit or says what it departs from.

``normalize="mrt"`` (the default of Obj-2's recipes; ``"joint"`` is a documented alias of the same code
path, kept for configs written before the name): MRT's credit (arXiv 2503.07572, §5: the reward is the 0/1
outcome plus α × the progress bonus, trained with GRPO's group normalisation; CMU-AIRe/MRT releases only
the termination baseline, ``train/rl/README.md``, below). One stream, one group normalisation of the
combined return with the statistics of the whole-trace return::

    G_ij = w_d · R_ij + α · r_i
    A_ij = (G_ij − mean_g G_·0) / (std_g G_·0 + eps)

With progress rewards r̃_ij = J_ij − J_i(j−1) (Monte Carlo or likelihood progress, raw, unnormalised)
and γ = 1 the sum telescopes: R_ij = J_i,last − J_i(j−1), so the tokens of episode j get
α·r_i + w_d·(J_last − J_{j−1}) before the normalisation, and the whole-trace return is
α·r_i + w_d·(J_last − J_{−1}). What is credited is how far episode j's start is from where the trace
ends: a step that raises J is credited for every later step that keeps it.

    >>> A = build_advantages([[0.25, 0.5], [0.0, -0.25]], [1.0, 0.0], [[(0, 1), (1, 2)], [(0, 1), (1, 2)]],
    ...                      [0, 0], 2, normalize="mrt", scale_rewards="none", alpha=1.0)
    >>> A.tolist()   # G: [1 + .75, 1 + .5] and [0 - .25, 0 - .25]; mean of G_0 = (1.75 - .25) / 2 = .75
    [[1.0, 0.75], [-1.0, -1.0]]

``normalize="separate"`` (each stream normalised on its own: GRPO's z-score applied to the dense rewards
and to the outcome apart; not a source's credit)::

    A_out_i = (r_i − mean_g r) / (std_g r + eps)
    r̂_ij    = (r̃_ij − mean_g r̃) / (std_g r̃ + eps)     (statistics over all episodes of the group)
    A_ij    = w_d · Σ_{k≥j} γ^{k−j} r̂_ik + α · A_out_i

What it does to telescoping: z-scoring each episode reward *before* the sum gives
Σ_{k≥j} r̂_ik = (J_last − J_{j−1})/s − (n_i − j)·m/s (γ = 1, m and s the group's episode mean and std),
so the return carries a term that depends only on how many episodes are left; and in a group where
every sample failed (A_out = 0) a Monte Carlo blip of ±0.25 among zero progress rewards becomes an
advantage of about ±3σ. Kept for comparison with the runs that used it.

    >>> A = build_advantages([[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0], [[(0, 1), (1, 2)], [(0, 1), (1, 2)]],
    ...                      [0, 0], 2, normalize="separate", scale_rewards="none")
    >>> A.tolist()   # r̂ = r̃ − .5: [.5, −.5] and [−.5, .5]; reward-to-go [0, −.5], [0, .5]; A_out ±.5
    [[0.5, 0.0], [-0.5, 0.0]]

``normalize="per_kind"``: as ``separate``, but the dense statistics are taken per episode kind
(attempts among the group's attempts, verifications among its verifications, ...; needs
``episode_kinds``). Pooled statistics mix reward scales: on the built-in task verifications are
mostly right and attempts mostly wrong, so pooling makes every attempt look bad. Per kind, each
episode is compared with episodes of its own kind, and one more episode of a kind adds a
zero-mean term: the number of episodes is not rewarded for itself. (The means are per kind with any
``scale_rewards``; ``"batch"`` divides by one batch std over all kinds, ``"group"`` by the std of the
group's episodes of that kind.) This is Obj-1's credit (docs/method.md §3: attempt rewards 1[answer correct],
verify rewards 1[verdict right]). Those rewards are not a progress and do not telescope: the sum from
episode j counts the correct attempts and the correct verdicts from j on, each centred on its kind's
group mean, so a further episode is credited with how much better than its kind's average it was.

    >>> A = build_advantages([[1.0, 1.0], [0.0, 0.0]], [1.0, 0.0], [[(0, 1), (1, 2)], [(0, 1), (1, 2)]],
    ...                      [0, 0], 2, normalize="per_kind", scale_rewards="none",
    ...                      episode_kinds=[["attempt", "verify"], ["attempt", "verify"]])
    >>> A.tolist()   # attempts {1, 0} and verdicts {1, 0} each centred: r̂ = ±.5; rtg [1, .5]; A_out ±.5
    [[1.5, 1.0], [-1.5, -1.0]]

``normalize="prime"``: PRIME's credit (arXiv 2502.01456; PRIME-RL/PRIME,
``training/verl/trainer/ppo/core_algos.py``, ``compute_rloo_returns``, and ``masked_whiten`` in
``training/verl/utils/torch_functional.py``). Each reward stream gets its own leave-one-out baseline,
then its (discounted) reverse cumulative sum; the streams are added, and the sum is whitened over all
tokens of the batch::

    m_i       = mean_j r̃_ij                               (trace i's mean reward over its rewarded episodes)
    q_ij      = w_d · (r̃_ij · n_g/(n_g − 1) − Σ_{i'∈g} m_i' /(n_g − 1))
    o_i       = α · (r_i · n_g/(n_g − 1) − Σ_{i'∈g} r_i' /(n_g − 1))    (= r_i − mean_{i'≠i} r_i')
    G_ij      = Σ_{k≥j} γ^{k−j} q_ik + o_i
    A_itok    = (G_itok − mean_tok G) / sqrt(var_tok G + 1e-8)    (over every token of the batch, Bessel var)

n_g counts the group's scorable traces (with dense rewards, for the dense stream). PRIME writes the
baseline as the sum of *all* the group's trace means over n − 1 after scaling the reward by n/(n − 1):
for one reward per trace (the outcome) that is exactly the leave-one-out mean; for several, a reward
is compared with the other traces' means plus its own trace's mean less itself. Followed exactly. PRIME's
process rewards are per token (its implicit PRM); here they are per episode, and the outcome stream (on
the last token in PRIME, ``verifier_gamma`` = 1 in its ``run_prime_main.sh``) reaches every token
undiscounted; γ discounts the dense stream per episode (PRIME's ``reward_model_gamma``). PRIME has no
min-form (``credit="min"`` is refused). ``scale_rewards`` and ``eps`` are not used.

    >>> A = build_advantages([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], [1.0, 0.0, 1.0],
    ...                      [[(0, 1), (1, 2)]] * 3, [0, 0, 0], 2, normalize="prime")
    >>> [round(v, 4) for v in A.flatten().tolist()]
    [0.3597, -0.0719, -1.3669, -0.9353, 1.2231, 0.7914]

By hand (n = 3): o = 1.5·r − 2/2 = [.5, −1, .5]; m = [.5, 0, 1], Σm = 1.5, q = 1.5·r̃ − .75:
[.75, −.75], [−.75, −.75], [.75, .75]; reverse sums [0, −.75], [−1.5, −.75], [1.5, .75]; G = [.5, −.25],
[−2.5, −1.75], [2, 1.25] (one token each): mean −.125, Bessel var 15.09375/5, so .625/1.7375 = .3597, ...

``normalize="pure"``: PURE's credit (arXiv 2504.15275; CJReinforce/PURE,
``openrlhf/trainer/ppo_utils/experience_maker.py``: ``NaiveExperienceMaker.process_experiences`` for
the baselines, ``make_experience_list`` for the return, and ``ReplayBuffer.normalize`` in
``openrlhf/trainer/ppo_utils/replay_buffer.py`` for the whitening). The return is taken over the *raw*
episode rewards (PURE's process rewards are bounded, P(+) − P(−) ∈ [−1, 1]); each stream then gets its
leave-one-out (RLOO) baseline, the verifiable reward placed on the last token, and the advantage is the
reverse cumulative sum of the per-step rewards, whitened over the batch::

    R_ij   = min_{k≥j} r̃_ik  (credit="min", PURE's min-form)  or  Σ_{k≥j} r̃_ik  (credit="sum")
    b_i    = mean_{i'∈g, i'≠i} R_i'0 / n_i'                 (``reward_baseline="step"``: the others'
                                                              average process reward per step)
    D_ij   = w_d · (R_ij − c_ij · b_i)                       (c_ij: rewarded episodes of trace i from j on;
                                                              b is subtracted at every step, then summed)
    o_i    = α · (r_i − mean_{i'∈g, i'≠i} r_i')             (PURE: ``solved − 1``, RLOO; the shift cancels)
    A_itok = (D_ij + o_i − mean_tok) / sqrt(max(var_tok, 1e-8))   (over every token of the batch,
                                                                    population variance)

The min is over the raw rewards and the baseline is subtracted afterwards, so a trace's credit is its
worst step compared with what the other samples' worst steps were worth per step; outcome and process
streams are baselined apart and added before the one whitening. PURE needs γ = 1 (its return is an
undiscounted reverse cumulative sum); ``scale_rewards`` and ``eps`` are not used. Departures, each
named: PURE's default ``reward_baseline`` is ``"step"`` (``openrlhf/cli/train_pure_ray.py``; its
``examples/scripts/train_pure.sh`` uses ``"token"``, per-token average reward × step length, which is not
implemented); PURE approximates the min with softmax(−r/T) weights (see below) where here it is exact;
and PURE zeroes the advantage of its step-separator tokens and leaves them out of the whitening count,
which metarl's episodes (spans of text, no separator token) do not have.

    >>> A = build_advantages([[0.5, -0.5], [1.0, 1.0]], [0.0, 1.0], [[(0, 1), (1, 2)]] * 2, [0, 0], 2,
    ...                      normalize="pure", credit="min")
    >>> [round(v, 4) for v in A.flatten().tolist()]
    [-1.1041, -0.8887, 1.0502, 0.9425]

By hand: R = [−.5, −.5] and [1, 1]; per step R_·0/2 = −.25 and .5, so b = [.5, −.25]; c = [2, 1];
D = [−.5 − 1, −.5 − .5] = [−1.5, −1] and [1 + .5, 1 + .25] = [1.5, 1.25]; o = [−1, 1]; sum [−2.5, −2],
[2.5, 2.25]: mean .0625, population var 21.546875/4, so −2.5625/2.3209 = −1.1041, ...

``baseline="termination"`` (MRT's RL variant, A = R − R_termination; ``normalize`` is not
used)::

    A_ij = (w_d · R_ij + α · r_i − b_ij) / (std_g (w_d · R_·0 + α · r) + eps)

with b_ij = ``termination_values[i][j]``, the success probability of forcing an answer at the
*start* of episode j (J_{j−1}; J_{−1} for j = 0). No group mean is subtracted: the
termination value is the baseline. Pass b on the scale of the returns (e.g. α·J when the
outcome weight is α).

``baseline="mrt_termination"``: the termination baseline exactly as MRT's RL README states it
(CMU-AIRe/MRT, ``train/rl/README.md``: "we replace the group-based baseline with a termination
reward baseline: A(s, a) = R(s, a) - R_termination, where R_termination is the reward assigned to
the termination action. This allows the model to optimize relative to a stable, per-sequence
baseline rather than cross-rollout averages"; in code ``adv = rewards - termination_rewards`` in
place of ``adv = rewards - rewards.mean()``)::

    A_ij = w_d · R_i0 + α · r_i − b_i0            (the same for every token of trace i)

One advantage per sequence, no group mean and no std: R is the whole rollout's reward and
b_i0 = ``termination_values[i][0]`` the reward of terminating at the rollout's start (J_{−1}: an
answer forced before any episode; the trainer's rollouts start at the prompt). ``normalize`` and
``scale_rewards`` are not used. ``"termination"`` differs in three ways: its baseline is per
episode (b_ij = J_{j−1}), so is its return (R_ij, from episode j on), and it divides by the group
std of the whole-trace returns unless ``scale_rewards="none"``.

``credit="min"`` (PURE, arXiv 2504.15275, min-form credit): the return of episode j is the
minimum of the future *raw* dense rewards instead of their discounted sum::

    R_ij = min_{k≥j} r̃_ik        (over the rewarded episodes k ≥ j of trace i; 0 if there is none)

always over the raw rewards, before any baseline or normalisation (PURE takes the min over the bounded
process rewards and subtracts its baseline afterwards). How it combines with each mode:

- ``pure``: PURE's own credit above (RLOO baselines after the min, whitening);
- ``mrt`` and the termination baselines: G_ij = w_d · R_ij + α · r_i, then exactly as the sum form;
- ``separate``: the min returns form the dense stream, normalised with the group statistics of the
  whole-trace min R_·0: A_ij = w_d · (R_ij − mean_g R_·0) / (std_g R_·0 + eps) + α · A_out_i (the baseline
  after the min, on every span of the trace, the stop step's return 0 included);
- ``per_kind`` and ``prime`` refuse it (a min over episodes of several kinds has no kind to normalise by;
  PRIME has no min-form).

The outcome term stays its own stream, outside the min: inside it a correct answer would rarely be the
minimum and a wrong one would mask every process reward (PURE adds its verifiable reward the same way,
RLOO-baselined on its own). No discount: γ must be 1 (PURE's value is V(s_t) = min_{t'≥t} r_t',
undiscounted). The stop step (kind :data:`STOP_KIND`) is not in the min: it earns no reward, and its 0
would cap every positive minimum before it at 0; with nothing after it its dense return is 0. A trace
without dense rewards has dense return 0; a NaN episode reward counts as 0 (it is in the min).

PURE's code approximates the min: each step's reward is weighted by softmax(−r/T) over the whole
trace (T = 0.1) and the weighted rewards are summed from each step on, which as T → 0 gives the
trace's minimum at every step up to the worst one and about 0 after it. Here the min is exact and
over k ≥ j for every j, the paper's definition.

Here w_d is ``dense_weight`` and α is ``alpha``. ``scale_rewards`` picks the divisor exactly as
TRL GRPO does: ``"group"`` the std over the group, ``"batch"`` the std over the whole batch
(the mean is always the group mean), ``"none"`` no division (the mean is still subtracted).
Standard deviations are TRL's ``nanstd``: Bessel-corrected, and undefined (NaN) over fewer
than two values. A normalised term whose statistic is undefined is 0, as in TRL (for a centred
stream it is 0 anyway), in every mode: a quotient by an undefined std is 0, never its undivided
numerator. In ``separate`` / ``per_kind`` mode this holds per stream (and in ``prime`` / ``pure``,
whose leave-one-out baseline is undefined for a group with one scorable trace: that stream is 0), and the dense statistics are
over episodes, so a group with one scorable trace of several episodes still gets its dense credit;
in ``mrt`` / ``termination`` mode with ``scale_rewards="group"`` such a group gets advantage 0
throughout, beside groups that are divided by their std as usual (and with ``"batch"`` a batch
with one scorable trace gets 0). ``"none"`` uses only the mean, defined for one trace: use it (or
``"batch"``) for single samples.

With no dense rewards (every ``episode_rewards[i]`` empty, or ``dense_weight == 0``) and
``alpha == 1``, ``mrt``, ``separate`` and ``per_kind`` give every token of trace i exactly TRL 1.16's
GRPO advantage for rewards = outcomes (``multi_objective_aggregation="sum_then_normalize"``). ``prime``
and ``pure`` give their sources' RLOO advantage, whitened over the batch's tokens, not GRPO's.

**The stop step.** An episode's reward is earned by its text; the end-of-sequence token after the
last episode is a separate decision (stop here, or start another episode), made once that reward
is already fixed. :func:`split_stop_tokens` gives those trailing tokens their own step with dense
reward 0, so stopping is credited with what follows it (the outcome term), exactly as starting
another episode is. Left inside the last episode, EOS would also collect that episode's reward,
which the competing action (the first token of a new episode) does not: a bias towards stopping
that grows with the dense rewards (with Obj-1 rewards the built-in task's policy learned to stop
after one verification). With dense rewards off and the group baseline every token of a trace has
the same advantage, so the split changes nothing there; with the termination baseline the stop step
is compared with J after the last episode (the value of stopping there), as a further episode would be.
The answer region of an R1-style trace (after ``</think>``, never an episode) is given the same kind of
step by the trainer: no dense reward, credited with the outcome term.

Missing values:

- a NaN episode reward counts as 0;
- a trace whose outcome is NaN (or None) is *unscorable*: it is left out of every group
  statistic and all its tokens get advantage 0 (TRL does this for completions no reward
  function could score);
- an empty ``episode_rewards[i]`` means trace i has no dense rewards: its dense stream is 0
  and it is left out of the dense statistics; its spans still receive the outcome term.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence

import torch

#: Credit of the group baseline: MRT's, PRIME's, PURE's, or a stream-wise z-score (``separate`` / ``per_kind``).
NORMALIZE_MODES = ("mrt", "separate", "per_kind", "prime", "pure")
#: Old names accepted for a mode: ``joint`` is ``mrt`` (the same code path).
NORMALIZE_ALIASES = {"joint": "mrt"}
#: Episode kind of the stop step (:func:`split_stop_tokens`): never part of a dense-reward statistic.
STOP_KIND = "stop"
SCALE_MODES = ("group", "batch", "none")
BASELINES = ("group", "termination", "mrt_termination")
#: Baselines that need ``termination_values`` (J_{j-1} at the start of every episode).
TERMINATION_BASELINES = ("termination", "mrt_termination")
#: Episode returns: ``sum`` Σ_{k≥j} γ^{k−j} r̃_k (reward-to-go) or ``min`` min_{k≥j} r̃_k (PURE).
CREDIT_FORMS = ("sum", "min")

__all__ = ["build_advantages", "check_options", "episode_returns", "spans_to_token_index", "nanstd",
           "split_stop_tokens",
           "stop_token_ids", "trailing_stop_tokens"]


def episode_returns(rewards: Sequence[float], gamma: float = 1.0, credit: str = "sum") -> list[float]:
    """Episode returns of one trace: R_j = Σ_{k≥j} γ^{k−j} r_k (``credit="sum"``) or min_{k≥j} r_k (``"min"``).

    >>> episode_returns([1.0, 0.0, 2.0], gamma=0.5)
    [1.5, 1.0, 2.0]
    >>> episode_returns([1.0, 0.0, 2.0], credit="min")
    [0.0, 0.0, 2.0]
    >>> episode_returns([])
    []
    """
    check_options(credit=credit, gamma=gamma)
    out: list[float] = []
    acc = math.inf if credit == "min" else 0.0
    for r in reversed(rewards):
        acc = min(acc, float(r)) if credit == "min" else float(r) + gamma * acc
        out.append(acc)
    return out[::-1]


def split_stop_tokens(spans: Sequence[tuple[int, int]], token_ids: Sequence[int],
                      stop_ids: set[int] | frozenset[int]) -> list[tuple[int, int]]:
    """``spans`` with the trailing stop tokens (EOS / pad ids in ``stop_ids``) of the last episode split
    off into one extra span: the stop step (see the module docstring). Unchanged when the completion
    does not end with a stop token (e.g. cut at the cap), when the last span does not reach the end of
    ``token_ids``, or when the split would leave the last episode without tokens.

    >>> split_stop_tokens([(0, 3), (3, 7)], [5, 6, 7, 8, 9, 2, 0], {2, 0})
    [(0, 3), (3, 5), (5, 7)]
    >>> split_stop_tokens([(0, 3), (3, 5)], [5, 6, 7, 8, 9], {2})
    [(0, 3), (3, 5)]
    """
    out = [(int(a), int(b)) for a, b in spans]
    if not out or out[-1][1] != len(token_ids):
        return out
    k = trailing_stop_tokens(token_ids, stop_ids)
    start, end = out[-1]
    if k == 0 or end - k <= start:
        return out
    out[-1] = (start, end - k)
    out.append((end - k, end))
    return out


def stop_token_ids(tokenizer: object, model: object = None) -> frozenset[int]:
    """Token ids that end a completion: the tokenizer's EOS and pad, and the EOS id(s) of the model's
    generation config when a model is given.

    >>> class Tok: eos_token_id, pad_token_id = 2, 0
    >>> sorted(stop_token_ids(Tok()))
    [0, 2]
    """
    ids = {getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None)}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list | tuple) else [eos])
    return frozenset(int(i) for i in ids if i is not None)


def trailing_stop_tokens(token_ids: Sequence[int], stop_ids: set[int] | frozenset[int]) -> int:
    """How many of the last ``token_ids`` are stop tokens (EOS / pad).

    >>> trailing_stop_tokens([5, 6, 2, 0], {0, 2}), trailing_stop_tokens([5, 6], {0, 2})
    (2, 0)
    """
    n, k = len(token_ids), 0
    while k < n and int(token_ids[n - 1 - k]) in stop_ids:
        k += 1
    return k


def spans_to_token_index(token_spans: Sequence[Sequence[tuple[int, int]]], num_tokens: int) -> torch.Tensor:
    """A (B, T) long tensor: the episode index j of every token of trace i, −1 outside every span.

    >>> spans_to_token_index([[(0, 2), (2, 3)], [(1, 2)]], 4).tolist()
    [[0, 0, 1, -1], [-1, 0, -1, -1]]
    """
    index = torch.full((len(token_spans), num_tokens), -1, dtype=torch.long)
    for i, spans in enumerate(token_spans):
        for j, (start, end) in enumerate(spans):
            index[i, start:end] = j
    return index


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Bessel-corrected std ignoring NaNs; NaN where fewer than two values (TRL's ``nanstd``)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True).to(x.dtype)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    std = torch.sqrt(variance * correction)
    return std.squeeze() if dim is None else std.squeeze(dim)


def build_advantages(
    episode_rewards: Sequence[Sequence[float]],
    outcomes: Sequence[float | None],
    token_spans: Sequence[Sequence[tuple[int, int]]],
    group_ids: Sequence[Hashable],
    num_tokens: int,
    *,
    alpha: float = 1.0,
    gamma: float = 1.0,
    normalize: str = "separate",
    scale_rewards: str = "group",
    baseline: str = "group",
    termination_values: Sequence[Sequence[float]] | None = None,
    eps: float = 1e-4,
    dense_weight: float = 1.0,
    episode_kinds: Sequence[Sequence[str]] | None = None,
    credit: str = "sum",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-token advantages (B, T) from dense episode rewards and outcomes; see the module docstring.

    ``episode_kinds[i][j]`` is the kind of span j of trace i (``"attempt"``, ``"verify"``, ...; needed by
    ``normalize="per_kind"``); a span of kind :data:`STOP_KIND` is a stop step, left out of the dense
    statistics of ``separate`` / ``per_kind`` (its normalised dense reward is 0) and of every min of
    ``credit="min"``. ``credit`` is the episode return: ``"sum"`` (reward-to-go) or ``"min"`` (PURE).

    Two prompts × two samples, one episode each, no dense rewards: plain GRPO advantages.

    >>> A = build_advantages([[], [], [], []], [1.0, 0.0, 1.0, 1.0], [[(0, 2)], [(0, 1)], [(0, 2)], [(0, 2)]],
    ...                      [0, 0, 1, 1], 2)
    >>> [round(v, 3) for v in A[:, 0].tolist()], A[1, 1].item()
    ([0.707, -0.707, 0.0, 0.0], 0.0)
    """
    check_options(normalize=normalize, scale_rewards=scale_rewards, baseline=baseline, credit=credit, alpha=alpha,
                  gamma=gamma, eps=eps, dense_weight=dense_weight)
    normalize = NORMALIZE_ALIASES.get(normalize, normalize)
    if baseline in TERMINATION_BASELINES and termination_values is None:
        raise ValueError(f"baseline={baseline!r} needs termination_values[i][j] = J_{{j-1}}, the forced-answer "
                         f"success at the start of each episode (e.g. from the Monte Carlo progress estimator)")
    if baseline not in TERMINATION_BASELINES and termination_values is not None:
        raise ValueError("termination_values were given but baseline='group' ignores them; "
                         "set baseline='termination' (or 'mrt_termination') or drop termination_values")
    batch = _check_inputs(episode_rewards, outcomes, token_spans, group_ids, num_tokens, termination_values)
    if normalize == "per_kind" and episode_kinds is None:
        raise ValueError("normalize='per_kind' needs episode_kinds[i][j], the kind of every episode")
    if episode_kinds is not None and [len(k) for k in episode_kinds] != [len(s) for s in token_spans]:
        raise ValueError("episode_kinds must give one kind per token span of every trace")
    num_tokens = int(num_tokens)
    width = max([1, *(len(s) for s in token_spans)])

    outcome = torch.tensor([math.nan if o is None else float(o) for o in outcomes], dtype=dtype)
    scorable = ~torch.isnan(outcome)
    group_of, n_groups = _group_index(group_ids)
    n_episodes = torch.tensor([len(s) for s in token_spans], dtype=torch.long)
    is_episode = torch.arange(width).unsqueeze(0) < n_episodes.unsqueeze(1)  # (B, E)
    has_dense = torch.tensor([len(r) > 0 for r in episode_rewards], dtype=torch.bool)
    use_dense = dense_weight != 0 and bool(has_dense.any())

    dense = torch.zeros(batch, width, dtype=dtype)
    for i, rewards in enumerate(episode_rewards):
        if len(rewards):
            dense[i, : len(rewards)] = torch.tensor([math.nan if r is None else float(r) for r in rewards], dtype=dtype)
    dense = torch.nan_to_num(dense, nan=0.0)  # a NaN episode reward counts as 0
    names = sorted({k for ks in episode_kinds for k in ks}) if episode_kinds is not None else []
    kind = torch.zeros(batch, width, dtype=torch.long)
    for i, ks in enumerate(episode_kinds or []):
        kind[i, : len(ks)] = torch.tensor([names.index(k) for k in ks], dtype=torch.long)
    stop = kind == names.index(STOP_KIND) if STOP_KIND in names else torch.zeros(batch, width, dtype=torch.bool)
    rewarded = is_episode & has_dense.unsqueeze(1) & ~stop  # the episodes that earn a dense reward

    def returns(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """R_ij of the chosen credit form; ``mask`` marks the entries a min runs over (a sum ignores it:
        the entries outside it are 0)."""
        return _future_min(values, mask) if credit == "min" else _reward_to_go(values, gamma)

    if baseline in TERMINATION_BASELINES:
        total = alpha * outcome.unsqueeze(1).expand(batch, width)
        if use_dense:
            total = dense_weight * returns(dense, rewarded) + total
        assert termination_values is not None
        base = torch.zeros(batch, width, dtype=dtype)
        for i, values in enumerate(termination_values):
            if len(values):
                base[i, : len(values)] = torch.tensor([float(v) for v in values], dtype=dtype)
        if baseline == "mrt_termination":  # one advantage per sequence: R - R_termination, no std
            adv = (total[:, :1] - base[:, :1]).expand(batch, width)
        else:
            adv = total - base
            if scale_rewards != "none":
                std = _scale(total[:, 0], group_of, n_groups, scale_rewards)
                adv = adv / _divisor(std.unsqueeze(1), eps)
    elif normalize in ("separate", "per_kind"):
        adv_out = _normalize(outcome, group_of, n_groups, scale_rewards, eps)
        adv = alpha * adv_out.unsqueeze(1).expand(batch, width)
        if use_dense:
            chosen = rewarded & scorable.unsqueeze(1)
            if credit == "min":  # min over the raw rewards, then the group baseline of the whole-trace min
                dense_rows = has_dense & scorable
                ret = torch.where(dense_rows.unsqueeze(1), _future_min(dense, chosen), torch.zeros_like(dense))
                stats = torch.where(dense_rows, ret[:, 0], torch.full_like(ret[:, 0], math.nan))
                normed = _normalize(ret, group_of, n_groups, scale_rewards, eps, stats_of=stats)
                adv = dense_weight * torch.where(dense_rows.unsqueeze(1), normed, torch.zeros_like(normed)) + adv
            else:
                keys, n_keys = group_of.unsqueeze(1).expand(batch, width), n_groups
                if normalize == "per_kind":
                    keys, n_keys = keys * len(names) + kind, n_groups * len(names)
                normed = torch.zeros(batch, width, dtype=dtype)
                normed[chosen] = _normalize(dense[chosen], keys[chosen], n_keys, scale_rewards, eps)
                adv = dense_weight * _reward_to_go(normed, gamma) + adv
    elif normalize == "prime":  # PRIME: compute_rloo_returns (training/verl/trainer/ppo/core_algos.py)
        adv = alpha * _prime_rloo(outcome, scorable, group_of, n_groups).unsqueeze(1).expand(batch, width)
        if use_dense:
            chosen = rewarded & scorable.unsqueeze(1)
            steps = chosen.sum(1)
            dense_rows = has_dense & scorable & (steps > 0)
            means = (dense * chosen).sum(1) / steps.clamp(min=1).to(dtype)
            total, count = _group_sum_count(means, dense_rows, group_of, n_groups)
            total, count = total.unsqueeze(1), count.unsqueeze(1)
            shaped = dense * (count / (count - 1)) - total / (count - 1)
            shaped = torch.where(chosen & dense_rows.unsqueeze(1), shaped, torch.zeros_like(shaped))
            adv = dense_weight * torch.nan_to_num(_reward_to_go(shaped, gamma), nan=0.0) + adv
    elif normalize == "pure":  # PURE: process_experiences + make_experience_list (experience_maker.py)
        adv = alpha * _pure_rloo(outcome, scorable, group_of, n_groups).unsqueeze(1).expand(batch, width)
        if use_dense:
            chosen = rewarded & scorable.unsqueeze(1)
            steps = chosen.sum(1)
            dense_rows = has_dense & scorable & (steps > 0)
            ret = returns(dense * chosen, chosen)  # over the raw rewards: the baseline comes after
            per_step = ret[:, 0] / steps.clamp(min=1).to(dtype)
            base = _loo_mean(per_step, dense_rows, group_of, n_groups)  # b_i
            left = torch.flip(torch.cumsum(torch.flip(chosen.to(dtype), [1]), 1), [1])  # c_ij
            dense_adv = ret - left * base.unsqueeze(1)
            dense_adv = torch.where(dense_rows.unsqueeze(1), dense_adv, torch.zeros_like(dense_adv))
            adv = dense_weight * torch.nan_to_num(dense_adv, nan=0.0) + adv
    else:  # mrt (alias joint)
        total = alpha * outcome.unsqueeze(1).expand(batch, width)
        if use_dense:
            total = dense_weight * returns(dense, rewarded) + total
        adv = _normalize(total, group_of, n_groups, scale_rewards, eps, stats_of=total[:, 0])

    adv = torch.where(torch.isnan(adv) | ~scorable.unsqueeze(1), torch.zeros_like(adv), adv)
    index = spans_to_token_index(token_spans, num_tokens)
    per_token = adv.gather(1, index.clamp(min=0)) if num_tokens else adv.new_zeros(batch, 0)
    per_token = torch.where(index >= 0, per_token, torch.zeros_like(per_token))
    if normalize in ("prime", "pure") and baseline not in TERMINATION_BASELINES:
        per_token = _whiten(per_token, (index >= 0) & scorable.unsqueeze(1), unbiased=normalize == "prime")
    return per_token


def _group_sum_count(values: torch.Tensor, valid: torch.Tensor, group_of: torch.Tensor,
                     n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the sum of the ``valid`` values of its group, and how many there are."""
    total = torch.zeros(n_groups, dtype=values.dtype).index_add_(
        0, group_of, torch.where(valid, values, torch.zeros_like(values)))
    count = torch.zeros(n_groups, dtype=values.dtype).index_add_(0, group_of, valid.to(values.dtype))
    return total[group_of], count[group_of]


def _prime_rloo(values: torch.Tensor, valid: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """PRIME's leave-one-out form: v·n/(n − 1) − Σ_group v/(n − 1) (``compute_rloo_returns``); 0 where the
    row is not valid or its group has fewer than two valid rows.

    >>> _prime_rloo(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([True, True, True]), torch.tensor([0, 0, 0]), 1)
    tensor([ 0.5000, -1.0000,  0.5000])
    """
    total, count = _group_sum_count(values, valid, group_of, n_groups)
    out = values * (count / (count - 1)) - total / (count - 1)
    return torch.where(valid & (count > 1), out, torch.zeros_like(out))


def _loo_mean(values: torch.Tensor, valid: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """The mean of the other valid rows of each row's group, (Σ_group v − v)/(n − 1), as PURE writes it
    (``process_experiences``: ``(x.sum(-1, keepdim=True) - x) / (n_samples_per_prompt - 1)``); NaN where
    the row is not valid or its group has fewer than two valid rows.

    >>> _loo_mean(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([True, True, True]), torch.tensor([0, 0, 0]), 1)
    tensor([1.0000, 1.5000, 0.5000])
    """
    total, count = _group_sum_count(values, valid, group_of, n_groups)
    out = (total - values) / (count - 1)
    return torch.where(valid & (count > 1), out, torch.full_like(out, math.nan))


def _pure_rloo(values: torch.Tensor, valid: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """PURE's RLOO advantage of one value per trace: v − (Σ_group v − v)/(n − 1); 0 where undefined.

    >>> _pure_rloo(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([True, True, True]), torch.tensor([0, 0, 0]), 1)
    tensor([ 0.5000, -1.0000,  0.5000])
    """
    return torch.nan_to_num(values - _loo_mean(values, valid, group_of, n_groups), nan=0.0)


def _whiten(values: torch.Tensor, mask: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Whiten the masked entries over all of them; 0 elsewhere (and everywhere if fewer than two).

    ``unbiased=True``: PRIME's ``masked_whiten`` ((x − mean) · rsqrt(Bessel var + 1e-8)); ``False``: PURE's
    ``ReplayBuffer.normalize`` ((x − mean) · rsqrt(max(population var, 1e-8))).

    >>> _whiten(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[True, True, False]]), unbiased=False).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    n = mask.sum().to(values.dtype)
    if int(n) < 2:
        return torch.zeros_like(values)
    x = torch.where(mask, values, torch.zeros_like(values))
    mean = x.sum() / n
    var = (torch.where(mask, values - mean, torch.zeros_like(values)) ** 2).sum() / n
    if unbiased:
        out = (values - mean) * torch.rsqrt(var * (n / (n - 1)) + 1e-8)
    else:
        out = (values - mean) * torch.rsqrt(var.clamp(min=1e-8))
    return torch.where(mask, out, torch.zeros_like(out))


def _reward_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Σ_{k≥j} γ^{k−j} r_k along dim 1 of a (B, E) tensor (entries past a trace's episodes are 0)."""
    out = torch.empty_like(rewards)
    acc = torch.zeros_like(rewards[:, 0])
    for j in range(rewards.shape[1] - 1, -1, -1):
        acc = rewards[:, j] + gamma * acc
        out[:, j] = acc
    return out


def _future_min(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """min_{k≥j, mask[k]} r_k along dim 1 of a (B, E) tensor; 0 where no masked entry lies at or after j.

    >>> _future_min(torch.tensor([[1.0, -1.0, 2.0, 0.0]]), torch.tensor([[True, True, True, False]])).tolist()
    [[-1.0, -1.0, 2.0, 0.0]]
    """
    out = torch.empty_like(rewards)
    acc = torch.full_like(rewards[:, 0], math.inf)
    for j in range(rewards.shape[1] - 1, -1, -1):
        acc = torch.where(mask[:, j], torch.minimum(acc, rewards[:, j]), acc)
        out[:, j] = acc
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def _group_index(group_ids: Sequence[Hashable]) -> tuple[torch.Tensor, int]:
    """Dense group numbers 0..G−1 in order of first appearance."""
    seen: dict[Hashable, int] = {}
    index = [seen.setdefault(g, len(seen)) for g in group_ids]
    return torch.tensor(index, dtype=torch.long), len(seen)


def _group_matrix(values: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """A (G, width) matrix of each group's values, NaN-padded (equals TRL's ``view(-1, G)`` for equal groups)."""
    counts = torch.bincount(group_of, minlength=n_groups)
    seen = [0] * n_groups
    rank = []
    for g in group_of.tolist():
        rank.append(seen[g])
        seen[g] += 1
    position = torch.tensor(rank, dtype=torch.long)
    matrix = torch.full((n_groups, max(1, int(counts.max()) if len(counts) else 1)), math.nan, dtype=values.dtype)
    matrix[group_of, position] = values
    return matrix


def _scale(values: torch.Tensor, group_of: torch.Tensor, n_groups: int, scale_rewards: str) -> torch.Tensor:
    """The std each element is divided by: its group's (``"group"``) or the whole batch's (``"batch"``)."""
    if scale_rewards == "batch":
        return nanstd(values).expand_as(values)
    return nanstd(_group_matrix(values, group_of, n_groups), dim=1)[group_of]


def _normalize(
    values: torch.Tensor,
    group_of: torch.Tensor,
    n_groups: int,
    scale_rewards: str,
    eps: float,
    stats_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """(v − group mean) / (std + eps), statistics over ``stats_of`` (default ``values``), rows by ``group_of``.

    ``values`` is (N,) or (N, E) with row n in group ``group_of[n]``. NaN results (a NaN value, or a
    statistic over fewer than two values) become 0, so one stream's undefined entry does not void
    another stream's credit.
    """
    stats = (values if stats_of is None else stats_of).contiguous()  # reduce in the same order as TRL
    mean = torch.nanmean(_group_matrix(stats, group_of, n_groups), dim=1)[group_of]
    if values.dim() == 2:
        mean = mean.unsqueeze(1)
    out = values - mean
    if scale_rewards != "none":
        std = _scale(stats, group_of, n_groups, scale_rewards)
        out = out / _divisor(std.unsqueeze(1) if values.dim() == 2 else std, eps)
    return torch.nan_to_num(out, nan=0.0)


def _divisor(std: torch.Tensor, eps: float) -> torch.Tensor:
    """std + eps, as TRL, except 1 where the std is exactly 0, and NaN where it is undefined.

    TRL only ever divides a zero numerator by a zero std (all rewards equal their mean), so the
    result there is 0 either way; per-episode returns can differ from a group whose whole-trace
    returns are all equal, and dividing those by eps = 1e-4 would blow them up 10^4-fold.
    An undefined std (NaN: fewer than two values) stays NaN, so the quotient is NaN and becomes 0:
    a term whose statistic is undefined is 0, never its raw, undivided numerator.
    """
    return torch.where(std > 0, std + eps, torch.where(torch.isnan(std), std, torch.ones_like(std)))


def check_options(*, normalize: str = "separate", scale_rewards: str = "group", baseline: str = "group",
                  credit: str = "sum", alpha: float = 1.0, gamma: float = 1.0, eps: float = 1e-4,
                  dense_weight: float = 1.0, where: str = "") -> None:
    """Raise ``ValueError`` naming the option if a credit option (or a combination) is not supported.

    The one check of these options: :func:`build_advantages` calls it, and so does the config's
    ``Objective`` (with ``where="objective."``, so the message names the config key).

    >>> check_options(credit="min", gamma=0.9)
    Traceback (most recent call last):
    ...
    ValueError: credit='min' takes no discount: gamma=0.9 must be 1 (the min of the future rewards is undiscounted)
    """
    for name, value, allowed in (("normalize", normalize, NORMALIZE_MODES + tuple(NORMALIZE_ALIASES)),
                                 ("scale_rewards", scale_rewards, SCALE_MODES),
                                 ("baseline", baseline, BASELINES),
                                 ("credit", credit, CREDIT_FORMS)):
        if value not in allowed:
            raise ValueError(f"{where}{name}={value!r} is not supported; use one of {', '.join(allowed)}")
    for name, value in (("alpha", alpha), ("gamma", gamma), ("eps", eps), ("dense_weight", dense_weight)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{where}{name} must be a finite number, got {value!r}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{where}gamma={gamma} is a discount and must lie in [0, 1] (1 = undiscounted)")
    if eps <= 0:
        raise ValueError(f"{where}eps={eps} must be > 0 (it keeps the division by a zero std finite)")
    if credit == "min" and gamma != 1:
        raise ValueError(f"{where}credit='min' takes no discount: {where}gamma={gamma} must be 1 (the min of the "
                         f"future rewards is undiscounted)")
    if baseline in TERMINATION_BASELINES:
        return  # normalize is not used
    mode = NORMALIZE_ALIASES.get(normalize, normalize)
    if credit == "min" and mode in ("per_kind", "prime"):
        why = ("a min over episodes of several kinds has no kind to normalise by" if mode == "per_kind"
               else "PRIME defines no min-form")
        raise ValueError(f"{where}credit='min' does not combine with {where}normalize={normalize!r}: {why}; use "
                         f"normalize=pure (PURE's own credit), mrt or separate")
    if mode == "pure" and gamma != 1:
        raise ValueError(f"{where}normalize='pure' takes no discount: {where}gamma={gamma} must be 1 (PURE's return "
                         f"is an undiscounted reverse cumulative sum)")


def _check_inputs(episode_rewards: Sequence[Sequence[float]], outcomes: Sequence[float | None],
                  token_spans: Sequence[Sequence[tuple[int, int]]], group_ids: Sequence[Hashable],
                  num_tokens: int, termination_values: Sequence[Sequence[float]] | None) -> int:
    """Validate shapes, spans and values; return the batch size B."""
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, numbers.Integral) or num_tokens < 0:
        raise ValueError(f"num_tokens must be a non-negative int (the padded completion length T), got {num_tokens!r}")
    batch = len(group_ids)
    lengths = {"episode_rewards": len(episode_rewards), "outcomes": len(outcomes), "token_spans": len(token_spans)}
    if termination_values is not None:
        lengths["termination_values"] = len(termination_values)
    bad = {k: n for k, n in lengths.items() if n != batch}
    if bad:
        raise ValueError(f"one entry per trace is needed: group_ids has {batch} traces but {bad}")
    for i, g in enumerate(group_ids):
        if not isinstance(g, Hashable) or isinstance(g, float) and math.isnan(g):
            raise ValueError(f"group_ids[{i}]={g!r} is not a usable group id; use the prompt index (an int)")
    for i, spans in enumerate(token_spans):
        prev_end = 0
        for j, span in enumerate(spans):
            if len(span) != 2 or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in span):
                raise ValueError(f"token_spans[{i}][{j}]={span!r} is not a (start, end) pair of ints")
            start, end = span
            if not 0 <= start <= end <= num_tokens:
                raise ValueError(f"token_spans[{i}][{j}]=({start}, {end}) is not inside [0, num_tokens={num_tokens}] "
                                 f"with start <= end; spans index the completion tokens, end exclusive")
            if start < prev_end:
                raise ValueError(f"token_spans[{i}][{j}] starts at {start}, before episode {j - 1} ends at {prev_end}: "
                                 f"spans must be in order and must not overlap")
            prev_end = end
        n_rewards = len(episode_rewards[i])
        if n_rewards not in (0, len(spans)):
            raise ValueError(f"trace {i} has {n_rewards} episode rewards but {len(spans)} token spans; give one "
                             f"reward per episode (or none: no dense reward for this trace)")
        for j, r in enumerate(episode_rewards[i]):
            if r is not None and math.isinf(_number(r, f"episode_rewards[{i}][{j}]")):
                raise ValueError(f"episode_rewards[{i}][{j}] is {r}; rewards must be finite (NaN counts as 0)")
        o = outcomes[i]
        if o is not None and math.isinf(_number(o, f"outcomes[{i}]")):
            raise ValueError(f"outcomes[{i}] is {o}; outcomes must be finite (NaN or None marks an unscorable trace)")
        if termination_values is not None:
            values = termination_values[i]
            if len(values) != len(spans):
                raise ValueError(f"trace {i} has {len(values)} termination values but {len(spans)} episodes; give "
                                 f"J_(j-1) for the start of every episode j")
            for j, v in enumerate(values):
                if v is None or not math.isfinite(_number(v, f"termination_values[{i}][{j}]")):
                    raise ValueError(f"termination_values[{i}][{j}] is {v!r}; a termination baseline must be finite")
    return batch


def _number(value: object, where: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r} is not a number; rewards and values must be floats") from None
