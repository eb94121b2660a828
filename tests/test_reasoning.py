"""R1-style traces: thinking and answer regions, MRT's meta-prover (checked against the contexts MRT's own code
builds), the answer region's credit, R1 streams in the engine, and MRT's regret axis."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from metarl.credit import STOP_KIND
from metarl.engine import Engine, Sampling, StreamSpec
from metarl.metrics import area_under_curve, curve_from_trace, mrt_area, normalized_regret
from metarl.prover import R1_PROVER, R1_TERMINATION_SUFFIX, THINK_END, ProverConfig
from metarl.rewards import build_rewards
from metarl.rewards.obj1 import generation_correctness
from metarl.rewards.progress import MCProgress
from metarl.scoring import Scorer
from metarl.segmenters import MRTSegmenter
from metarl.trainer.step import credit_of
from metarl.types import Trace
from tests.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
THOUGHT = ("<think>\nLet me try 3+9.\n\n3+9=12, not 20.\n\nSo 3+9 is wrong.\n\n"
           "Wait, try 8+12.\n\n8+12=20.\n\nThat works.\n")
ANSWER = "</think>\n\nThe numbers 8 and 12 add up to 20.\n\n\\boxed{8+12}"


def r1_scorer(tok, rewards=(), **kw) -> Scorer:
    return Scorer(MRTSegmenter(), build_rewards(list(rewards)), lambda p, a, q="": p == a, lambda t: boxed(t),
                  lambda t: None, tokenizer=tok, prover=R1_PROVER, **kw)


def boxed(text: str) -> str | None:
    i = text.rfind("\\boxed{")
    return None if i < 0 else text[i + 7:text.find("}", i)]


def trace_of(tok, completion: str, prompt: str = "Q: 8 12 3 9 -> 20\n") -> Trace:
    return Trace(prompt, completion, answer="8+12", completion_ids=tok(completion, add_special_tokens=False)["input_ids"],
                 prompt_ids=tok(prompt, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- where the answer region starts

@pytest.mark.parametrize("completion, start, closed", [
    (THOUGHT + ANSWER, len(THOUGHT), True),                                   # closed by the model
    (THOUGHT + "</think>x</think>y", len(THOUGHT), True),                     # repeated: the first one
    (THOUGHT, None, False),                                                   # missing (cut, not forced): all thinking
    (THOUGHT[:30] + R1_TERMINATION_SUFFIX + "Try 8+12:** \\boxed{8+12}", 30, False),  # cut by the cap, forced
    ("</think>\n\\boxed{1}", 0, True),                                        # an empty thought
])
def test_answer_region_rules(completion, start, closed):
    assert R1_PROVER.answer_start(completion) == start
    assert R1_PROVER.closes_thought(completion) is closed
    assert ProverConfig().answer_start(completion) is None  # the tag format has no answer region


def test_episodes_cover_the_thinking_only(tiny):
    _, tok = tiny
    for completion in (THOUGHT + ANSWER, THOUGHT + "</think>a</think>b", THOUGHT,
                       THOUGHT[:30] + R1_TERMINATION_SUFFIX + "8+12"):
        t = trace_of(tok, completion)
        r1_scorer(tok).segment(t)
        start = R1_PROVER.answer_start(completion)
        assert t.answer_start == start and t.thinking == completion[:start]
        assert "".join(e.text for e in t.episodes) == t.thinking  # the partition holds on the thinking
        t.check()  # token spans too: they end where the answer region's tokens begin
        assert t.answer_token_start == (None if start is None else start)  # one token per character
        assert t.episodes[-1].token_end == t.num_thinking_tokens
    t = trace_of(tok, THOUGHT + ANSWER)
    r1_scorer(tok).segment(t)
    assert [e.text.split("\n\n")[0] for e in t.episodes] == ["<think>\nLet me try 3+9.", "Wait, try 8+12."]
    assert t.to_dict()["answer_start"] == len(THOUGHT)


def test_score_cli_shows_the_answer_region(tmp_path):
    src = tmp_path / "r1.jsonl"
    src.write_text(json.dumps({"prompt": "Q", "completion": THOUGHT + ANSWER, "answer": "20"}) + "\n"
                   + json.dumps({"prompt": "Q", "completion": THOUGHT, "answer": "20"}) + "\n")
    out = tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-m", "metarl.cli.score", f"input={src}", f"output={out}", "segmenter=mrt",
                    "prover=r1", "rewards=[]", f"run_dir={tmp_path / 'run'}"], cwd=ROOT, check=True,
                   capture_output=True)
    closed, cut = [json.loads(line) for line in out.read_text().splitlines()]
    assert closed["answer_region"] == {"start": len(THOUGHT), "end": len(THOUGHT + ANSWER), "text": ANSWER}
    assert "".join(e["text"] for e in closed["episodes"]) == THOUGHT and len(closed["episodes"]) == 2
    assert "answer_region" not in cut and "".join(e["text"] for e in cut["episodes"]) == THOUGHT


# --------------------------------------------------------------------------- MRT's meta-prover

class Recorder(ScriptedBackend):
    """A scripted backend that records every branch context, decoded."""

    def __init__(self, tok, rule):
        super().__init__(tok, rule)
        self.contexts: list[str] = []

    def branch(self, sequences, prefixes, n, max_tokens, stop, sampling, seed=None):
        self.contexts += [self.tokenizer.decode(list(seq[:p.length]) + list(p.suffix)) for seq, ps in
                          zip(sequences, prefixes) for p in ps]
        return super().branch(sequences, prefixes, n, max_tokens, stop, sampling, seed)


def mrt_contexts(problem: str, thought_episodes: list[str]) -> list[str]:
    """The texts MRT's ``pass_at_k_given_prefix.py`` sends to vLLM for one response (its chat template left
    out): the empty prefix and every intermediate one with the "Time is up." suffix (episodes joined by
    blank lines, then a blank line), the full thought with ``"\\n</think>"``."""
    texts = [problem + "" + R1_TERMINATION_SUFFIX]
    for i in range(len(thought_episodes) - 1):
        texts.append(problem + "\n\n".join(thought_episodes[:i + 1]) + "\n\n" + R1_TERMINATION_SUFFIX)
    texts.append(problem + "\n\n".join(thought_episodes) + "\n</think>")
    return texts


def test_branch_contexts_are_mrts(tiny):
    """MRT's episodes are the thought's paragraphs grouped at keyword boundaries; metarl's MC progress asks μ
    the same questions, character for character."""
    _, tok = tiny
    backend = Recorder(tok, lambda ctx: "8+12:** \\boxed{8+12}")
    t = trace_of(tok, THOUGHT + ANSWER, prompt="Q: 8 12 3 9 -> 20\n")
    scorer = r1_scorer(tok, [{"_target_": "metarl.rewards.progress.MCProgress", "m": 2, "seed": 0}], backend=backend)
    scorer.score([t])
    episodes = ["<think>\nLet me try 3+9.\n\n3+9=12, not 20.\n\nSo 3+9 is wrong.",
                "Wait, try 8+12.\n\n8+12=20.\n\nThat works."]
    assert backend.contexts == mrt_contexts(t.prompt, episodes)
    assert t.meta["J_init"] == 1.0 and [e.info["J"] for e in t.episodes] == [1.0, 1.0]
    assert [e.info["final"] for e in t.episodes] == [False, True]


def test_grading_with_the_context_is_mrts_choice(tiny):
    """extract='full' grades prompt + prefix + suffix + forced answer (MRT's grader call), so an answer the
    prefix already boxed counts; extract='context' grades the suffix and forced text only."""
    _, tok = tiny
    thought = "<think>\nSo \\boxed{8+12}.\n\nHmm.\n\nOk.\n\nWait, more.\n\nMore.\n\nDone.\n"
    backend = ScriptedBackend(tok, lambda ctx: "no idea")
    rates = {}
    for mode in ("full", "context"):
        t = trace_of(tok, thought + "</think>\n\nno answer")
        r1_scorer(tok).segment(t)
        rates[mode] = MCProgress(m=2, extract=mode, seed=0).success_rates([t], Engine(backend, R1_PROVER),
                                                                           lambda p, a, q="": p == a, boxed)[0]
    assert rates["full"] == [0.0, 1.0, 1.0] and rates["context"] == [0.0, 0.0, 0.0]


def test_progress_telescopes_on_an_r1_trace(tiny):
    _, tok = tiny
    answers = iter(["\\boxed{3+9}", "\\boxed{3+9}", "\\boxed{8+12}", "\\boxed{3+9}", "\\boxed{8+12}", "\\boxed{8+12}"])
    backend = ScriptedBackend(tok, lambda ctx: next(answers))
    t = trace_of(tok, THOUGHT + ANSWER)
    r1_scorer(tok, [{"_target_": "metarl.rewards.progress.MCProgress", "m": 2, "seed": 0}], backend=backend).score([t])
    deltas = [e.rewards["mc_progress"] for e in t.episodes]
    assert t.meta["J_init"] == 0.0 and [e.info["J"] for e in t.episodes] == [0.5, 1.0]
    assert sum(deltas) == pytest.approx(t.episodes[-1].info["J"] - t.meta["J_init"])


@pytest.mark.parametrize("full_thought", ["think_end", "suffix"])
def test_likelihood_of_the_full_thought_after_think_end_or_the_suffix(tiny, full_thought):
    """The last L_j of a closed R1 trace scores the answer after the trace's own </think> (MRT's choice) or, with
    full_thought="suffix", after the termination suffix like every other prefix: checked against a plain
    forward pass over prompt + thought + that text + answer."""
    import torch

    from metarl.rewards.progress import LikelihoodProgress

    model, tok = tiny
    t = trace_of(tok, THOUGHT + ANSWER)
    r1_scorer(tok).segment(t)
    est = LikelihoodProgress(answer_template="\\boxed{{{answer}}}", mode="naive", full_thought=full_thought)
    ls = est.log_likelihoods([t], model, tok, R1_PROVER)[0]
    between = THINK_END if full_thought == "think_end" else R1_TERMINATION_SUFFIX
    context = t.prompt_ids + t.completion_ids[:t.answer_token_start] + tok(between, add_special_tokens=False)["input_ids"]
    answer = tok("\\boxed{8+12}", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([context + answer])).logits[0].log_softmax(-1)
    direct = sum(float(logits[len(context) + i - 1, a]) for i, a in enumerate(answer))
    assert ls[-1] == pytest.approx(direct, abs=1e-4)
    with pytest.raises(ValueError, match="full_thought"):
        LikelihoodProgress(full_thought="both")


# --------------------------------------------------------------------------- the answer region's credit

def test_the_answer_region_is_credited_with_the_outcome_only(tiny):
    _, tok = tiny
    t = trace_of(tok, THOUGHT + ANSWER)
    scorer = r1_scorer(tok, [generation_correctness])
    scorer.score([t])
    s = credit_of(t, scorer, frozenset({tok.eos_token_id}))
    n = len(t.completion_ids)
    assert s.spans == [(0, t.episodes[0].token_end), (t.episodes[0].token_end, len(THOUGHT)), (len(THOUGHT), n)]
    assert s.kinds[-1] == STOP_KIND and len(s.dense) == 3 and s.dense[-1] == 0.0
    assert t.outcome == 1.0 and s.outcome_term == 1.0


# --------------------------------------------------------------------------- R1 streams in the engine

def r1_rule(ctx: str) -> str:
    if ctx.endswith("1. **") or ctx.endswith("</think>"):
        return "Answer:** \\boxed{8+12}"
    if "Q1" in ctx:
        return "think briefly</think>"  # closes its thought early
    return "x" * 200  # never stops thinking


def test_r1_streams_answer_after_the_thought_or_are_forced(tiny):
    _, tok = tiny
    prover = ProverConfig(suffix=R1_TERMINATION_SUFFIX, think_end=THINK_END, answer_tokens=6, answer_stop=())
    closed, cut = Engine(ScriptedBackend(tok, r1_rule), prover).run(
        [tok("Q1 ", add_special_tokens=False)["input_ids"], tok("Q2 ", add_special_tokens=False)["input_ids"]],
        StreamSpec(cap=40), Sampling(1.0))
    assert closed.closed and not closed.forced and closed.thinking == len("think briefly</think>")
    assert closed.text == "think briefly</think>Answer"  # its own answer: answer_tokens, not counted against C
    assert cut.forced and not cut.closed and cut.thinking == 40
    assert cut.text == "x" * 40 + R1_TERMINATION_SUFFIX + "Answer"
    assert cut.mask == [1] * 40 + [0] * len(R1_TERMINATION_SUFFIX) + [1] * 6


def test_budget_forcing_suppresses_the_end_of_thinking(tiny):
    """s1 on an R1 stream: the tokens that close the thought are replaced by "Wait" (counted against C)."""
    _, tok = tiny
    prover = ProverConfig(suffix=R1_TERMINATION_SUFFIX, think_end=THINK_END, answer_tokens=6, answer_stop=())
    backend = ScriptedBackend(tok, lambda ctx: "Answer:** \\boxed{1}" if ctx.endswith("</think>") else "ab</think>",
                              eos=False)
    (s,) = Engine(backend, prover).run([tok("Q ", add_special_tokens=False)["input_ids"]],
                                       StreamSpec(cap=30, continuation="Wait", max_continuations=2), Sampling(1.0))
    assert s.text == "abWaitabWaitab</think>Answer" and s.continuations == 2 and s.closed
    assert s.thinking == len("abWaitabWaitab</think>")


# --------------------------------------------------------------------------- MRT's regret axis

def mrt_notebook_area(x: list[float], y: list[float], cutoff: float) -> float:
    """The area computation of MRT's ``regret.ipynb`` for one response, on its own point lists."""
    y, x = [0] + list(y), np.array([0] + list(x))
    filtered_x = list(x[x < cutoff])
    if len(filtered_x) == len(x):
        return np.trapezoid(y + [y[-1]], list(x) + [cutoff]) / cutoff
    i = len(filtered_x) - 1
    y_i = y[i] + (cutoff - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i])
    return np.trapezoid(y[:i + 1] + [y_i], list(x[x < cutoff]) + [cutoff]) / cutoff


