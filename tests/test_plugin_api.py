"""The light plug-in API: a TRL reward function selected by its dotted path, an episode reward that needs only
``@reward``, and batched estimators that get the model / engine they ask for or a clear error."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from metarl.cli.score import score_file
from metarl.config import conf_dir
from metarl.engine import Engine
from metarl.registry import ConfigError
from metarl.models.tiny import build_char_tokenizer
from metarl.rewards import RewardError, build_reward, build_rewards, reward, reward_spec
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer
from metarl.segmenters import TagSegmenter, TokenChunkSegmenter
from metarl.types import Trace

CALLS: list[dict] = []


def length_score(completions, answer, **kwargs):
    """A TRL reward function, written for TRL: one float per completion, None where there is no gold answer."""
    CALLS.append({"completions": completions, "answer": answer, **kwargs})
    return [None if a is None else len(c) / 8 for c, a in zip(completions, answer)]


def too_few(completions, **kwargs):
    return [1.0] * (len(completions) - 1)


def not_numbers(completions, **kwargs):
    return ["high"] * len(completions)


def first_message(prompts, completions, **kwargs):
    CALLS.append({"prompts": prompts, "completions": completions})
    return [float(len(c[0]["content"])) for c in completions]


@reward("episode")
def short_episode(episode, index):
    """Episode reward: 1 / length, none for the first episode."""
    return None if index == 0 else 1.0 / len(episode.text)


class AsksForEngine:
    """A batched trace estimator asking for the policy's engine by name, with no other declaration."""

    level = "trace"

    def __init__(self):
        self.engines = []

    def score_batch(self, traces, engine):
        self.engines.append(engine)
        return [1.0 for _ in traces]


class AsksForModel:
    level = "episode"

    def score_batch(self, traces, model, tokenizer):
        return [[float(model is not None and tokenizer is not None)] * len(t.episodes) for t in traces]


def _cfg(overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose("score", overrides=overrides)


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"prompt": "2+2?", "completion": "<attempt>4</attempt><verify>ok</verify>", "answer": "4", "difficulty": "easy"},
    {"prompt": "3*3?", "completion": "<attempt>6</attempt><verify>no</verify><revise>9</revise>", "answer": 9,
     "difficulty": "hard", "target_tokens": 40},
    {"prompt": "no key", "completion": "<attempt>1</attempt>"},
]


