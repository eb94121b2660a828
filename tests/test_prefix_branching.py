"""MRT's prefix-branching rollout: grouping, the prefix as context, masks, the buffer, and TRL's joint advantage."""
from __future__ import annotations

import contextlib
from pathlib import Path
import copy
import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig

import metarl.trainer.grpo as grpo_module
from metarl.engine import Sampling, prompt_ids_for
from metarl.prover import ProverConfig
from metarl.registry import ConfigError
from metarl.rewards import build_rewards
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer
from metarl.segmenters import TagSegmenter
from metarl.trainer.grpo import MetaRLTrainer
from metarl.trainer.rollout import Rollout, trl_output
from tests.scripted import ScriptedBackend

TAGS = ProverConfig(suffix="<answer>", answer_tokens=4, answer_stop=("</answer>",))
CAP = 120
FULL = "<attempt>1+2</attempt><verify>no</verify><revise>3+4</revise><answer>3+4</answer>"  # four episodes


def rule(ctx: str) -> str:
    """The policy: after the termination suffix it answers 9 (wrong) unless the prefix reached <revise>, where it
    answers 3+4 (right); a bare prompt writes FULL; a prompt that ends with a prefix writes the rest of FULL."""
    if ctx.endswith("<answer>"):
        return "3+4</answer>" if "<revise>" in ctx else "9</answer>"
    done = ctx.split("\n", 1)[1] if "\n" in ctx else ""
    return FULL[len(done):]


def scorer_for(tok):
    return Scorer(TagSegmenter(), build_rewards([outcome]), lambda p, a, q="": p == a,
                  lambda t: t.split("<answer>")[-1].split("</answer>")[0] if "<answer>" in t else None,
                  lambda t: None, Objective(), tokenizer=tok, prover=TAGS)


def branched(tok, prompts, backend, **kw):
    scorer = scorer_for(tok)
    ro = Rollout(mode="prefix_branching", cap=CAP, prover=TAGS, segment=scorer.segment, **kw)
    ids = [prompt_ids_for(tok, p) for p in prompts]
    return ro, ro.generate(backend, ids, Sampling(1.0))


def test_each_group_branches_from_one_prefix_at_an_episode_boundary(tiny):
    _, tok = tiny
    prompts = ["Q1\n"] * 4 + ["Q2\n"] * 4
    torch.manual_seed(0)
    _, streams = branched(tok, prompts, ScriptedBackend(tok, rule), terminate=1)
    assert len(streams) == 8
    bounds = {0: "", 1: "<attempt>1+2</attempt>", 2: "<attempt>1+2</attempt><verify>no</verify>",
              3: "<attempt>1+2</attempt><verify>no</verify><revise>3+4</revise>"}
    for g in (streams[:4], streams[4:]):
        b = g[0].branch
        assert {s.branch.text for s in g} == {b.text} and b.text == bounds[b.episodes]  # one prefix, cut at a boundary
        assert [s.branch.terminating for s in g] == [True, False, False, False]  # terminate=1 first, then 3 continue
        assert all(s.prompt_ids[-b.tokens:] == tok(b.text, add_special_tokens=False)["input_ids"] for s in g if b.tokens)
        stop, *going = g
        # the terminating stream answers at once: the masked suffix, then the (trained) answer
        assert stop.thinking == 0 and stop.forced and stop.text.startswith("<answer>")
        suffix = len(tok("<answer>", add_special_tokens=False)["input_ids"])
        assert stop.mask[:suffix] == [0] * suffix and all(stop.mask[suffix:])
        for s in going:  # the rest of the thought, within what the cap leaves after the prefix
            assert b.text + s.text == FULL and s.thinking == len(FULL) + 1 - b.tokens <= CAP - b.tokens  # + EOS
            assert all(s.mask) and not s.forced
    out = trl_output(streams)
    assert out["prompt_ids"] == [s.prompt_ids for s in streams]  # the prefix is context: never a completion id
    assert out["env_mask"] == [s.mask for s in streams]


def test_prefix_length_is_drawn_over_every_episode_count(tiny):
    _, tok = tiny
    seen = set()
    torch.manual_seed(1)
    for _ in range(30):
        _, streams = branched(tok, ["Q1\n"] * 2, ScriptedBackend(tok, rule))
        seen.add(streams[0].branch.episodes)
    assert seen == {0, 1, 2, 3}  # j uniform over 0..K-1 for K = 4 episodes: never the whole thought


def test_a_continuation_that_reaches_the_cap_gets_a_forced_answer(tiny):
    _, tok = tiny
    long = lambda ctx: "9</answer>" if ctx.endswith("<answer>") else "<attempt>" + "x" * 200  # noqa: E731
    torch.manual_seed(0)
    _, (stop, go) = branched(tok, ["Q\n"] * 2, ScriptedBackend(tok, long))
    assert stop.branch.tokens == 0 and go.thinking == CAP and go.forced  # one episode: the prefix is empty


def test_the_buffer_gives_a_stale_prefix_from_an_earlier_step(tiny):
    _, tok = tiny
    backend = ScriptedBackend(tok, rule)
    torch.manual_seed(0)
    ro, first = branched(tok, ["Q1\n"] * 2, backend, prefix_source="buffer")
    stored = ro.buffer[tuple(prompt_ids_for(tok, "Q1\n"))]
    assert stored.text == FULL
    # a later step: the policy now writes something else, but the prefix still comes from the stored rollout
    backend.rule = lambda ctx: "9</answer>" if ctx.endswith("<answer>") else "<attempt>5+5</attempt>"
    for _ in range(5):
        streams = ro.generate(backend, [prompt_ids_for(tok, "Q1\n")] * 2, Sampling(1.0))
        assert FULL.startswith(streams[0].branch.text)
    ro_now = Rollout(mode="prefix_branching", cap=CAP, prover=TAGS, segment=scorer_for(tok).segment)
    assert not ro_now.buffer  # prefix_source=current keeps nothing


