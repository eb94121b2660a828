"""The dense-reward trainer against TRL: exact reduction with dense credit off, real updates with it on."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from metarl.rewards import build_rewards, reward
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer
from metarl.segmenters import TokenChunkSegmenter
from metarl.engine import Sampling, prompt_ids_for
from metarl.trainer import step
from metarl.trainer.grpo import MetaRLTrainer
from metarl.trainer.rollout import Rollout, trainer_backend, trl_output
from metarl.types import Trace


def parity_grader(prediction, answer, prompt=""):
    """A grader with spread on a random model: 'correct' when the completion length is even."""
    return prediction is not None and len(prediction) % 2 == 0


@reward("episode")
def zero_episode_reward(episode):
    return 0.0


@reward("episode")
def first_char_reward(episode):
    """A dense reward with spread: 1 if the episode starts with a letter."""
    return float(episode.text[:1].isalpha())


def make_scorer(rewards, **objective):
    from metarl.models.tiny import build_char_tokenizer

    return Scorer(segmenter=TokenChunkSegmenter(k=4), rewards=build_rewards(rewards), grader=parity_grader,
                  extract_answer=lambda t: t, parse_verdict=lambda t: None, objective=Objective(**objective),
                  tokenizer=build_char_tokenizer())


def dataset():
    return Dataset.from_list([{"prompt": f"Q{i}: {i}+{i}=", "answer": str(2 * i)} for i in range(8)])


def config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
                max_steps=2, learning_rate=1e-2, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                seed=3, bf16=False, temperature=1.0, beta=0.0, disable_tqdm=True)
    base.update(kw)
    return GRPOConfig(**base)


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def engine_rollout(prompts, trainer):
    """metarl's engine as a plain TRL ``rollout_func``: TRL GRPO on the completions MetaRLTrainer generates."""
    with trainer_backend(trainer) as backend:
        streams = Rollout(cap=trainer.max_completion_length, force_answer=False).generate(
            backend, [prompt_ids_for(trainer.processing_class, p) for p in prompts],
            Sampling(trainer.temperature, trainer.top_p))
    return trl_output(streams)


def outcome_reward(scorer):
    """A TRL reward function: the scorer's grade of each completion."""
    def outcome(prompts, completions, answer, **kwargs):
        return [scorer.grade(Trace(prompt=p, completion=c, answer=a)) for p, c, a in zip(prompts, completions, answer)]
    return outcome


def train_trl(model, tok, tmp_path, scorer, **kw):
    t = GRPOTrainer(model=model, reward_funcs=[outcome_reward(scorer)], args=config(tmp_path / "trl", **kw),
                    train_dataset=dataset(), processing_class=tok, rollout_func=engine_rollout)
    t.train()
    return params(t.model)


def train_metarl(model, tok, tmp_path, scorer, **kw):
    t = MetaRLTrainer(model=model, args=config(tmp_path / "metarl", **kw), train_dataset=dataset(),
                      processing_class=tok, scorer=scorer)
    t.train()
    return params(t.model), t


@pytest.fixture
def fresh(tiny):
    model, tok = tiny
    return lambda: (copy.deepcopy(model).train(), tok)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_dense_off_reduces_exactly_to_trl_grpo(fresh, tmp_path, loss_type):
    init = params(fresh()[0])
    ref = train_trl(*fresh(), tmp_path, make_scorer([outcome]), loss_type=loss_type)
    ours, trainer = train_metarl(*fresh(), tmp_path, make_scorer([outcome]), loss_type=loss_type)
    assert not trainer.dense_credit
    assert any(not torch.equal(init[k], ref[k]) for k in ref), "the update must not be trivial"
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=0, msg=f"parameter {k} differs from TRL")


def test_dense_path_with_zero_dense_rewards_matches_trl(fresh, tmp_path):
    """The (B, T) advantage path with all-zero episode rewards gives TRL's update (same loss, same step)."""
    ref = train_trl(*fresh(), tmp_path, make_scorer([outcome]))
    ours, trainer = train_metarl(*fresh(), tmp_path, make_scorer([outcome, zero_episode_reward]))
    assert trainer.dense_credit
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-5, atol=1e-7)


def test_sampling_options_the_engine_does_not_apply_are_refused(fresh, tmp_path):
    from metarl.registry import ConfigError

    model, tok = fresh()
    with pytest.raises(ConfigError, match=r"trainer.args.top_k=50: .* trainer.temperature and trainer.top_p only"):
        MetaRLTrainer(model=model, args=config(tmp_path, top_k=50), train_dataset=dataset(), processing_class=tok,
                      scorer=make_scorer([outcome]))