def test_mrt_regret_axis_matches_the_notebook():
    trace = {"meta": {"J_init": 0.25, "J_init_info": {"context_tokens": 40, "forced_tokens": 160}},
             "episodes": [{"kind": "attempt", "token_end": 30, "info": {"J": 0.5, "context_tokens": 70,
                                                                        "forced_tokens": 320}},
                          {"kind": "other", "token_end": 80, "info": {"J": 1.0, "context_tokens": 120,
                                                                      "forced_tokens": 96}}]}
    curve = curve_from_trace(trace, unit="mrt")
    assert curve.tokens == (0.0, 50.0, 90.0, 126.0) and curve.J == (0.0, 0.25, 0.5, 1.0)
    assert curve.levels == (0.25, 0.5, 1.0) and curve.episode_kinds == ("attempt", "other")
    for c0 in (60.0, 100.0, 200.0):
        expected = mrt_notebook_area([50, 90, 126], [0.25, 0.5, 1.0], c0)
        assert mrt_area(curve, c0) == pytest.approx(expected)
        assert mrt_area(curve, c0) == pytest.approx(area_under_curve(curve, c0) / c0)  # increasing x: the same
        assert normalized_regret(curve, c0) == pytest.approx(1 - expected)
    own = curve_from_trace(trace)  # metarl's axis: thinking tokens, from (0, J_init)
    assert own.tokens == (0.0, 30.0, 80.0) and own.J == (0.25, 0.5, 1.0)
    assert curve_from_trace({"episodes": trace["episodes"], "meta": {}}, unit="mrt").J == (0.0, 0.5, 1.0)