def trainer(tiny, tmp_path, **args):
    model, tok = tiny
    scorer = scorer_for(tok)
    ro = Rollout(mode="prefix_branching", cap=CAP, prover=TAGS, segment=scorer.segment, terminate=2)
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                max_completion_length=CAP, max_steps=1, learning_rate=1e-3, report_to=[], use_cpu=True,
                save_strategy="no", seed=0, bf16=False, beta=0.0, disable_tqdm=True)
    base.update(args)
    data = Dataset.from_list([{"prompt": "Q1\n", "answer": "3+4"}])
    return MetaRLTrainer(model=copy.deepcopy(model), args=GRPOConfig(**base), train_dataset=data,
                         processing_class=tok, scorer=scorer, rollout=ro)


def test_the_group_is_normalised_jointly_by_trls_advantage(tiny, tmp_path, monkeypatch):
    """The prefix keeps <attempt>1+2</attempt><verify>no</verify>: the two terminating streams answer 9 (wrong),
    the two continuations revise to 3+4 and answer it (right): rewards 0, 0, 1, 1, one group, so TRL's advantage
    is -a, -a, +a, +a with a = 0.5 / (Bessel std + 1e-4)."""
    _, tok = tiny
    backend = ScriptedBackend(tok, rule)

    @contextlib.contextmanager
    def scripted(trainer, kind="transformers", batch_size=64):
        yield backend

    monkeypatch.setattr(grpo_module, "trainer_backend", scripted)
    monkeypatch.setattr(Rollout, "draw", staticmethod(lambda k: 2))
    t = trainer(tiny, tmp_path)
    out = t._generate_and_score_completions([{"prompt": "Q1\n", "answer": "3+4"} for _ in range(4)])
    assert [s.branch.terminating for s in t.streams] == [True, True, False, False]
    assert [tr.outcome for tr in t.traces] == [0.0, 0.0, 1.0, 1.0]
    a = 0.5 / (math.sqrt(4 * 0.25 / 3) + 1e-4)
    assert out["advantages"].tolist() == pytest.approx([-a, -a, a, a], rel=1e-5)
    prefix = tok("<attempt>1+2</attempt><verify>no</verify>", add_special_tokens=False)["input_ids"]
    for row, s in zip(out["prompt_ids"].tolist(), t.streams):  # the prefix sits in the (left-padded) prompt
        assert row[-len(prefix):] == prefix and s.prompt_ids[-len(prefix):] == prefix
    assert all(tr.prompt == "Q1\n<attempt>1+2</attempt><verify>no</verify>" for tr in t.traces)


def test_a_group_split_across_processes_is_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match="per_device_train_batch_size=2 must be a multiple of trainer.num_generations=4"):
        trainer(tiny, tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2)


def test_prefix_branching_needs_the_segmenter():
    with pytest.raises(ValueError, match="pass segment="):
        Rollout(mode="prefix_branching", cap=8)
    with pytest.raises(ConfigError, match="rollout.prefix_source"):
        Rollout(mode="prefix_branching", cap=8, prefix_source="old", segment=lambda t: t)


def test_engine_expand_is_one_request_with_n_samples(tiny):
    """The continuations of one prefix are one backend request with n samples (vLLM shares its KV cache)."""
    _, tok = tiny
    backend = ScriptedBackend(tok, rule)
    torch.manual_seed(0)
    _, streams = branched(tok, ["Q1\n"] * 4, backend, terminate=1)
    assert sum(not s.branch.terminating for s in streams) == 3
    assert backend.calls == [1, 1, 1]  # requests per call: the base rollout, the forced answer, 3 continuations


def test_mrt_prefix_on_mrts_gpu_setting_by_configuration_only(tmp_path):
    """``recipe=mrt_r1_gpu rollout=prefix_branching``: MRT's R1 setting with the prefix-branching rollout, trained
    one step with a tiny stand-in model on the CPU (the overrides only shrink it)."""
    import json

    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.trainer.run import run

    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": f"So \\boxed{{{2 * i}}}."}) + "\n"
                            for i in range(8)))
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=[
            "recipe=mrt_r1_gpu", "rollout=prefix_branching", "rewards.mc_progress.m=2", f"task.source={data}",
            "model=random-tiny", "model.name_or_path=random-tiny", "model.dtype=float32", "trainer=cpu",
            "generation.backend=transformers", "budget.cap=24", "prover.answer_tokens=6", "trainer.max_steps=1",
            "trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "evaluate.enabled=false",
            "rollouts_every=1", "name=mrt_prefix_r1", f"run_dir={tmp_path / 'run'}"])
    summary = run(cfg)
    rows = [json.loads(line) for line in (Path(summary["run_dir"]) / "rollouts.jsonl").read_text().splitlines()]
    assert [r["branch"]["terminating"] for r in rows[:4]] == [True, True, False, False]
    assert len({r["branch"]["text"] for r in rows[:4]}) == 1  # one prefix per group
    stop = rows[0]
    assert stop["thinking_tokens"] == 0 and stop["forced"] and "Time is up." in stop["completion"]
