"""Step-level search (beam search, lookahead, DVTS), step scorers, and compute-optimal selection.

The searches run on a deterministic toy: a scripted backend whose i-th continuation of a context writes
the digit i and a step end "|", three steps deep, then stops (EOS); a hand-built scorer reads a table.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from metarl.engine import Engine
from metarl.engine.streams import Stream
from metarl.eval.evaluate import evaluate_strategies
from metarl.eval.sampling import PolicySampler
from metarl.eval.search import DVTS, BeamSearch, Lookahead
from metarl.eval.selection import (
    _cells,
    compute_optimal,
    efficiency_ratio,
    efficiency_ratios,
    fit,
    predicted_difficulty,
    ratio_interval,
    split_questions,
    tokens_to_reach,
)
from metarl.eval.step_scorers import ProcessRewardModel, aggregate, build_step_scorer
from metarl.eval.strategies import (
    GradedSample,
    Question,
    WeightedBestOfN,
    build_strategies,
)
from metarl.prover import TAG_PROVER
from metarl.registry import ConfigError
from metarl.tasks import SubsetSumTask
from tests.scripted import ScriptedBackend

Q = Question("toy", "P:", "3|1|1")
TABLE = {"0|": 0.1, "1|": 0.9, "2|": 0.5, "3|": 0.7,
         "1|0|": 0.2, "1|1|": 0.75, "3|0|": 0.8, "3|1|": 0.85}


class Table:
    """A hand-built step scorer: the path's score from a table (paths of three steps: 0.1 x (last digit + 1))."""

    name = "table"
    level = "trace"

    def __init__(self, table=None, nan_for=()):
        self.table, self.nan_for, self.seen = dict(TABLE if table is None else table), set(nan_for), []

    def score_batch(self, traces):
        self.seen.append([t.completion for t in traces])
        out = []
        for t in traces:
            c = t.completion
            if c in self.nan_for:
                out.append(math.nan)
            elif c.count("|") == 2 and len(c) == 5:
                out.append(0.1 * (int(c[-1]) + 1))
            else:
                out.append(self.table.get(c, 0.0))
        return out


def toy_rule(ctx: str, i: int) -> str:
    """Step k < 2: "<i>|"; step 2: "<i>" then EOS; after "<answer>": a forced answer."""
    if ctx.endswith("<answer>"):
        return "9</answer>"
    done = ctx.count("|")
    return f"{i}|" if done < 2 else f"{i}"


def toy_sampler(tiny):
    _, tok = tiny
    backend = ScriptedBackend(tok, toy_rule, indexed=True)
    return PolicySampler(backend, TAG_PROVER, temperature=1.0), backend


def run_search(strategy, tiny, budget=32, questions=(Q,)):
    sampler, backend = toy_sampler(tiny)
    ev = evaluate_strategies(list(questions), [strategy], [budget], sampler, n=strategy.n, extract=lambda t: t,
                             grade=lambda a, gold, prompt: a == gold, seed=0)
    return ev, backend


def beam(**kw):
    args = {"n": 4, "beam_width": 2, "scorer": Table(), "stop": ("|",), "step_tokens": 4, "select": "best"}
    args.update(kw)
    cls = args.pop("cls", BeamSearch)
    return cls(**args)


def test_engine_expand_is_one_backend_call_under_the_cap_rule(tiny):
    sampler, backend = toy_sampler(tiny)
    engine = sampler.engine
    roots = [Stream(p) for p in sampler.prompt_ids(["P:", "R:", "S:"])]
    kids = engine.expand(roots, 2, 3, sampler.sampling, stop=("|",))
    assert backend.calls == [3] and [[c.text for c in cs] for cs in kids] == [["0|", "1|"]] * 3
    assert all(r.ids == [] for r in roots) and kids[0][0].thinking == 2 and not kids[0][0].done
    (grand,) = engine.expand([kids[0][1]], 1, 3, sampler.sampling, stop=("|",))
    c = grand[0]  # the cap (3) cuts the step "0|" after one token: done, not ended
    assert (c.text, c.thinking, c.done, c.ended) == ("1|0", 3, True, False)
    with pytest.raises(ValueError, match="done"):
        engine.expand([c], 1, 3, sampler.sampling)
    engine.finish([c, kids[1][0]], sampler.sampling)
    assert c.forced and c.text == "1|0<answer>9</answer>" and c.thinking == 3 and sum(c.mask[3:]) == 10
    d = kids[2][0].fork()
    assert d.truncate(1, engine.backend.eos_ids) == 1 and d.ids == kids[2][0].ids[:1] and d.thinking == 1


