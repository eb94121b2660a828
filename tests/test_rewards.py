"""The reward protocol: plain functions matched by name, declared levels, weights, totals and fault isolation."""
from __future__ import annotations

import math

import pytest

from metarl.registry import ConfigError
from metarl.rewards import RewardError, build_reward, build_rewards, reward
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer
from metarl.segmenters import TagSegmenter
from metarl.types import Episode, Trace


@reward("episode")
def episode_len(episode):
    return float(len(episode.text))


@reward("trace")
def trace_len(completion, num_tokens):
    return float(len(completion))


@reward("episode")
def flaky(episode, index):
    if index == 1:
        raise RuntimeError("boom")
    return math.nan if index == 2 else 1.0


@reward("episode")
def always_fails(episode):
    raise ValueError("nope")


def grade(p, a, prompt=""):
    return p == a


def scorer(rewards, **obj):
    return Scorer(TagSegmenter(), build_rewards(rewards), grade, lambda t: t.split(">")[-2].split("<")[0] if ">" in t
                  else None, lambda t: None, Objective(**obj))


def trace():
    return Trace(prompt="q", completion="<attempt>1</attempt><verify>x</verify><revise>2</revise>", answer="2")


def test_levels_names_and_weights():
    rs = build_rewards([episode_len, trace_len])
    assert [(r.name, r.level) for r in rs] == [("episode_len", "episode"), ("trace_len", "trace")]
    r = build_reward({"_target_": "metarl.rewards.obj1.verification_correctness", "_partial_": True, "wrong": -1.0,
                      "weight": 0.5, "name": "v"})
    assert (r.name, r.level, r.weight) == ("v", "episode", 0.5)
    with pytest.raises(ConfigError, match="unique"):
        build_rewards([episode_len, episode_len])
    with pytest.raises(ConfigError, match="Error locating target 'metarl.rewards.obj1.nope'"):
        build_reward({"_target_": "metarl.rewards.obj1.nope", "_partial_": True})
    with pytest.raises(ConfigError, match=r"rewards\.v: .*verification_correctness is a function.*_partial_: true"):
        build_reward({"_target_": "metarl.rewards.obj1.verification_correctness", "name": "v"})
    with pytest.raises(ConfigError, match="a reward is a mapping with `_target_`"):
        build_reward("outcome")  # short names are gone: rewards=[outcome] selects conf/rewards/outcome.yaml


def test_totals_hand_computed():
    s = scorer([{"_target_": "metarl.rewards.obj1.generation_correctness", "_partial_": True, "weight": 2.0}], alpha=0.5)
    t = s.score([trace()])[0]
    assert [e.rewards.get("generation_correctness") for e in t.episodes] == [0.0, None, 1.0]
    assert t.outcome == 1.0  # the last stated answer (the revision) is right
    assert s.episode_dense(t) == [0.0, 0.0, 2.0]
    assert t.rewards == {"dense": 2.0, "total": 2.0 + 0.5 * 1.0}


def test_one_failing_sample_is_isolated_and_counted():
    s = scorer([flaky])
    t = s.score([trace()])[0]
    assert [e.rewards["flaky"] for e in t.episodes] == [1.0, 0.0, 0.0]
    r = s.rewards[0]
    assert r.stats == {"calls": 3, "errors": 1, "nonfinite": 1, "timeouts": 0}
    assert "boom" in t.meta["reward_errors"][0]
    s = Scorer(TagSegmenter(), build_rewards([flaky]), grade, lambda t: None, lambda t: None, on_error="nan")
    t = s.score([trace()])[0]
    assert math.isnan(t.episodes[1].rewards["flaky"]) and s.episode_dense(t) == [1.0, 0.0, 0.0]


def test_whole_batch_failing_stops_with_a_clear_message():
    with pytest.raises(RewardError, match="always_fails.*every one of 6"):
        scorer([always_fails]).score([trace(), trace()])


def test_unknown_argument_names_are_rejected_when_the_reward_is_built():
    @reward("episode")
    def needs_weird(episode, weird_thing):
        return 1.0

    with pytest.raises(ConfigError, match=r"weird_thing.*matched by name from \[.*'answer'"):
        build_reward(needs_weird)
    assert build_reward({"_target_": "test_rewards.takes_a_setting", "_partial_": True, "scale": 2.0}).level == "episode"


@reward("episode")
def takes_a_setting(episode, scale):
    return scale * len(episode.text)