# --------------------------------------------------------------------------- MRT's published setting on a GPU

def test_the_gpu_recipe_composes_validates_and_trains_with_a_tiny_stand_in(tmp_path):
    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.trainer.run import run, validate

    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": f"So \\boxed{{{2 * i}}}."}) + "\n"
                            for i in range(8)))
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=["recipe=mrt_r1_gpu", f"task.source={data}"])
        small = compose("train", overrides=[
            "recipe=mrt_r1_gpu", "name=mrt_r1_gpu", f"task.source={data}", "model=random-tiny",
            "model.name_or_path=random-tiny",
            "model.dtype=float32", "trainer=cpu", "generation.backend=transformers", "budget.cap=24",
            "prover.answer_tokens=6", "rewards.mc_progress.m=2", "trainer.max_steps=1",
            "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "evaluate.enabled=false",
            f"run_dir={tmp_path / 'run'}"])
    # MRT's published setting, as composed
    assert cfg.model.name_or_path.startswith("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert cfg.budget.cap == 16384 and cfg.rewards.mc_progress.m == 4 and cfg.segmenter.max_episodes == 5
    assert cfg.prover.suffix == R1_TERMINATION_SUFFIX and cfg.prover.think_end == THINK_END
    assert cfg.generation.backend == "vllm" and cfg.trainer.bf16 and cfg.rewards.mc_progress.extract == "full"
    plan = validate(small)
    assert plan.prover.think_end == THINK_END and [r["answer"] for r in plan.train_rows[:2]] == ["0", "2"]
    summary = run(small)
    metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1] and "metarl/episode_reward/mc_progress" in metrics[0]