def test_beam_search_returns_the_hand_computed_beam(tiny):
    s = beam(aggregate="last")
    ev, _ = run_search(s, tiny)
    # step 1: 0| .1, 1| .9, 2| .5, 3| .7 -> keep 1|, 3|; step 2: 1|0| .2, 1|1| .75, 3|0| .8, 3|1| .85 -> keep
    # 3|1|, 3|0| (last); step 3 finishes 3|1|0 .1, 3|1|1 .2, 3|0|0 .1, 3|0|1 .2: best = the first .2
    assert s.scorer.fn.seen == [["0|", "1|", "2|", "3|"], ["1|0|", "1|1|", "3|0|", "3|1|"],
                                ["3|1|0", "3|1|1", "3|0|0", "3|0|1"]]
    (row,) = ev.rows
    assert (row["selected"], row["correct"], row["n"], row["c"], row["steps"]) == ("3|1|1", 1.0, 4, 1, 3)
    paths = [r["completion"] for r in ev.samples]
    assert paths == ["3|1|0", "3|1|1", "3|0|0", "3|0|1"]
    assert [r["step_scores"] for r in ev.samples][1] == pytest.approx([0.7, 0.85, 0.2])
    # min aggregation: 1|1| (min .75) and 3|0| (.7, tied with 3|1| and first) survive step 2
    s = beam(aggregate="min")
    ev, _ = run_search(s, tiny)
    assert [r["completion"] for r in ev.samples] == ["1|1|0", "1|1|1", "3|0|0", "3|0|1"]
    assert ev.rows[0]["selected"] == "1|1|1" and ev.rows[0]["correct"] == 0.0
    assert aggregate([0.5, 0.5, 0.8], "product") == pytest.approx(0.2)


def test_dvts_runs_independent_subtrees_and_lookahead_scores_rollouts(tiny):
    s = beam(cls=DVTS)
    ev, _ = run_search(s, tiny)
    # two subtrees of M=2: each keeps 1| (.9 > .1), then 1|1| (.75 > .2), then finishes 1|1|0 and 1|1|1
    assert s.scorer.fn.seen[0] == ["0|", "1|", "0|", "1|"]
    assert [r["completion"] for r in ev.samples] == ["1|1|0", "1|1|1"] * 2
    s = beam(cls=Lookahead, lookahead=1)
    ev, _ = run_search(s, tiny)
    # a step is scored by its greedy one-step rollout (continuation 0): 0|0| 0, 1|0| .2, 2|0| 0, 3|0| .8
    assert s.scorer.fn.seen[0] == ["0|0|", "1|0|", "2|0|", "3|0|"]
    assert ev.samples[0]["completion"].startswith("3|")


def test_search_tokens_are_every_generated_token_pruned_branches_included(tiny):
    for s, budget in ((beam(), 32), (beam(cls=Lookahead, lookahead=1), 32), (beam(cls=DVTS), 32), (beam(), 4)):
        ev, backend = run_search(s, tiny, budget=budget, questions=(Q, Question("q2", "R:", "0|0|0")))
        rows = ev.rows
        generated = sum(r["total_tokens"] + r["answer_tokens"] + r["scorer_tokens"] for r in rows)
        assert generated == backend.generated
        assert all(r["total_tokens"] >= r["samples_used"] * r["tokens"] for r in rows)
    # budget 4 cuts every path after two steps ("0|1|" = 4 tokens): a forced answer each, counted apart
    assert all(r["forced"] and r["tokens"] == 4 for r in ev.samples) and rows[0]["answer_tokens"] > 0
    # beam search, budget 32, one question: 4 + 4 + 4 steps of 2, 2 and 2 ids (digit + "|", digit + EOS)
    ev, backend = run_search(beam(), tiny)
    assert ev.rows[0]["total_tokens"] == 24 == backend.generated


