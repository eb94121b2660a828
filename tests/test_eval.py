"""metarl-eval: test-time strategies at token budgets, difficulty bins, outputs, and the CLI end to end."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from metarl.engine.hf import HFBackend
from metarl.eval.difficulty import compute_difficulty, counts_from_samples, read_difficulty, write_difficulty
from metarl.eval.evaluate import derive_seed, evaluate_strategies
from metarl.eval.outputs import ALL, attach_bins, format_table, summarize
from metarl.eval.questions import read_questions_jsonl
from metarl.eval.sampling import PARALLEL, Generation, PolicySampler, Sample
from metarl.eval.strategies import (BestOfN, BudgetForcing, GradedSample, MajorityVote, Outcome, PassAtK, Question,
                                    SequentialRevisions, WeightedBestOfN, build_strategies)
from metarl.eval.answer_scorers import MeanLogProb, SelfVerification, build_verifier, verifier_name
from metarl.metrics import pass_at_k
from metarl.prover import TAG_PROVER, ProverConfig
from metarl.registry import ConfigError
from metarl.tasks import SubsetSumTask
from tests.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
Q = Question("q", "Numbers: 3 8 5. Target: 11.\n", "3+8")


def graded(answers, correct, scores=None):
    out = [GradedSample(i, f"<attempt>{a}</attempt>", a, bool(c), 10, 12)
           for i, (a, c) in enumerate(zip(answers, correct))]
    for s, v in zip(out, scores or []):
        s.scores["stub"] = v
    return out


def stub_score(prompt, completion, answer_text):  # the verifier the scores above are cached under
    raise AssertionError("scores are cached on the samples; the verifier must not be called")


stub_score.name = "stub"


# ---------------------------------------------------------------- answer selection on hand-made samples


def test_majority_vote_selects_most_frequent_answer_and_grades_it():
    s = graded(["3+8", "5+6", None, "5+6", "3+8", "5+6"], [1, 0, 0, 0, 1, 0])
    (o,) = MajorityVote().select(Q, s)
    assert (o.selected, o.correct, o.samples_used) == ("5+6", 0.0, 6)
    # a 2-2 tie goes to the answer seen first; unanswered samples do not vote
    (o,) = MajorityVote().select(Q, graded([None, None, "3+8", "5+6", "5+6", "3+8"], [0, 0, 1, 0, 0, 1]))
    assert (o.selected, o.correct) == ("3+8", 1.0)
    (o,) = MajorityVote().select(Q, graded([None, None], [0, 0]))
    assert (o.selected, o.correct) == (None, 0.0)


def test_weighted_best_of_n_sums_scores_per_answer_best_of_n_takes_top_sample():
    s = graded(["3+8", "5+6", "5+6"], [1, 0, 0], scores=[0.9, 0.5, 0.5])
    (w,) = WeightedBestOfN(verifier=stub_score).select(Q, s)
    (b,) = BestOfN(verifier=stub_score).select(Q, s)
    assert (w.selected, w.correct) == ("5+6", 0.0)  # 0.5 + 0.5 = 1.0 > 0.9
    assert (b.selected, b.correct) == ("3+8", 1.0)  # single best sample
    s = graded(["3+8", "5+6", "5+6"], [1, 0, 0], scores=[0.9, 0.4, 0.4])
    (w,) = WeightedBestOfN(verifier=stub_score).select(Q, s)
    assert (w.selected, w.correct) == ("3+8", 1.0)  # 0.8 < 0.9


def test_pass_at_k_outcomes_match_unbiased_estimator():
    p1, p3 = PassAtK(k=[3, 1]).select(Q, graded(["a"] * 4, [1, 0, 1, 0]))
    assert (p1.strategy, p1.correct, p1.samples_used) == ("pass@1", 0.5, 1)
    assert (p3.strategy, p3.correct, p3.samples_used) == ("pass@3", 1.0, 3)
    (p2,) = PassAtK(k=2).select(Q, graded(["a"] * 4, [1, 0, 0, 0]))
    assert p2.correct == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)


def test_self_verification_reads_last_verify_verdict():
    v = SelfVerification()
    assert v("", "<attempt>1+2</attempt><verify>1+2=3!=11 incorrect</verify><revise>3+8</revise>"
                 "<verify>3+8=11 correct</verify>", "3+8") == 1.0
    assert v("", "<attempt>3+8</attempt><verify>3+8=11 correct</verify><revise>1+2</revise>"
                 "<verify>1+2=3 incorrect</verify>", "1+2") == 0.0
    assert v("", "<attempt>3+8</attempt>", "3+8") == 0.0  # no verify block
    assert SelfVerification(fallback="whole")("", "3+8 is correct", "3+8") == 1.0


class StubSampler:
    """Returns fixed completions per generation; counts calls and checks the seed each call gets."""

    def __init__(self, completions: dict[str, list[str]], tokens: int = 5):
        self.completions, self.tokens, self.calls = completions, tokens, []

    def __call__(self, prompts, budget, n, generation, seed):
        self.calls.append((budget, generation.name, seed))
        texts = self.completions[generation.name]
        return [[Sample(texts[i % len(texts)], min(self.tokens, budget), self.tokens + 3) for i in range(n)]
                for _ in prompts]


def test_revisions_grade_the_last_stated_answer():
    task = SubsetSumTask()
    fixed = ("<attempt>1+2</attempt><verify>1+2=3!=11 incorrect</verify><revise>3+8</revise>"
             "<verify>3+8=11 correct</verify>")
    broke = "<attempt>3+8</attempt><verify>3+8=11 correct</verify><revise>1+5</revise><verify>1+5=6 incorrect</verify>"
    sampler = StubSampler({"revisions": [fixed, broke, fixed, fixed]})
    ev = evaluate_strategies([Q], [SequentialRevisions(rounds=2, cue="<revise>")], [16], sampler, n=4,
                             extract=task.extract_answer, grade=task.verify)
    (row,) = ev.rows
    assert row["strategy"] == "revisions" and row["correct"] == 0.75 and (row["n"], row["c"]) == (4, 3)
    assert [s["extracted"] for s in ev.samples] == ["3+8", "1+5", "3+8", "3+8"]
    assert row["samples_used"] == 1 and row["total_tokens"] == row["tokens"] == 5


def test_engine_rows_share_samples_per_generation_and_derive_seeds():
    task = SubsetSumTask()
    comps = ["<attempt>3+8</attempt><verify>3+8=11 correct</verify>", "<attempt>5+6</attempt><verify>ok</verify>",
             "<attempt>5+6</attempt><verify>5+6=11 correct</verify>"]
    sampler = StubSampler({"parallel": comps, "budget_forcing": comps[:1]}, tokens=7)
    specs = {name: {"_target_": f"metarl.eval.strategies.{cls}"} for name, cls in (
        ("pass_at_k", "PassAtK"), ("majority", "MajorityVote"), ("best_of_n", "BestOfN"),
        ("weighted_best_of_n", "WeightedBestOfN"), ("budget_forcing", "BudgetForcing"))}
    strategies = build_strategies(specs, n=3, sections={"pass_at_k": {"k": [1, 2]}})
    q2 = Question("q2", "Numbers: 1 5 6. Target: 11.\n", "5+6")
    ev = evaluate_strategies([Q, q2], strategies, [8, 4], sampler, n=3, extract=task.extract_answer,
                             grade=task.verify, seed=3)
    # one sampling per (budget, generation), each with its own derived seed
    assert sampler.calls == [(b, g, derive_seed(3, b, g)) for b in (8, 4) for g in ("parallel", "budget_forcing")]
    assert len({c[2] for c in sampler.calls}) == 4
    by = {(r["question_id"], r["strategy"], r["budget"]): r for r in ev.rows}
    assert len(ev.rows) == 2 * 2 * 6
    # Q: 3+8 is right, 5+6 is not (6 is not among 3 8 5); q2: 5+6 is right, 3+8 is not.
    # self-verify scores: [1, 0 (no verdict), 1]
    assert by[("q", "pass@1", 8)]["correct"] == pytest.approx(1 / 3)
    assert by[("q", "pass@2", 8)]["correct"] == pytest.approx(1 - 1 / 3)  # 1 - C(2,2)/C(3,2)
    assert by[("q", "majority", 8)]["selected"] == "5+6" and by[("q", "majority", 8)]["correct"] == 0.0
    assert by[("q", "best_of_n", 8)]["selected"] == "3+8" and by[("q", "best_of_n", 8)]["correct"] == 1.0
    assert by[("q", "weighted_best_of_n", 8)]["selected"] == "3+8"  # 3+8: 1 vs 5+6: 0 + 1, tie -> first seen
    assert by[("q2", "majority", 4)]["correct"] == 1.0 and by[("q2", "weighted_best_of_n", 4)]["correct"] == 0.0
    assert by[("q", "budget_forcing", 4)]["correct"] == 1.0
    r = by[("q", "pass@2", 4)]
    assert (r["tokens"], r["total_tokens"], r["samples_used"], r["n"], r["c"]) == (4, 8, 2, 3, 1)
    assert by[("q", "majority", 8)]["total_tokens"] == 21
    # verifier scores are stored on the sample records
    parallel = [s for s in ev.samples if s["generation"] == "parallel"]
    assert [s["scores"] for s in parallel[:3]] == [{"self_verify": 1.0}, {"self_verify": 0.0}, {"self_verify": 1.0}]


def test_engine_rejects_a_sampler_that_breaks_the_budget():
    class Greedy(StubSampler):
        def __call__(self, prompts, budget, n, generation, seed):
            return [[Sample("x", budget + 1, budget + 1) for _ in range(n)] for _ in prompts]

    with pytest.raises(ValueError, match="broke the budget"):
        evaluate_strategies([Q], [MajorityVote()], [4], Greedy({}), n=2, extract=str, grade=lambda *a: False)


MAJORITY = {"_target_": "metarl.eval.strategies.MajorityVote"}


def any_correct(question, samples):
    """A plain-function strategy (named by dotted path in the tests below)."""
    return any(s.correct for s in samples)


def test_strategy_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match=r"k=\[8\] exceeds n=4"):
        build_strategies({"pass_at_k": {"_target_": "metarl.eval.strategies.PassAtK"}}, n=4,
                         sections={"pass_at_k": {"k": [1, 8]}})
    with pytest.raises(ConfigError, match=r"strategies.mine='majority': a strategy is a mapping with `_target_`"):
        build_strategies({"mine": "majority"}, n=4)
    with pytest.raises(ConfigError, match=r"strategies\[1\]: .*metarl.eval.strategies.Majorty"):
        build_strategies([MAJORITY, {"_target_": "metarl.eval.strategies.Majorty"}], n=4)
    with pytest.raises(ConfigError, match=r"strategies.mine: tests.test_eval.any_correct is a function; .*"
                                          r"`_partial_: true`"):
        build_strategies({"mine": {"_target_": "tests.test_eval.any_correct"}}, n=4)
    with pytest.raises(ConfigError, match="report 'majority'"):
        build_strategies([MAJORITY, dict(MAJORITY)], n=4)
    with pytest.raises(ConfigError, match="at least one strategy"):
        build_strategies("majority", n=4)
    with pytest.raises(ConfigError, match="at least one strategy"):
        build_strategies({}, n=4)
    (custom,) = build_strategies([MAJORITY], n=2)
    assert isinstance(custom, MajorityVote)
    # a section's options apply unless the spec sets its own
    (rev,) = build_strategies({"r": {"_target_": "metarl.eval.strategies.SequentialRevisions", "rounds": 3}}, n=2,
                              sections={"revisions": {"cue": "<r>", "rounds": 1}})
    assert rev.generation == Generation("revisions", "<r>", 3)
    (fn,) = build_strategies({"mine": {"_target_": "tests.test_eval.any_correct", "_partial_": True}}, n=2)
    assert fn.names() == ["any_correct"] and fn.select(Q, graded(["1", "3+8"], [0, 1]))[0].correct == 1.0


def test_verifier_specs_are_target_mappings():
    with pytest.raises(ConfigError, match=r"best_of_n.verifier='self_verify': a verifier is a mapping"):
        BestOfN(verifier="self_verify")
    with pytest.raises(ConfigError, match=r"strategies.best_of_n: .*best_of_n.verifier='mean_logprob'"):
        build_strategies({"best_of_n": {"_target_": "metarl.eval.strategies.BestOfN"}}, n=2,
                         sections={"best_of_n": {"verifier": "mean_logprob"}})
    assert isinstance(BestOfN().verifier, SelfVerification)  # the default
    v = build_verifier({"_target_": "metarl.eval.answer_scorers.SelfVerification", "tag": "check"})
    assert v("", "<check>correct</check>", None) == 1.0 and verifier_name(v) == "self_verify"
    with pytest.raises(ConfigError, match=r"compute_optimal.predicted_verifier='x'"):
        build_verifier("x", key="compute_optimal.predicted_verifier")


def test_every_strategy_file_builds_with_the_eval_config_sections(tmp_path):
    from metarl.config import conf_dir, plain
    from metarl.eval.run import strategy_sections

    files = sorted(p.stem for p in (Path(conf_dir()) / "strategies").glob("*.yaml"))
    assert set(files) >= {"pass_at_k", "majority", "best_of_n", "weighted_best_of_n", "revisions",
                          "budget_forcing", "beam_search", "lookahead", "dvts"}
    cfg = _compose(tmp_path, f"strategies=[{','.join(files)}]", "pass_at_k.k=[1,2]", "search.beam_width=2",
                   "+verdict.negative=[wrong]")
    assert list(cfg.strategies) == files  # each file is `<its name>: {_target_: ...}`
    built = {name: s for name, s in zip(files, build_strategies(plain(cfg.strategies), 8,
                                                                  strategy_sections(cfg, SubsetSumTask())))}
    assert built["pass_at_k"].names() == ["pass@1", "pass@2"]  # pass_at_k.k
    assert built["revisions"].generation == Generation("revisions", "<revise>", 2)  # the task's cue, rounds
    assert built["weighted_best_of_n"].verifier.negative == ("wrong",)  # the verdict words reach self_verify
    assert [built[n].beam_width for n in ("beam_search", "lookahead", "dvts")] == [2, 2, 2]  # search.beam_width
    assert (built["beam_search"].lookahead, built["lookahead"].lookahead) == (0, 1)  # only Lookahead takes k
    assert built["dvts"].scorer.name == "self_verify"
    for name, s in built.items():
        assert s.names(), name


def test_eval_config_strategy_overrides(tmp_path):
    from metarl.eval.run import validate

    common = ["budgets=[48]", "n=4", "n_questions=2"]
    plan = validate(_compose(tmp_path, *common, "strategies=[pass_at_k,beam_search]",
                             "+strategies.beam_m2={_target_: metarl.eval.search.BeamSearch, beam_width: 2, name: beam_m2}",
                             "+strategies.mine={_target_: tests.test_eval.any_correct, _partial_: true}",
                             "search.scorer={_target_: metarl.eval.step_scorers.MCValue, m: 2}"))
    assert [n for s in plan.strategies for n in s.names()] == ["pass@1", "pass@4", "beam_search", "beam_m2",
                                                                "any_correct"]
    beam_search, beam_m2 = plan.strategies[1:3]
    assert (beam_search.beam_width, beam_m2.beam_width) == (4, 2)
    assert beam_m2.scorer.name == "mc_value" and beam_m2.scorer.fn.progress.m == 2  # the search section's scorer
    with pytest.raises(ConfigError, match=r"strategies.mine='majority': a strategy is a mapping"):
        validate(_compose(tmp_path, *common, "+strategies.mine=majority"))
    with pytest.raises(ConfigError, match=r"strategies.mine: tests.test_eval.any_correct is a function"):
        validate(_compose(tmp_path, *common, "+strategies.mine={_target_: tests.test_eval.any_correct}"))
    with pytest.raises(ConfigError, match=r"best_of_n.verifier='self_verify'"):
        validate(_compose(tmp_path, *common, "best_of_n.verifier=self_verify"))
    with pytest.raises(ConfigError, match=r"search.scorer='mc_value': a step scorer is a mapping"):
        validate(_compose(tmp_path, *common, "strategies=[dvts]", "search.scorer=mc_value"))
    with pytest.raises(ConfigError, match=r"compute_optimal.predicted_verifier='mean_logprob'"):
        validate(_compose(tmp_path, *common, "compute_optimal.predicted_verifier=mean_logprob"))


def test_plain_function_is_a_strategy_over_parallel_samples():
    (fn,) = build_strategies([any_correct], n=2)
    assert fn.generation == PARALLEL and fn.names() == ["any_correct"]
    assert fn.select(Q, graded(["1", "3+8"], [0, 1])) == [Outcome("any_correct", 1.0, 2)]
    (bad,) = build_strategies([lambda q, s: 2.0], n=2)
    with pytest.raises(ValueError, match=r"returned 2.0 .* in \[0, 1\]"):
        bad.select(Q, graded(["1"], [0]))


# ---------------------------------------------------------------- sampling within budgets


def scripted(tok, count: str) -> ScriptedBackend:
    """After "<answer>" answer "42</answer>", otherwise write "a<k>" and stop, k = how often the cue ``count``
    string occurs in the context (so each continuation round is visible)."""
    return ScriptedBackend(tok, lambda ctx: "42</answer>" if ctx.endswith("<answer>") else f"a{ctx.count(count)}")


@pytest.mark.parametrize("budget, text, thinking, rounds, forced", [
    (20, "a0<r>a1<r>a2", 13, 2, False),          # 2 revision rounds, the cue tokens count: 3+2+3+2+3 incl. EOS
    (9, "a0<r>a1", 8, 1, False),                 # no room for the second cue and a token after it
    (7, "a0<r>a1<answer>42</answer>", 7, 1, True),  # the budget cuts round 1: answer forced
])
def test_sequential_revisions_count_cue_tokens_and_force_at_budget(tiny, budget, text, thinking, rounds, forced):
    _, tok = tiny
    sampler = PolicySampler(scripted(tok, "<r>"), TAG_PROVER)
    (samples,) = sampler(["P:"], budget, 2, Generation("revisions", "<r>", 2), seed=0)
    for s in samples:
        assert (s.completion, s.thinking_tokens, s.rounds, s.forced) == (text, thinking, rounds, forced)
        assert s.thinking_tokens <= budget


def test_budget_forcing_continues_while_budget_lasts(tiny):
    _, tok = tiny
    sampler = PolicySampler(scripted(tok, "W"), TAG_PROVER)
    ((s,),) = sampler(["P:"], 12, 1, BudgetForcing(continuation="W").generation, seed=0)
    assert (s.completion, s.thinking_tokens, s.rounds, s.forced) == ("a0Wa1Wa2Wa3", 12, 3, False)
    ((s,),) = sampler(["P:"], 2, 1, PARALLEL, seed=0)  # parallel: cut at 2 tokens, answer forced
    assert (s.completion, s.thinking_tokens, s.forced) == ("a0<answer>42</answer>", 2, True)


def test_policy_sampler_on_tiny_model_respects_budgets_and_seed(tiny):
    model, tok = tiny
    sampler = PolicySampler(HFBackend(model, tok), ProverConfig(answer_tokens=4), temperature=1.0)
    prompts = ["Numbers: 3 8 5. Target: 11.\n", "Numbers: 1 5 6. Target: 11.\n"]
    for gen in (PARALLEL, Generation("revisions", "<revise>", 2), Generation("bf", "W", 10**6)):
        for budget in (3, 9):
            out = sampler(prompts, budget, 3, gen, seed=1)
            assert [len(x) for x in out] == [3, 3]
            for s in (s for x in out for s in x):
                assert s.thinking_tokens <= budget and s.tokens <= budget + len("<answer>") + 4
                assert not s.forced or "<answer>" in s.completion
            again = sampler(prompts, budget, 3, gen, seed=1)
            assert [[s.completion for s in x] for x in again] == [[s.completion for s in x] for x in out]


def test_mean_logprob_matches_token_by_token_scoring(tiny):
    model, tok = tiny
    prompt, completion = "Numbers: 3 8 5. Target: 11.\n", "<attempt>3+8</attempt>"
    v = build_verifier({"_target_": "metarl.eval.answer_scorers.MeanLogProb"}, model=model, tokenizer=tok)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    lps = []
    with torch.no_grad():
        for j in range(len(c)):
            logits = model(input_ids=torch.tensor([p + c[:j]])).logits[0, -1]
            lps.append(torch.log_softmax(logits, -1)[c[j]].item())
    assert v(prompt, completion, "3+8") == pytest.approx(math.exp(sum(lps) / len(lps)), rel=1e-4)
    unbound = MeanLogProb(exp=False)
    unbound.bind(model, tok)
    assert unbound(prompt, completion, None) == pytest.approx(sum(lps) / len(lps), rel=1e-4)


# ---------------------------------------------------------------- difficulty, summary, data files


def test_difficulty_bins_from_pass_at_1_and_round_trip(tmp_path):
    recs = [{"question_id": q, "correct": c} for q, cs in
            {"a": [1, 1], "b": [0, 0], "c": [1, 0], "d": [1, 1], "e": [0, 1]}.items() for c in cs]
    counts = counts_from_samples(recs)
    assert counts == {"a": (2, 2), "b": (2, 0), "c": (2, 1), "d": (2, 2), "e": (2, 1)}
    entries = compute_difficulty(counts, n_bins=5)
    # ranks by pass@1: a, d tie at 1.0 (mid-rank 0.5 -> bin 1); c, e at 0.5 (mid-rank 2.5 -> bin 3); b -> bin 5
    assert {e.question_id: e.difficulty_bin for e in entries} == {"a": 1, "d": 1, "c": 3, "e": 3, "b": 5}
    path = write_difficulty(tmp_path / "d.json", entries, budget=8)
    assert read_difficulty(path) == {"a": 1, "b": 5, "c": 3, "d": 1, "e": 3}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not JSON"):
        read_difficulty(tmp_path / "bad.json")


def test_summary_accuracy_tokens_and_bins():
    rows = [{"question_id": "a", "strategy": "s", "budget": 8, "correct": 1.0, "tokens": 4, "total_tokens": 8},
            {"question_id": "b", "strategy": "s", "budget": 8, "correct": 0.5, "tokens": 6, "total_tokens": 12},
            {"question_id": "c", "strategy": "s", "budget": 8, "correct": 0.0, "tokens": 8, "total_tokens": 16}]
    assert attach_bins(rows, {"a": 1, "b": 2}) == 1 and "difficulty_bin" not in rows[2]
    cells = {(r["budget"], r["difficulty_bin"]): r for r in summarize(rows)}
    assert cells[(8, ALL)]["accuracy"] == pytest.approx(0.5) and cells[(8, ALL)]["n_questions"] == 3
    assert cells[(8, ALL)]["mean_tokens"] == pytest.approx(6)
    assert cells[(8, ALL)]["mean_total_tokens"] == pytest.approx(12)
    assert cells[(8, 2)]["accuracy"] == 0.5 and cells[(8, 2)]["n_questions"] == 1
    assert cells[(8, ALL)]["ci_low"] <= 0.5 <= cells[(8, ALL)]["ci_high"]
    assert "budget 8" in format_table(summarize(rows)) and "0.500" in format_table(summarize(rows))


def test_question_file_reports_malformed_lines_by_number(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "x", "question": "Numbers: 3 8 5. Target: 11.", "gold": "3+8"}\n'
                 '{"id": "y", "question": "Numbers: 1 5 6. Target: 11.", "gold": 11\n'
                 '\n'
                 '[1, 2]\n'
                 '{"id": "z", "question": "Numbers: 1 5 6. Target: 11."}\n'
                 '{"id": "x", "question": "again", "gold": "1"}\n'
                 '{"question": "Numbers: 1 2 9. Target: 10.", "gold": 10}\n')
    qs, problems = read_questions_jsonl(f, {"prompt": "question", "answer": "gold"})
    assert [(q.id, q.answer) for q in qs] == [("x", "3+8"), ("q:7", "10")]
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in problems] == ["2", "4", "5", "6"]
    assert "malformed JSON" in problems[0] and "expected a JSON object" in problems[1]
    assert "no field ['gold']" in problems[2] and "repeated question id 'x'" in problems[3]
    f.write_text("not json\n")
    with pytest.raises(ConfigError, match="no usable question.*q.jsonl:1: malformed JSON"):
        read_questions_jsonl(f)


# ---------------------------------------------------------------- the app, in process and as a CLI


def _compose(tmp_path: Path, *overrides: str):
    from metarl.config import compose

    return compose("eval", ["model=random-tiny", "threads=1", *overrides])


def test_run_with_separate_difficulty_model_then_reuse_its_bins(tmp_path):
    from metarl.eval.run import run

    common = ["budgets=[6]", "n=2", "n_questions=5", "strategies=[pass_at_k,majority]", "pass_at_k.k=[1,2]"]
    first = run(_compose(tmp_path, *common, f"run_dir={tmp_path / 'a'}", "difficulty.model=random-tiny",
                         "difficulty.n=3", "difficulty.budget=4"))
    out = Path(first["run_dir"]) / "eval"
    diff = json.loads((out / "difficulty.json").read_text())
    assert (diff["n"], diff["budget"], len(diff["questions"])) == (3, 4, 5)
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    dsamples = [s for s in samples if s["generation"] == "difficulty"]
    assert len(dsamples) == 15 and all(s["budget"] == 4 and s["tokens"] <= 4 for s in dsamples)
    bins = {q["question_id"]: q["difficulty_bin"] for q in diff["questions"]}
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * 3 and all(r["difficulty_bin"] == bins[r["question_id"]] for r in rows)
    second = run(_compose(tmp_path, *common, f"run_dir={tmp_path / 'b'}",
                          f"difficulty.file={out / 'difficulty.json'}"))
    rows2 = [json.loads(x) for x in (Path(second["run_dir"]) / "eval" / "results.jsonl").read_text().splitlines()]
    assert [r["difficulty_bin"] for r in rows2] == [r["difficulty_bin"] for r in rows]
    assert [r["correct"] for r in rows2] == [r["correct"] for r in rows]  # same seed, same samples
    with pytest.raises(ConfigError, match="already holds an evaluation"):
        run(_compose(tmp_path, *common, f"run_dir={tmp_path / 'b'}"))
    with pytest.raises(ConfigError, match=r"budgets=\[0, 8\] must be a whole number of tokens >= 1 or a non-empty list"):
        run(_compose(tmp_path, "budgets=[0,8]", f"run_dir={tmp_path / 'c'}"))
    with pytest.raises(ConfigError, match=r"search\.beam_widht: unknown key; the section search has n, beam_width"):
        _compose(tmp_path, "search.beam_widht=2")  # the schema (metarl/eval/config.py) names the valid keys


HELPERS = '''
def digit_parity(prediction, answer):
    """A stand-in grader that makes a random model right about half the time it states a digit."""
    return int(prediction[-1]) % 2 == 0
'''


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One real metarl-eval run (random tiny model, every strategy) via subprocess, on a question file
    with a malformed line, graded by a digit-parity stand-in so the results are not all zero."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "eval_helpers.py").write_text(textwrap.dedent(HELPERS))
    rows = SubsetSumTask().generate("test", n=6, seed=1)
    lines = [json.dumps({"id": r["id"], "prompt": r["prompt"], "answer": r["answer"]}) for r in rows]
    lines.insert(2, '{"prompt": "broken line"')
    (tmp / "q.jsonl").write_text("\n".join(lines) + "\n")
    run_dir = tmp / "run"
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "metarl.cli.eval", "model=random-tiny", f"data={tmp / 'q.jsonl'}",
           "task.task=null", "task.source=null", "grader=custom", "grader._target_=eval_helpers.digit_parity", "answer=last_number", "budgets=[6,10]", "n=4",
           "pass_at_k.k=[1,2,4]", "revisions.cue='<revise>'", "budget_forcing.continuation=Wait", "temperature=1.0",
           f"run_dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = lambda name: [json.loads(x) for x in (run_dir / "eval" / name).read_text().splitlines()]  # noqa: E731
    return {"dir": run_dir, "proc": proc, "results": read("results.jsonl"), "samples": read("samples.jsonl")}


STRATEGY_NAMES = ["pass@1", "pass@2", "pass@4", "majority", "best_of_n", "weighted_best_of_n", "revisions",
                  "budget_forcing"]


def test_cli_writes_schema_rows_for_every_strategy_budget_question(cli_run):
    rows = cli_run["results"]
    assert len(rows) == 6 * 2 * len(STRATEGY_NAMES)
    assert {(r["strategy"], r["budget"]) for r in rows} == {(s, b) for s in STRATEGY_NAMES for b in (6, 10)}
    for r in rows:
        assert {"question_id", "strategy", "budget", "correct", "tokens", "n", "c", "difficulty_bin"} <= set(r)
        assert 0.0 <= r["correct"] <= 1.0 and r["n"] == 4 and 0 <= r["c"] <= 4 and 1 <= r["difficulty_bin"] <= 5
        assert r["tokens"] <= r["budget"] and r["total_tokens"] == pytest.approx(r["samples_used"] * r["tokens"])
    assert "q.jsonl:3: malformed JSON" in cli_run["proc"].stderr
    assert "weighted_best_of_n" in cli_run["proc"].stdout and "budget 10" in cli_run["proc"].stdout
    assert (cli_run["dir"] / "eval" / "summary.csv").read_text().startswith("strategy,budget,difficulty_bin,accuracy")


def test_cli_pass_at_k_recomputes_from_samples(cli_run):
    groups: dict[tuple, list[int]] = {}
    for s in cli_run["samples"]:
        assert s["tokens"] <= s["budget"]  # every sample within its budget
        if s["generation"] == "parallel":
            groups.setdefault((s["question_id"], s["budget"]), []).append(s["correct"])
    checked = 0
    for r in cli_run["results"]:
        if r["strategy"].startswith("pass@"):
            cs = groups[(r["question_id"], r["budget"])]
            k = int(r["strategy"][5:])
            assert (r["n"], r["c"]) == (len(cs), sum(cs))
            assert r["correct"] == pytest.approx(pass_at_k(len(cs), sum(cs), k))
            checked += 1
    assert checked == 6 * 2 * 3
    assert 0 < sum(sum(v) for v in groups.values()) < sum(len(v) for v in groups.values())  # not trivial


def test_cli_difficulty_bins_come_from_reference_budget_pass_at_1(cli_run):
    diff = json.loads((cli_run["dir"] / "eval" / "difficulty.json").read_text())
    assert diff["budget"] == 10 and diff["n"] == 4
    ref = counts_from_samples(s for s in cli_run["samples"] if s["generation"] == "parallel" and s["budget"] == 10)
    expected = {e.question_id: e.difficulty_bin for e in compute_difficulty(ref)}
    assert {q["question_id"]: q["difficulty_bin"] for q in diff["questions"]} == expected
    assert all(r["difficulty_bin"] == expected[r["question_id"]] for r in cli_run["results"])


def test_cli_results_feed_the_analysis_report(cli_run, tmp_path):
    from analysis.compute_accuracy import collect
    from metarl.analysis import load_run

    data, _ = collect([load_run(cli_run["dir"])])
    (cells,) = next(iter(data.values()))
    assert {k[0] for k in cells} == set(STRATEGY_NAMES) and any(k[2] != ALL for k in cells)