def test_dense_rewards_change_the_update(fresh, tmp_path):
    ref = train_trl(*fresh(), tmp_path, make_scorer([outcome]))
    ours, trainer = train_metarl(*fresh(), tmp_path, make_scorer([outcome, first_char_reward]))
    assert any(not torch.allclose(ours[k], ref[k]) for k in ref)
    logged = trainer.state.log_history[0]
    assert "metarl/episode_reward/first_char_reward" in logged
    assert logged["metarl/episodes_per_trace"] >= 1


def test_advantages_are_per_token(fresh, tmp_path):
    model, tok = fresh()
    scorer = make_scorer([outcome, first_char_reward], gamma=0.5)
    t = MetaRLTrainer(model=model, args=config(tmp_path, max_steps=1), train_dataset=dataset(),
                      processing_class=tok, scorer=scorer)
    inputs = [dict(x) for x in dataset().select([0, 0, 0, 0, 1, 1, 1, 1])]
    batch = t._generate_and_score_completions(inputs)
    traces = t.traces  # the step's scored traces, kept by the trainer (TRL's inputs carry none)
    assert not any(k not in ("prompt", "answer") for x in inputs for k in x)
    adv = batch["advantages"]
    assert adv.shape == batch["completion_ids"].shape
    multi = [i for i, tr in enumerate(traces) if len(tr.episodes) > 1]
    assert multi, "expected multi-episode traces"
    # tokens of a trace's different episodes can get different advantages; padding gets 0
    i = multi[0]
    eps = traces[i].episodes
    for e in eps:  # constant within an episode
        seg = adv[i, e.token_start:e.token_end]
        assert torch.allclose(seg, seg[:1].expand_as(seg))
    # with gamma=0.5 and spread in the dense rewards, episodes of some trace differ in credit
    differs = [j for j in multi if len({round(adv[j, e.token_start].item(), 6)
                                        for e in traces[j].episodes if e.token_end > e.token_start}) > 1]
    assert differs
    lengths = batch["completion_mask"].sum(1)
    for r in range(adv.shape[0]):
        assert torch.all(adv[r, int(lengths[r]):] == 0)


def test_trailing_eos_is_its_own_stop_step(fresh, tmp_path):
    """EOS after the last episode gets the credit of what follows (outcome term), not that episode's reward."""
    from metarl.types import Trace

    model, tok = fresh()
    scorer = make_scorer([outcome, first_char_reward])
    t = MetaRLTrainer(model=model, args=config(tmp_path, max_steps=1), train_dataset=dataset(),
                      processing_class=tok, scorer=scorer)
    text = "abcdefgh"  # two chunks of 4 tokens: "abcd", "efgh"; both start with a letter (reward 1)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stopped = Trace(prompt="Q: ", completion=text, answer="x", completion_ids=ids + [tok.eos_token_id])
    cut = Trace(prompt="Q: ", completion=text, answer="x", completion_ids=list(ids))  # cut at the cap: no EOS
    scorer.score([stopped, cut])
    s, c = step.credit_of(stopped, scorer, t._stop_ids), step.credit_of(cut, scorer, t._stop_ids)
    assert s.spans == [(0, 4), (4, 8), (8, 9)] and s.dense == [1.0, 1.0, 0.0]
    assert len(stopped.episodes) == 2  # metrics still count real episodes
    assert c.spans == [(0, 4), (4, 8)] and c.dense == [1.0, 1.0]
    from metarl.credit import build_advantages

    adv = build_advantages([s.dense, c.dense], [1.0, 0.0], [s.spans, c.spans], [0, 0], 9,
                           alpha=1.0, normalize="joint", scale_rewards="none")
    # G_stopped = [3, 2, 1], G_cut = [2, 1]; the group mean of whole-trace returns is 2.5
    assert adv[0].tolist() == [0.5] * 4 + [-0.5] * 4 + [-1.5]
    assert adv[1].tolist() == [-0.5] * 4 + [-1.5] * 4 + [0.0]


def _stop_step_traces(tok, scorer):
    """Four traces of one group: two end with EOS (a stop step), two are cut at the cap."""
    from metarl.types import Trace

    out = []
    for text, eos in (("abcdefgh", True), ("abcdefg", True), ("abcdef", False), ("abcde", False)):
        ids = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
        out.append(Trace(prompt="Q: ", completion=text, answer="x", completion_ids=ids))
    scorer.score(out)
    return out