def test_segmenter_steps_cut_after_one_piece_and_count_the_discarded_ids(tiny):
    _, tok = tiny

    def rule(ctx: str, i: int) -> str:  # one paragraph and the start of the next per call, then "end"
        return f"{i}x\n\ny" if ctx.count("\n\n") < 2 else "end"

    backend = ScriptedBackend(tok, rule, indexed=True)
    s = BeamSearch(n=2, beam_width=2, scorer=Table(), step="segmenter",
                   segmenter={"_target_": "metarl.segmenters.ParagraphSegmenter"}, stop=(), step_tokens=8)
    ev = evaluate_strategies([Q], [s], [32], PolicySampler(backend, TAG_PROVER), n=2, extract=lambda t: t,
                             grade=lambda a, gold, prompt: False, seed=0)
    # each step is cut after "<i>x\n\n": "y" and EOS are discarded (but counted); the last step ends
    assert s.scorer.fn.seen[:2] == [["0x\n\n", "1x\n\n"], ["0x\n\n0x\n\n", "0x\n\n1x\n\n"]]
    assert [r["completion"] for r in ev.samples] == ["0x\n\n0x\n\nend"] * 2
    (row,) = ev.rows
    assert (row["tokens"], row["total_tokens"], backend.generated) == (12, 2 * 6 + 2 * 6 + 2 * 4, 32)


def test_search_config_errors_name_the_key(tiny):
    with pytest.raises(ConfigError, match="beam_width=3 must divide n=4"):
        build_strategies({"beam": {"_target_": "metarl.eval.search.BeamSearch", "beam_width": 3}}, n=4)
    with pytest.raises(ConfigError, match=r"budgets \[16\] are smaller than one search step"):
        beam(step_tokens=24).check_budgets([16, 64])
    with pytest.raises(ConfigError, match="lookahead=0 must be a positive integer"):
        Lookahead(lookahead=0, n=4)
    with pytest.raises(ConfigError, match="aggregate='mean'"):
        beam(aggregate="mean")
    with pytest.raises(ConfigError, match="step=segmenter needs search.segmenter"):
        beam(step="segmenter")
    with pytest.raises(ConfigError, match="search.scorer='prm': a step scorer is a mapping with `_target_`"):
        beam(scorer="prm")
    with pytest.raises(ConfigError, match="search.scorer: .*metarl.eval.step_scorers.PRM"):
        beam(scorer={"_target_": "metarl.eval.step_scorers.PRM"})
    with pytest.raises(ConfigError, match="search.segmenter='paragraphs': a segmenter is a mapping"):
        beam(step="segmenter", segmenter="paragraphs")
    from metarl.eval.run import validate
    from tests.test_eval import _compose

    with pytest.raises(ConfigError, match=r"budgets \[8\] are smaller than one search step \(step_tokens=48\)"):
        validate(_compose(None, "strategies=[beam_search]", "budgets=[8,64]"))


def test_step_scorer_faults_are_zeroed_or_exclude_the_path(tiny):
    s = beam(scorer=Table(nan_for={"3|"}))
    ev, _ = run_search(s, tiny)
    # zero: 3| (.7 otherwise) scores 0, so 1| and 2| are kept; the fault is counted
    assert s.scorer.fn.seen[1] == ["1|0|", "1|1|", "2|0|", "2|1|"]
    assert ev.rows[0]["scorer_faults"] == 1 and s.scorer.stats["nonfinite"] == 1
    s = beam(scorer=Table(nan_for={"1|", "2|", "3|"}), on_error="nan")
    ev, _ = run_search(s, tiny)
    # nan: the three faulty paths are excluded, only 0| grows
    assert {r["completion"][:2] for r in ev.samples} == {"0|"} and ev.rows[0]["scorer_faults"] == 3


# ---------------------------------------------------------------- the PRM plug-in


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    """A tiny sequence-classification PRM and a token-classification one, saved to local directories."""
    from transformers import (
        LlamaConfig,
        LlamaForSequenceClassification,
        LlamaForTokenClassification,
    )

    from metarl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    dirs = {}
    for head, cls, labels in (("sequence", LlamaForSequenceClassification, 1), ("token", LlamaForTokenClassification, 2)):
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, num_labels=labels,
                          pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        model = cls(cfg).eval()  # the token head has dropout
        d = tmp_path_factory.mktemp(f"prm_{head}")
        model.save_pretrained(d)
        tok.save_pretrained(d)
        dirs[head] = (str(d), model, tok)
    return dirs


def test_prm_scores_match_a_direct_forward_pass(tiny_prm):
    from metarl.types import Trace

    traces = [Trace("Numbers: 3 8 5. Target: 11.\n", c) for c in ("<attempt>3+8</attempt>", "<attempt>3+5")]
    for head, (path, model, tok) in tiny_prm.items():
        prm = ProcessRewardModel(path=path)
        got = prm.score_batch(traces)
        assert prm.head == head
        for t, g in zip(traces, got):
            ids = tok(t.prompt + t.completion, return_tensors="pt")
            with torch.no_grad():
                logits = model(**ids).logits
            want = torch.sigmoid(logits[0, 0]) if head == "sequence" else logits[0, -1].softmax(-1)[1]
            assert g == pytest.approx(float(want), rel=1e-4)


