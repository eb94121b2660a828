"""Multi-episode rollouts: episode-by-episode generation with masked feedback, budget forcing, the compute cap."""
from __future__ import annotations

import contextlib
import copy

import pytest
from datasets import Dataset
from trl import GRPOConfig

import metarl.trainer.grpo as grpo_module
from metarl.prover import ProverConfig
from metarl.rewards import build_rewards
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer
from metarl.segmenters import TokenChunkSegmenter
from metarl.trainer.grpo import MetaRLTrainer
from metarl.registry import ConfigError
from metarl.trainer.rollout import Rollout
from tests.scripted import ScriptedBackend

CAP = 24


def fb(episode_text):
    return "[fb]"


def fb_answer(answer):
    return f"[{answer}]"


def make_trainer(tiny, tmp_path, rollout):
    model, tok = tiny
    scorer = Scorer(TokenChunkSegmenter(k=4), build_rewards([outcome]), lambda p, a, q="": bool(p) and a in p,
                    lambda t: t, lambda t: None, Objective(), tokenizer=tok)
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=CAP, max_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True,
                      save_strategy="no", seed=0, bf16=False, beta=0.0, disable_tqdm=True)
    data = Dataset.from_list([{"prompt": f"Q{i}: ", "answer": "7"} for i in range(4)])
    return MetaRLTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tok,
                         scorer=scorer, rollout=rollout)


def generate(trainer, answers=("7", "7", "7", "7", "7", "7", "7", "7")):
    """One step's generation as TRL asks for it (the trainer's ``rollout_func``): completion ids, the loss mask
    and the texts; the trainer keeps the step's rows (their gold answers reach the feedback) and streams."""
    trainer.rows = [{"prompt": f"Q{i}: ", "answer": a} for i, a in zip((0, 0, 0, 0, 1, 1, 1, 1), answers)]
    out = trainer._generate_streams([r["prompt"] for r in trainer.rows], trainer)
    assert set(out) == {"prompt_ids", "completion_ids", "logprobs", "env_mask"}  # nothing else rides in TRL's inputs
    return out["completion_ids"], out["env_mask"], [s.text for s in trainer.streams]


def test_episodes_mode_inserts_masked_feedback_and_respects_the_cap(tiny, tmp_path):
    ro = Rollout(mode="episodes", cap=CAP, episode_tokens=5, feedback={"_target_": "test_rollouts.fb", "_partial_": True},
                 force_answer=True,
                 prover=ProverConfig(suffix="<answer>", answer_tokens=3), max_episodes=10)
    tr = make_trainer(tiny, tmp_path, ro)
    completion_ids, mask, completions = generate(tr)
    tok = tr.processing_class
    fb_ids = tok("[fb]", add_special_tokens=False)["input_ids"]
    for ids, m, text, s in zip(completion_ids, mask, completions, tr.streams):
        thinking, forced = s.thinking, s.forced
        assert len(ids) == len(m)
        assert thinking <= CAP
        policy = [t for t, k in zip(ids, m) if k == 1]
        inserted = [t for t, k in zip(ids, m) if k == 0]
        assert text.count("[fb]") >= 1 or len(policy) <= 5
        assert inserted[: len(fb_ids)] == fb_ids or not inserted
        suffix = tok("<answer>", add_special_tokens=False)["input_ids"]
        if forced:  # did not end on its own: masked suffix, then at most answer_tokens policy tokens
            assert ids[thinking:thinking + len(suffix)] == suffix and m[thinking:thinking + len(suffix)] == [0] * 8
            assert len(ids) - thinking - len(suffix) <= 3
        else:  # thinking counts policy tokens and inserted feedback alike
            assert len(ids) == thinking


def test_budget_forcing_replaces_early_stops_with_a_masked_continuation(tiny, tmp_path, monkeypatch):
    _, tok = tiny
    eos = tok.eos_token_id
    backend = ScriptedBackend(tok, lambda ctx: "")  # the policy stops at once, every time

    @contextlib.contextmanager
    def scripted(trainer, kind="transformers", batch_size=64):
        yield backend

    monkeypatch.setattr(grpo_module, "trainer_backend", scripted)
    ro = Rollout(mode="budget_forcing", cap=CAP, continuation="Wait", max_continuations=2, force_answer=False)
    tr = make_trainer(tiny, tmp_path, ro)
    completion_ids, mask, completions = generate(tr)
    wait = tok("Wait", add_special_tokens=False)["input_ids"]
    for ids, m, text, thinking in zip(completion_ids, mask, completions, [s.thinking for s in tr.streams]):
        assert text == "WaitWait"  # two early stops replaced by the continuation, then the final stop
        assert ids == wait + wait + [eos]
        assert m == [0] * (2 * len(wait)) + [1]  # inserted text is masked out of the loss
        assert thinking == 2 * len(wait) + 1  # and counts against the cap (the engine's one rule)


def test_rollout_rejects_bad_settings():
    with pytest.raises(ValueError, match="mode"):
        Rollout(mode="nope")
    with pytest.raises(ValueError, match="cap"):
        Rollout(cap=0)


def test_feedback_reads_the_gold_answer_of_its_row(tiny, tmp_path):
    """The gold answer comes from each stream's own row (kept by the trainer), so one prompt may have two answers."""
    ro = Rollout(mode="episodes", cap=CAP, episode_tokens=4, feedback=fb_answer, max_episodes=3)
    tr = make_trainer(tiny, tmp_path, ro)
    completions = generate(tr, ("7",) * 4 + ("8",) * 4)[2]
    assert all("[7]" in c for c in completions[:4]) and all("[8]" in c for c in completions[4:])
    completions = generate(tr, ("1", "2") * 4)[2]  # Q0 and Q1 each with two different answers
    assert all(f"[{1 + i % 2}]" in c for i, c in enumerate(completions))