def test_stop_step_through_the_trainer_per_kind_and_termination(fresh, tmp_path):
    """The trainer's credit for the EOS column: the outcome term alone (per_kind), alpha * (r - J_last) / std
    (termination baseline); outcomes by the parity grader: 1, 0, 1, 0."""
    model, tok = fresh()
    a_out = 0.5 / (math.sqrt(4 * 0.25 / 3) + 1e-4)  # (r - 0.5) / (Bessel std + eps), TRL's group scaling
    scorer = make_scorer([outcome, first_char_reward], normalize="per_kind")
    t = MetaRLTrainer(model=model, args=config(tmp_path, max_steps=1, num_generations=4), train_dataset=dataset(),
                      processing_class=tok, scorer=scorer)
    batch = step.make_batch(_stop_step_traces(tok, scorer), scorer, t._stop_ids, 4)
    assert [c.kinds[-1] for c in batch.credit] == ["stop", "stop", "other", "other"]
    adv = step.advantages(batch, scorer.objective, 9)
    assert adv[0, 8].item() == pytest.approx(a_out, rel=1e-5)
    assert adv[1, 7].item() == pytest.approx(-a_out, rel=1e-5)
    assert adv[1, 8].item() == 0.0  # padding
    # every dense reward is 1 (chunks start with a letter): per kind they are all at their mean, so the
    # episodes carry the outcome term only, like the stop step
    assert torch.allclose(adv[0, :8], torch.full((8,), a_out), rtol=1e-5)

    scorer = make_scorer([outcome], baseline="termination")
    t = MetaRLTrainer(model=copy.deepcopy(model), args=config(tmp_path / "b", max_steps=1, num_generations=4),
                      train_dataset=dataset(), processing_class=tok, scorer=scorer)
    traces = _stop_step_traces(tok, scorer)
    for tr in traces:  # what the Monte Carlo estimator would leave: J before the first and after each episode
        tr.meta["J_init"] = 0.1
        for j, ep in enumerate(tr.episodes):
            ep.info["J"] = 0.2 + 0.1 * j
    batch = step.make_batch(traces, scorer, t._stop_ids, 4)
    assert batch.credit[0].values == pytest.approx([0.1, 0.2, 0.3])
    assert batch.credit[2].values == pytest.approx([0.1, 0.2])
    adv = step.advantages(batch, scorer.objective, 9)
    std = math.sqrt(4 * 0.25 / 3) + 1e-4
    assert adv[0, 8].item() == pytest.approx((1 - 0.3) / std, rel=1e-5)  # stop step: baseline J after the last
    assert adv[0, 4].item() == pytest.approx((1 - 0.2) / std, rel=1e-5)  # second episode: J after the first
    assert adv[1, 7].item() == pytest.approx((0 - 0.3) / std, rel=1e-5)


def test_min_credit_and_mrt_baseline_through_the_trainer(fresh, tmp_path):
    """objective.credit and objective.baseline=mrt_termination reach build_advantages (outcomes 1, 0, 1, 0)."""
    model, tok = fresh()
    scorer = make_scorer([outcome, first_char_reward], credit="min", normalize="joint", scale_rewards="none")
    t = MetaRLTrainer(model=model, args=config(tmp_path, max_steps=1, num_generations=4), train_dataset=dataset(),
                      processing_class=tok, scorer=scorer)
    adv = step.advantages(step.make_batch(_stop_step_traces(tok, scorer), scorer, t._stop_ids, 4), scorer.objective, 9)
    # every chunk earns 1, the stop step is out of the min: G_0 = 2, 1, 2, 1 (mean 1.5); the stop step of
    # trace 0 has dense return 0, so G = 0 + 1 there (the sum form would give its second episode 2 - 2.5)
    assert adv[0].tolist() == pytest.approx([0.5] * 8 + [-0.5])
    assert adv[1].tolist() == pytest.approx([-0.5] * 7 + [-1.5, 0.0])

    scorer = make_scorer([outcome], baseline="mrt_termination")
    t = MetaRLTrainer(model=copy.deepcopy(model), args=config(tmp_path / "b", max_steps=1, num_generations=4),
                      train_dataset=dataset(), processing_class=tok, scorer=scorer)
    assert t.dense_credit
    traces = _stop_step_traces(tok, scorer)
    for tr in traces:
        tr.meta["J_init"] = 0.1
        for j, ep in enumerate(tr.episodes):
            ep.info["J"] = 0.2 + 0.1 * j
    adv = step.advantages(step.make_batch(traces, scorer, t._stop_ids, 4), scorer.objective, 9)
    # one advantage per sequence, r - J_init, no std: the stop step included
    assert adv[0].tolist() == pytest.approx([0.9] * 9)
    assert adv[1].tolist() == pytest.approx([-0.1] * 8 + [0.0])