def test_prm_load_failure_and_non_finite_scores(tiny_prm, tmp_path, monkeypatch):
    prm = ProcessRewardModel(path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot load the process reward model path="):
        prm.bind(None, None)
    path, _, _ = tiny_prm["sequence"]
    reward = build_step_scorer({"_target_": "metarl.eval.step_scorers.ProcessRewardModel", "path": path})
    monkeypatch.setattr(ProcessRewardModel, "_read", lambda self, logits: [math.inf] * logits.shape[0])
    from metarl.rewards import apply_reward
    from metarl.types import Trace

    traces = [Trace("P", "a"), Trace("P", "b")]
    apply_reward(reward, traces, {}, on_error="nan")
    assert all(math.isnan(t.rewards["prm"]) for t in traces) and reward.stats["nonfinite"] == 2
    assert traces[0].meta["reward_faults"] == {"nonfinite": 1}


# ---------------------------------------------------------------- the scorers on the tiny policy


def test_self_verify_and_mc_value_scorers_on_the_policy(tiny):
    from metarl.engine.hf import HFBackend
    from metarl.types import Trace

    model, tok = tiny
    task = SubsetSumTask()
    engine = Engine(HFBackend(model, tok), TAG_PROVER)
    prompt = "Numbers: 3 8 5. Target: 11.\n"
    pid = tok(prompt, add_special_tokens=False)["input_ids"]
    done = "<attempt>3+8</attempt><verify>3+8=11 correct</verify>"
    traces = [Trace(prompt, c, answer="3+8", prompt_ids=pid, completion_ids=tok(c, add_special_tokens=False)["input_ids"])
              for c in (done, "<attempt>3+8</attempt>")]
    sv = build_step_scorer({"_target_": "metarl.eval.step_scorers.SelfVerifyStep"})
    scores = sv.fn.score_batch(traces, engine=engine)
    assert scores[0] == 1.0 and traces[0].meta.get("scorer_tokens", 0) == 0  # read from the path, no probe
    assert scores[1] in (0.0, 1.0) and 1 <= traces[1].meta["scorer_tokens"] <= 32  # the policy verified the step
    mc = build_step_scorer({"_target_": "metarl.eval.step_scorers.MCValue", "m": 2})
    js = mc.fn.score_batch(traces, engine=engine, grader=task.verify)
    assert all(j in (0.0, 0.5, 1.0) for j in js) and all(t.meta["scorer_tokens"] > 0 for t in traces)
    assert mc.fn.oracle and not sv.fn.oracle
    lik = build_step_scorer({"_target_": "metarl.eval.step_scorers.LikelihoodValue",
                             "answer_template": "{answer}</answer>"})
    (value, _) = lik.fn.score_batch(traces, model=model, tokenizer=tok, prover=TAG_PROVER)
    ctx = pid + traces[0].completion_ids + tok("<answer>", add_special_tokens=False)["input_ids"]
    ans = tok("3+8</answer>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # teacher-forced p(a* | prompt, path, suffix), token by token
        logp = sum(torch.log_softmax(model(input_ids=torch.tensor([ctx + ans[:j]])).logits[0, -1], -1)[a].item()
                   for j, a in enumerate(ans))
    assert value == pytest.approx(math.exp(logp), rel=1e-3)


# ---------------------------------------------------------------- compute-optimal selection


def rows_for(acc: dict[tuple[str, int], dict[str, float]], tokens: dict[tuple[str, int], float]):
    return [{"question_id": q, "strategy": s, "budget": b, "correct": c, "total_tokens": tokens[(s, b)]}
            for (s, b), per_q in acc.items() for q, c in per_q.items()]


def test_selection_never_sees_the_evaluation_split():
    qs = [f"q{i}" for i in range(20)]
    split = split_questions(qs, seed=3)
    sel = [q for q in qs if split[q] == "selection"]
    ev = [q for q in qs if split[q] == "evaluation"]
    assert len(sel) == len(ev) == 10 and not set(sel) & set(ev)
    acc = {("weighted_best_of_n@1", 64): {q: 0.0 for q in qs}, ("weighted_best_of_n", 64): {q: 0.5 for q in qs},
           ("beam", 64): {q: (1.0 if q in sel else 0.0) for q in qs},
           ("majority", 64): {q: (0.0 if q in sel else 1.0) for q in qs}}
    tokens = {("weighted_best_of_n@1", 64): 60, ("weighted_best_of_n", 64): 480, ("beam", 64): 400, ("majority", 64): 480}
    recs = compute_optimal(rows_for(acc, tokens), {"oracle": {q: 1 for q in qs}}, seed=3)
    choices = [r for r in recs if r["kind"] == "choice" and r["bin"] == "all"]
    # at 60 tokens only BoN@1 fits; at 480 the config best on the selection split (beam) wins, though on the
    # evaluation split majority would have been right on every question
    assert [(r["compute"], r["strategy"], r["baseline_strategy"]) for r in choices] == [
        (60, "weighted_best_of_n@1", "weighted_best_of_n@1"), (480, "beam", "weighted_best_of_n")]
    top = choices[1]
    assert (top["selection_accuracy"], top["accuracy"], top["baseline_accuracy"]) == (1.0, 0.0, 0.5)
    assert top["difference"] == -0.5 and top["n_selection"] == top["n_evaluation"] == 10
    # rewriting evaluation rows never changes a choice; rewriting selection rows does
    acc[("majority", 64)] = {q: 1.0 for q in qs}
    acc[("beam", 64)] = {q: (0.0 if q in sel else 1.0) for q in qs}
    flipped = [r for r in compute_optimal(rows_for(acc, tokens), {"oracle": {q: 1 for q in qs}}, seed=3)
               if r["kind"] == "choice" and r["bin"] == "all"]
    assert flipped[1]["strategy"] == "majority"
    acc[("majority", 64)] = {q: (0.0 if q in sel else 1.0) for q in qs}
    acc[("beam", 64)] = {q: (1.0 if q in sel else 0.3) for q in qs}
    again = [r for r in compute_optimal(rows_for(acc, tokens), {"oracle": {q: 1 for q in qs}}, seed=3)
             if r["kind"] == "choice" and r["bin"] == "all"]
    assert again[1]["strategy"] == "beam" and again[1]["accuracy"] == pytest.approx(0.3)
    # fit() itself only ever gets selection questions
    cells, order, _ = _cells(rows_for(acc, tokens))
    assert fit(cells, order, sel, [480], "weighted_best_of_n")[0]["config"] == ("beam", 64)


def test_oracle_rows_are_not_selected_and_bins_are_per_source():
    qs = [f"q{i}" for i in range(8)]
    rows = rows_for({("weighted_best_of_n", 8): {q: 0.5 for q in qs}, ("pass@4", 8): {q: 1.0 for q in qs}},
                    {("weighted_best_of_n", 8): 32, ("pass@4", 8): 32})
    for r in rows:
        r["oracle"] = r["strategy"] == "pass@4"
    bins = {"oracle": {q: 1 + i % 2 for i, q in enumerate(qs)}, "predicted": {q: 1 for q in qs}}
    recs = compute_optimal(rows, bins, seed=0)
    choices = [r for r in recs if r["kind"] == "choice"]
    assert {r["strategy"] for r in choices} == {"weighted_best_of_n"}
    assert {(r["difficulty"], r["bin"]) for r in choices} >= {("oracle", "all"), ("predicted", "all"), ("predicted", 1)}
    # a search's compute includes its scorer's tokens: 20 + 20 > 32 is not feasible at T = 32
    search = [{"question_id": q, "strategy": "beam", "budget": 8, "correct": 1.0, "total_tokens": 20,
               "scorer_tokens": 20} for q in qs]
    picked = {r["strategy"] for r in compute_optimal(rows + search, bins, seed=0) if r["kind"] == "choice"}
    assert picked == {"weighted_best_of_n"}
    picked = {r["strategy"] for r in compute_optimal(rows + search, bins, seed=0, scorer_tokens=False)
              if r["kind"] == "choice"}
    assert picked == {"beam"}
    curves = [r for r in recs if r["kind"] == "curve" and r["strategy"] == "pass@4"]
    assert curves and all(r["oracle"] for r in curves)
    assert predicted_difficulty({"a": [3.0, 1.0], "b": [-5.0], "c": [2.0]}, n_bins=3) == {
        "a": (2.0, 1), "b": (-5.0, 3), "c": (2.0, 1)}


def test_tokens_to_reach_reads_the_running_maximum_in_log_tokens():
    # (200, 0.1) is dominated: the frontier runs from (100, 0.2) to (400, 0.6); 0.4 is halfway: 100 * 4 ** 0.5
    curve = [(800, 0.5), (200, 0.1), (100, 0.2), (400, 0.6)]
    assert tokens_to_reach(curve, 0.4) == (pytest.approx(200.0), "interpolated")
    # a quarter of the way from 0.2 to 0.6: 100 * 4 ** 0.25
    assert tokens_to_reach(curve, 0.3)[0] == pytest.approx(100 * math.sqrt(2))
    assert tokens_to_reach(curve, 0.6) == (pytest.approx(400.0), "interpolated")
    assert tokens_to_reach(curve, 0.2) == (100.0, "cheapest") and tokens_to_reach(curve, 0.05) == (100.0, "cheapest")
    assert tokens_to_reach(curve, 0.61) == (math.inf, "not reached")
    assert efficiency_ratio(0.4, 50.0, curve) == pytest.approx(4.0)  # best-of-N needs 200 for what costs 50
    assert efficiency_ratio(0.61, 50.0, curve) == math.inf
    with pytest.raises(ValueError):
        tokens_to_reach([], 0.5)
    with pytest.raises(ValueError):
        efficiency_ratio(0.4, 0.0, curve)


def _ratio_rows(qs, ev, beam_eval):
    """Best-of-N at 1 sample (0.25, 100 tokens) and 8 samples (0.75, 400 tokens) on every question; beam
    search: 40 generated + 20 scorer tokens, 0.5 on the selection split and ``beam_eval(q)`` on the other."""
    rows = []
    for q in qs:
        rows += [{"question_id": q, "strategy": "weighted_best_of_n@1", "budget": 64, "correct": 0.25,
                  "total_tokens": 100},
                 {"question_id": q, "strategy": "weighted_best_of_n", "budget": 64, "correct": 0.75,
                  "total_tokens": 400},
                 {"question_id": q, "strategy": "beam_search", "budget": 64,
                  "correct": beam_eval(q) if q in ev else 0.5, "total_tokens": 40, "scorer_tokens": 20},
                 {"question_id": q, "strategy": "pass@8", "budget": 64, "correct": 1.0, "total_tokens": 10,
                  "oracle": True}]
    return rows


def test_efficiency_ratio_of_the_compute_optimal_choice_by_hand():
    qs = [f"q{i}" for i in range(20)]
    split = split_questions(qs, seed=0)
    ev = [q for q in qs if split[q] == "evaluation"]
    bin_of = {q: 1 + i % 2 for i, q in enumerate(qs)}
    # bin 1: beam search 0.5 on its evaluation questions; bin 2: 0.76, more than best-of-N ever reaches
    rows = _ratio_rows(qs, ev, lambda q: 0.5 if bin_of[q] == 1 else 0.76)
    recs = efficiency_ratios(rows, {"oracle": bin_of}, seed=0, n_resamples=200)
    got = {(r["bin"], r["compute"]): r for r in recs}
    assert set(got) == {(b, t) for b in ("all", 1, 2) for t in (100.0, 400.0)}
    # T = 100: beam search (60 tokens with its scorer's, 0.5 on selection) beats BoN@1 (0.25) and is chosen;
    # best-of-N reaches 0.5 at 100 * 4 ** 0.5 = 200 tokens: R = 200 / 60; every resample gives the same
    r = got[(1, 100.0)]
    assert (r["strategy"], r["grid_config"], r["how"]) == ("beam_search", "weighted_best_of_n@1 @ 64", "interpolated")
    assert (r["accuracy"], r["tokens"]) == (pytest.approx(0.5), pytest.approx(60.0))
    assert r["ratio"] == pytest.approx(200 / 60) and r["baseline_tokens_needed"] == pytest.approx(200.0)
    assert r["ratio_low"] == pytest.approx(200 / 60) == r["ratio_high"] and r["share_not_reached"] == 0.0
    # T = 400: best-of-N (0.75) is chosen; it matches itself at its own tokens: R = 1
    assert got[(1, 400.0)]["strategy"] == "weighted_best_of_n" and got[(1, 400.0)]["ratio"] == pytest.approx(1.0)
    # bin 2: 0.76 on evaluation is above best-of-N's 0.75: not reached, in every resample
    r2 = got[(2, 100.0)]
    assert r2["ratio"] == math.inf and r2["how"] == "not reached" and r2["share_not_reached"] == 1.0
    assert r2["baseline_max_tokens"] == pytest.approx(400.0) and r2["ratio_low"] == math.inf
    # bin all: beam 0.5 on the 2 bin-1 and 0.76 on the 8 bin-2 evaluation questions: 0.708, reached by
    # best-of-N at 100 * 4 ** ((0.708 - 0.25) / 0.5) tokens; the oracle pass@8 (10 tokens) is never chosen
    assert (len(ev), sum(bin_of[q] == 1 for q in ev)) == (10, 2)
    assert got[("all", 100.0)]["accuracy"] == pytest.approx(0.708)
    assert got[("all", 100.0)]["ratio"] == pytest.approx(100 * 4 ** 0.916 / 60)
    assert all(r["strategy"] != "pass@8" for r in recs)
    # without the scorer's tokens beam search costs 40: the same accuracy, R = 200 / 40
    bare = efficiency_ratios(rows, {"oracle": bin_of}, seed=0, n_resamples=50, scorer_tokens=False)
    assert [r["ratio"] for r in bare if r["bin"] == 1 and r["compute"] == 100.0] == [pytest.approx(5.0)]


def test_a_choice_on_the_best_of_n_curve_is_reached_at_its_own_tokens_in_every_resample():
    # accuracies such as 0.1 and 0.7 summed in another order differ in the last bits; still reached
    vals = [0.1, 0.7, 0.3, 0.9, 0.6, 0.2, 0.4, 0.8, 0.5] * 7
    mine = [(v, 100.0 + i % 3) for i, v in enumerate(vals)]
    curve = {"bon1": [(v / 3, 30.0) for v in vals], "bon4": mine, "bon8": [(v * 0.9, 400.0) for v in vals]}
    r = ratio_interval(mine, curve, n_resamples=300, seed=0)
    assert r["ratio"] == pytest.approx(1.0) and r["how"] == "interpolated"
    assert r["share_not_reached"] == 0.0 and r["ratio_high"] == pytest.approx(1.0)


def test_budgets_beyond_best_of_n_let_a_costlier_search_be_chosen():
    qs = [f"q{i}" for i in range(20)]
    rows = []
    for q in qs:
        rows += [{"question_id": q, "strategy": "weighted_best_of_n@1", "budget": 64, "correct": 0.25,
                  "total_tokens": 100},
                 {"question_id": q, "strategy": "weighted_best_of_n", "budget": 64, "correct": 0.5,
                  "total_tokens": 400},
                 {"question_id": q, "strategy": "beam_search", "budget": 64, "correct": 1.0, "total_tokens": 500,
                  "scorer_tokens": 100}]
    bins = {"oracle": {q: 1 for q in qs}}
    plain = efficiency_ratios(rows, bins, n_resamples=20)
    assert {r["strategy"] for r in plain} == {"weighted_best_of_n@1", "weighted_best_of_n"}
    wide = [r for r in efficiency_ratios(rows, bins, n_resamples=20, beyond=[1.5, 2]) if r["bin"] == "all"]
    # 1.5 x 400 = 600 just fits beam search (500 + 100 scorer tokens); best-of-N never reaches 1.0
    assert [(r["compute"], r["grid_config"], r["strategy"]) for r in wide] == [
        (100.0, "weighted_best_of_n@1 @ 64", "weighted_best_of_n@1"), (400.0, "weighted_best_of_n @ 64",
                                                                         "weighted_best_of_n"),
        (600.0, "1.5×", "beam_search"), (800.0, "2×", "beam_search")]
    assert wide[2]["ratio"] == math.inf and wide[2]["baseline_max_tokens"] == pytest.approx(400.0)
    co = [r for r in compute_optimal(rows, bins, beyond=[1.5]) if r["kind"] == "choice" and r["bin"] == "all"]
    assert [(r["compute"], r["strategy"], r["baseline_strategy"]) for r in co][-1] == (
        600.0, "beam_search", "weighted_best_of_n")
    assert co[-1]["difference"] == pytest.approx(0.5)


def test_efficiency_ratio_interval_resamples_questions_and_rereads_the_curve():
    # two evaluation questions: the choice is right on one; best-of-N is 0/1 on them in step with it
    chosen = [(1.0, 50.0), (0.0, 50.0)]
    curve = {"bon1": [(0.5, 100.0), (0.0, 100.0)], "bon8": [(1.0, 400.0), (0.5, 400.0)]}
    # point: choice 0.5; curve (100, 0.25) -> (400, 0.75): 200 tokens, R = 4
    r = ratio_interval(chosen, curve, n_resamples=400, seed=1)
    assert r["ratio"] == pytest.approx(4.0) and r["tokens"] == 50.0
    # resamples: {q0,q0}: choice 1.0 > bon8 1.0? equal: reached at 400 -> R = 8; {q1,q1}: choice 0 <= bon1 0:
    # the cheapest point, R = 2; mixed: R = 4. The percentile interval spans the two extremes
    assert (r["ratio_low"], r["ratio_high"]) == (pytest.approx(2.0), pytest.approx(8.0))
    assert r["share_not_reached"] == 0.0
    with pytest.raises(ValueError):
        ratio_interval(chosen, {"bon1": [(0.5, 100.0)]})


def test_best_of_k_rows_average_over_subsets():
    samples = [GradedSample(i, "", a, c, 10, 12) for i, (a, c) in enumerate([("x", True), ("y", False), ("y", False)])]
    for s, v in zip(samples, [0.9, 0.5, 0.5]):
        s.scores["stub"] = v
    verifier = lambda p, c, a: 0.0
    verifier.name = "stub"
    w = WeightedBestOfN(verifier=verifier, ks=[1, 2])
    w.check(3)
    out = {o.strategy: o for o in w.select(Q, samples)}
    assert list(out) == ["weighted_best_of_n@1", "weighted_best_of_n@2", "weighted_best_of_n"]
    assert out["weighted_best_of_n@1"].correct == pytest.approx(1 / 3)  # mean pass@1
    # pairs {x,y1}: x (.9 > .5), {x,y2}: x, {y1,y2}: y -> 2/3; all three: y (1.0 > .9)
    assert out["weighted_best_of_n@2"].correct == pytest.approx(2 / 3) and out["weighted_best_of_n@2"].samples_used == 2
    assert out["weighted_best_of_n"].correct == 0.0


def test_eval_run_writes_search_rows_and_compute_optimal_outputs(tmp_path):
    from metarl.eval.run import run
    from tests.test_eval import _compose

    out = run(_compose(tmp_path, "budgets=[16,24]", "n=4", "n_questions=6", f"run_dir={tmp_path / 'r'}",
                       "strategies=[weighted_best_of_n,beam_search,dvts]", "best_of_n.ks=[1,2]",
                       "search.beam_width=2", "search.step_tokens=16", "temperature=1.0"))
    d = tmp_path / "r" / "eval"
    rows = [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]
    names = {r["strategy"] for r in rows}
    assert names == {"weighted_best_of_n@1", "weighted_best_of_n@2", "weighted_best_of_n", "beam_search", "dvts"}
    for r in rows:
        if r["strategy"] in ("beam_search", "dvts"):
            assert r["params"]["n"] == 4 and r["total_tokens"] >= r["tokens"] > 0 and r["tokens"] <= r["budget"]
    co = [json.loads(x) for x in (d / "compute_optimal.jsonl").read_text().splitlines()]
    assert {r["difficulty"] for r in co} == {"oracle", "predicted"} and any(r["kind"] == "choice" for r in co)
    assert json.loads((d / "difficulty_predicted.json").read_text())["verifier"] == "self_verify"
    assert "beam_search" in out["meta"]["scorer_stats"]
    from analysis.compute_accuracy import collect
    from metarl.analysis import load_run
    from analysis.report import build_report

    run_data = load_run(tmp_path / "r")
    assert len(run_data.compute_optimal) == len(co) and not any("kind" in r for r in run_data.eval_results)
    (cells,) = next(iter(collect([run_data])[0].values()))
    assert {k[0] for k in cells} == names
    report = build_report([tmp_path / "r"], tmp_path / "rep").read_text()
    assert "## Compute-optimal strategy selection" in report and "best-of-N matched" in report
    assert (tmp_path / "rep" / "compute_optimal_eval_oracle.csv").read_text().startswith("run,difficulty,bin,kind")
    # the benchmark's page renders from these outputs
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import search_results

    bench = tmp_path / "bench"
    (bench / "eval_run").parent.mkdir(exist_ok=True)
    (bench / "eval_run").symlink_to(tmp_path / "r")
    (bench / "bench.json").write_text(json.dumps({"command": "python -m metarl.cli.eval ...", "report_command": "...",
                                                  "machine": search_results.machine() | {"cpu_count": 2},
                                                  "wall_s": 1.0, "quick": True, "finished": "now"}))
    page = search_results.render(bench, tmp_path / "docs").read_text()
    assert "| beam_search |" in page and "**oracle difficulty — all questions, every compute budget**" in page
    assert "#### Efficiency ratio" in page and "| R [95% CI] |" in page