def test_a_level_is_declared_not_guessed():
    def undeclared(completion, episodes):  # a trace reward that reads every episode: once per trace
        return float(len(episodes))

    with pytest.raises(ConfigError, match="does not declare its level"):
        build_reward(undeclared)
    own = {"_target_": "test_rewards.undeclared_trace", "_partial_": True, "level": "trace"}
    r = build_reward(own)
    t = scorer([own]).score([trace()])[0]
    assert r.level == "trace" and t.rewards["undeclared_trace"] == 3.0  # once per trace, not once per episode
    assert t.rewards["dense"] == 0.0  # a trace reward is recorded, not summed into the dense term
    with pytest.raises(ConfigError, match="per episode"):
        build_reward({"_target_": "test_rewards.flaky", "_partial_": True, "level": "trace"})


def undeclared_trace(completion, episodes):
    return float(len(episodes))


def test_every_weight_applies_or_is_rejected():
    with pytest.raises(ConfigError, match="trace-level.*objective.alpha"):
        build_reward({"_target_": "metarl.rewards.obj1.outcome", "_partial_": True, "weight": 5.0})
    gen = {"_target_": "metarl.rewards.obj1.generation_correctness", "_partial_": True}
    base = scorer([outcome, gen], alpha=0.5).score([trace()])[0]
    heavy = scorer([outcome, {**gen, "weight": 5.0}], alpha=0.5).score([trace()])[0]
    assert base.rewards["dense"] == 1.0 and heavy.rewards["dense"] == 5.0  # the episode weight applies
    assert heavy.rewards["total"] == 5.0 + 0.5 * 1.0


def test_the_outcome_is_graded_once():
    calls = []

    def counting(p, a, prompt=""):
        calls.append(p)
        return p == a

    s = Scorer(TagSegmenter(), build_rewards([outcome]), counting, lambda t: t.split(">")[-2].split("<")[0],
               lambda t: None)
    t = s.score([trace()])[0]
    assert calls == ["2"] and t.outcome == 1.0 and t.rewards["outcome"] == 1.0


def test_termination_values_need_mc_progress():
    from metarl.trainer.step import credit_of

    t = trace()
    n = len(t.completion)
    t.completion_ids = list(range(n))
    t.episodes = [Episode("attempt", 0, 3, t.completion[:3], 0, 3), Episode("other", 3, n, t.completion[3:], 3, n)]
    scorer = Scorer(segmenter="whole", rewards=[], grader=lambda p, a, q="": True, extract_answer=lambda x: x,
                    parse_verdict=lambda x: None, objective=Objective(baseline="termination"))
    with pytest.raises(ValueError, match="mc_progress"):
        credit_of(t, scorer, frozenset())
    t.meta["J_init"] = 0.25
    t.episodes[0].info["J"] = 0.5
    t.episodes[1].info["J"] = 1.0
    assert credit_of(t, scorer, frozenset()).values == [0.25, 0.5]


@reward("episode")
def slow_on_second(episode, index):
    if index == 1:
        while True:
            pass
    return 1.0


def test_a_reward_call_past_its_timeout_is_isolated():
    s = scorer([{"_target_": "test_rewards.slow_on_second", "_partial_": True, "timeout": 0.2}])
    t = s.score([trace()])[0]
    assert [e.rewards["slow_on_second"] for e in t.episodes] == [1.0, 0.0, 1.0]
    assert s.rewards[0].stats["timeouts"] == 1 and "exceeded" in t.meta["reward_errors"][0]


def test_obj1_rewards_record_nothing_where_the_grader_cannot_tell():
    """An attempt the grader cannot grade (judge says undetermined) earns no generation reward, and the verify
    episode that checks it no verification reward, instead of a confident 0 or 1."""
    from metarl.grading.grader import Grader
    from metarl.rewards.obj1 import generation_correctness, verification_correctness

    def verify(prediction, answer, prompt):
        if prediction == "boom":
            raise RuntimeError("cannot parse")
        return prediction == answer

    g = Grader(verify)
    verdict = lambda t: {"correct": True, "incorrect": False}.get(t.strip())  # noqa: E731
    unknown, known = Episode("attempt", 0, 4, "boom"), Episode("attempt", 0, 3, "7+6")
    check = Episode("verify", 4, 11, "correct")
    assert generation_correctness(unknown, "7+6", g, lambda t: t) is None
    assert verification_correctness(check, [unknown], "7+6", g, lambda t: t, verdict) is None
    assert generation_correctness(known, "7+6", g, lambda t: t) == 1.0
    assert verification_correctness(check, [known], "7+6", g, lambda t: t, verdict) == 1.0