def test_trl_reward_function_by_dotted_path_in_metarl_score(tmp_path):
    CALLS.clear()
    out = tmp_path / "o.jsonl"
    score_file(_cfg([f"input={_write(tmp_path / 'in.jsonl', ROWS)}", f"output={out}", "rewards=[]",
                     "+rewards.mine=test_plugin_api.length_score", "objective.outcome_reward=mine",
                     "objective.alpha=0.5"]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row, src in zip(rows[:2], ROWS):
        assert row["rewards"]["mine"] == len(src["completion"]) / 8  # exactly the function's number
        assert row["rewards"]["total"] == 0.5 * len(src["completion"]) / 8  # the outcome term, times alpha
    assert "mine" not in rows[2]["rewards"] and rows[2]["rewards"]["total"] == 0.0  # None: skipped
    (call,) = CALLS  # once per batch, with what TRL would pass
    assert call["prompts"] == [r["prompt"] for r in ROWS]
    assert call["completions"] == [r["completion"] for r in ROWS]
    assert call["answer"] == ["4", "9", None] and call["difficulty"] == ["easy", "hard", None]
    assert call["target_tokens"] == [None, 40, None]
    assert call["completion_ids"] == [None, None, None]  # no tokenizer, no ids in the input
    CALLS.clear()
    score_file(_cfg([f"input={_write(tmp_path / 'in.jsonl', ROWS)}", f"output={out}", "rewards=[]",
                     "+rewards.mine=test_plugin_api.length_score", "tokenizer=char"]))
    tok = build_char_tokenizer()  # with a tokenizer, the completion's ids
    assert CALLS[0]["completion_ids"] == [tok(r["completion"], add_special_tokens=False)["input_ids"] for r in ROWS]


def _scorer(rewards, **objective):
    return Scorer(TagSegmenter(), build_rewards(rewards), lambda p, a, prompt="": p == a,
                  lambda t: None, lambda t: None, Objective(**objective))


def _traces():
    return [Trace(prompt="q", completion="<attempt>1</attempt>", answer="1"),
            Trace(prompt="r", completion="<attempt>22</attempt>", answer="2")]


@pytest.mark.parametrize("fn, message", [
    ("too_few", r"TRL reward function test_plugin_api\.too_few returned 1 values for 2 completions"),
    ("not_numbers", r"TRL reward function test_plugin_api\.not_numbers returned str 'high' for completion 0; "
                    r"each entry must be a number"),
])
def test_a_bad_return_names_the_function(fn, message):
    with pytest.raises(RewardError, match=message):
        _scorer([f"test_plugin_api.{fn}"]).score(_traces())


def test_conversational_prompts_get_messages_as_trl_gives_them():
    CALLS.clear()
    messages = [{"role": "user", "content": "q"}]
    traces = _traces()
    for t in traces:
        t.meta["input"] = {"prompt": messages, "answer": t.answer}
    s = _scorer(["test_plugin_api.first_message"])
    s.score(traces)
    assert CALLS[0]["prompts"] == [messages, messages]
    assert CALLS[0]["completions"] == [[{"role": "assistant", "content": t.completion}] for t in traces]
    assert [t.rewards["first_message"] for t in traces] == [float(len(t.completion)) for t in traces]


def test_the_dotted_path_alone_is_for_functions():
    r = build_reward("test_plugin_api.length_score")
    assert (r.name, r.level, r.batched) == ("length_score", "trace", True)
    with pytest.raises(ConfigError, match=r"rewards\.x='test_plugin_api\.AsksForEngine': .*is a class, built with "
                                          r"its options: rewards\.x='\{_target_: test_plugin_api\.AsksForEngine\}'"):
        reward_spec("x", "test_plugin_api.AsksForEngine")
    with pytest.raises(ConfigError, match=r"rewards\.x='test_plugin_api\.nope': .*cannot be imported"):
        reward_spec("x", "test_plugin_api.nope")
    with pytest.raises(ConfigError, match=r"TRL reward function.*trace-level"):
        build_reward({"_target_": "test_plugin_api.length_score", "_partial_": True, "level": "episode"})


def test_episode_reward_needs_only_the_decorator_and_its_path(tmp_path):
    out = tmp_path / "o.jsonl"
    score_file(_cfg([f"input={_write(tmp_path / 'in.jsonl', ROWS)}", f"output={out}", "rewards=[]",
                     "+rewards.short=test_plugin_api.short_episode"]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    eps = rows[1]["episodes"]
    assert [e["rewards"].get("short") for e in eps] == [None, 1.0 / len(eps[1]["text"]), 1.0 / len(eps[2]["text"])]
    assert rows[1]["rewards"]["dense"] == sum(1.0 / len(e["text"]) for e in eps[1:])


def test_an_estimator_asking_for_engine_or_model_without_one_is_refused(tmp_path):
    src = _write(tmp_path / "in.jsonl", ROWS)
    for target in ("AsksForEngine", "AsksForModel"):
        with pytest.raises(ConfigError, match=rf"rewards \['x'\] need a model: add model=tiny"):
            score_file(_cfg([f"input={src}", f"output={tmp_path / 'o.jsonl'}", "rewards=[]",
                             f"+rewards.x._target_=test_plugin_api.{target}"]))
    with pytest.raises(ConfigError, match=r"rewards \['AsksForEngine'\] ask for the policy's generation engine"):
        _scorer([AsksForEngine()]).score(_traces())
    with pytest.raises(ConfigError, match=r"rewards \['AsksForModel'\] ask for a model"):
        _scorer([AsksForModel()]).score(_traces())


class OptionalEngine:
    level = "trace"

    def score_batch(self, traces, engine="no engine"):
        return [float(engine == "no engine") for _ in traces]


def test_an_optional_engine_gets_its_default_not_none():
    from metarl.rewards import apply_reward

    traces = _scorer([OptionalEngine()]).score(_traces())
    assert [t.rewards["OptionalEngine"] for t in traces] == [1.0, 1.0]
    (needs_engine,) = build_rewards([AsksForEngine()])
    with pytest.raises(ConfigError, match=r"rewards \['AsksForEngine'\] ask for the policy's generation engine, which "
                                          r"this app has none"):
        apply_reward(needs_engine, _traces(), {"engine": None, "grader": None})


def test_an_estimator_asking_for_engine_or_model_gets_it(tiny):
    from metarl.engine.hf import HFBackend

    model, tok = tiny
    engine, needs_model = AsksForEngine(), AsksForModel()
    s = _scorer([engine, needs_model])
    assert [r.needs for r in s.rewards] == [("engine",), ("model", "tokenizer")]
    s.model, s.tokenizer = model, tok
    traces = s.score(_traces(), backend=HFBackend(model, tok, 8))
    assert isinstance(engine.engines[0], Engine)
    assert all(t.rewards["AsksForEngine"] == 1.0 for t in traces)
    assert all(e.rewards["AsksForModel"] == 1.0 for t in traces for e in t.episodes)


# ----------------------------------------------------------------- through the trainer, against TRL itself
from tests.test_trainer import config as _args, dataset as _dataset  # noqa: E402  (TRL's GRPO settings, shared)


def _metarl_scorer(rewards, tok, **objective):
    return Scorer(segmenter=TokenChunkSegmenter(k=4), rewards=build_rewards(rewards), grader=lambda p, a, prompt="": 0,
                  extract_answer=lambda t: t, parse_verdict=lambda t: None, objective=Objective(**objective),
                  tokenizer=tok)


def _spread(completions, answer):
    return [(len(c) % 3) / 2 + (a in c) for c, a in zip(completions, answer)]


def spread(completions, answer, completion_ids, **kwargs):
    """A TRL reward function with spread on a random model."""
    CALLS.append({"completions": completions, "answer": answer, "completion_ids": completion_ids, **kwargs})
    return _spread(completions, answer)


def test_a_trl_reward_function_trains_as_in_trl(tiny, tmp_path):
    """The same function as TRL's reward and as metarl's outcome term: the same arguments, the same update."""
    from trl import GRPOTrainer

    from metarl.trainer.grpo import MetaRLTrainer

    model, tok = tiny
    CALLS.clear()
    ref = GRPOTrainer(model=copy.deepcopy(model).train(), reward_funcs=[spread], args=_args(tmp_path / "trl"),
                      train_dataset=_dataset(), processing_class=tok)
    ref.train()
    trl_calls = list(CALLS)
    CALLS.clear()
    ours = MetaRLTrainer(model=copy.deepcopy(model).train(), args=_args(tmp_path / "metarl"), train_dataset=_dataset(),
                         processing_class=tok,
                         scorer=_metarl_scorer(["test_plugin_api.spread"], tok, outcome_reward="spread"))
    ours.train()
    assert len(CALLS) == len(trl_calls) == 2
    for mine, theirs in zip(CALLS, trl_calls):
        assert set(theirs) - set(mine) == {"trainer_state", "log_extra", "log_metric"}  # TRL's trainer hooks
        assert set(mine) <= set(theirs)
        for k in mine:
            assert mine[k] == theirs[k], k
    assert any(len(set(_spread(c["completions"], c["answer"]))) > 1 for c in trl_calls), "the reward needs spread"
    a, b = dict(ref.model.named_parameters()), dict(ours.model.named_parameters())
    assert any(not torch.equal(a[k], dict(model.named_parameters())[k]) for k in a), "the update must not be trivial"
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"parameter {k} differs from TRL")


def test_an_estimator_asking_for_engine_gets_it_in_training(tiny, tmp_path):
    from metarl.trainer.grpo import MetaRLTrainer

    model, tok = tiny
    probe = AsksForEngine()
    t = MetaRLTrainer(model=copy.deepcopy(model).train(), args=_args(tmp_path, max_steps=1), train_dataset=_dataset(),
                      processing_class=tok, scorer=_metarl_scorer([outcome, probe], tok))
    t.train()
    assert probe.engines and all(isinstance(e, Engine) for e in probe.engines)


def test_metarl_train_with_a_trl_reward_function_by_dotted_path(tmp_path):
    """``metarl-train recipe=... +rewards.mine=module.fn``: the function's numbers are the traces' outcome term."""
    from metarl.config import compose as metarl_compose
    from metarl.trainer.run import run

    CALLS.clear()
    run_dir = tmp_path / "run"
    run(metarl_compose("train", [
        "recipe=obj1_verify", "name=trl", f"run_dir={run_dir}", "model=random-tiny", "trainer.max_steps=1",
        "evaluate.enabled=false", "task.n_train=8", "trainer.per_device_train_batch_size=4",
        "trainer.num_generations=2", "budget.cap=16", "rollouts_every=1", "rollouts_per_step=4", "threads=1",
        "+rewards.mine=test_plugin_api.length_score", "objective.outcome_reward=mine", "objective.alpha=0.5"]))
    rows = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and CALLS
    for r in rows:
        assert r["rewards"]["mine"] == len(r["completion"]) / 8
        assert r["rewards"]["total"] == r["rewards"]["dense"] + 0.5 * r["rewards"]["mine"]
        assert "input" not in r["meta"]  # the dataset row stays out of the rollout log
    call = CALLS[0]
    assert call["answer"][: 4] == [r["answer"] for r in rows]  # the dataset's own column
    assert [len(c) / 8 for c in call["completions"][:4]] == [r["rewards"]["mine"] for r in rows]
    assert all(isinstance(ids, list) and ids for ids in call["completion_ids"])
