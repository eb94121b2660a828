"""Exact progress: ``Task.exact_success`` on the subset-sum task, checked against a brute force written here, and
the ``exact_progress`` oracle reward (where it records J, its binomial noise, its config errors, and training)."""
from __future__ import annotations

import itertools
import json
import random
import re
import statistics
from pathlib import Path

import pytest

from metarl.registry import ConfigError
from metarl.rewards.exact import ExactProgress
from metarl.tasks import LEVELS, SubsetSumTask
from metarl.tasks.base import Task
from metarl.tasks.subset_sum_traces import NoisySolver, SolverConfig
from metarl.types import Episode, Trace

# --------------------------------------------------------------------------- brute force, independent of metarl


def brute_parse_problem(prompt):
    numbers = [int(x) for x in re.search(r"Numbers: ([\d ]+)\.", prompt).group(1).split()]
    return numbers, int(re.search(r"Target: (-?\d+)\.", prompt).group(1))


def brute_candidates(numbers, level):
    """Every expression the level allows, as lists of signed terms in prompt order, first term added."""
    signs = [s for s, op in ((1, "+"), (-1, "-")) if op in level.ops]
    out = []
    for k in range(level.min_terms, level.max_terms + 1):
        for subset in itertools.combinations(numbers, k):
            for rest in itertools.product(signs, repeat=k - 1):
                out.append([subset[0]] + [s * v for s, v in zip(rest, subset[1:])])
    return out


def brute_terms(expr):
    s = "".join(expr.split())
    if not re.fullmatch(r"[+-]?\d+(?:[+-]\d+)*", s):
        return None
    return [int(t) for t in re.findall(r"[+-]?\d+", s)]


def brute_correct(terms, numbers, target):
    if terms is None or sum(terms) != target:
        return False
    pool = list(numbers)
    for t in terms:
        if abs(t) not in pool:
            return False
        pool.remove(abs(t))
    return True


def brute_j(prompt, prefix, level):
    """Read the prefix block by block, then average, over every candidate as the fresh guess, whether the
    ideal meta-prover's answer (believed, else pending, else that guess if not ruled out) is correct."""
    numbers, target = brute_parse_problem(prompt)
    believed = pending = None
    rejected = []
    for tag, content in re.findall(r"<(attempt|revise|verify)>([^<]*)", prefix):
        if tag != "verify":
            if brute_terms(content) is not None:
                pending = brute_terms(content)
            continue
        words = re.findall(r"\b(correct|incorrect)\b", content.lower())
        if pending is None or not words:
            continue
        if words[-1] == "correct":
            believed = pending
        else:
            rejected.append(sorted(pending))
        pending = None
    every = brute_candidates(numbers, level)
    outcomes = []
    for guess in every:
        if sorted(guess) in rejected:
            continue
        answer = believed if believed is not None else pending if pending is not None else guess
        outcomes.append(brute_correct(answer, numbers, target))
    if not outcomes:  # every candidate ruled out: the rule answers the first one
        answer = believed if believed is not None else pending if pending is not None else every[0]
        outcomes = [brute_correct(answer, numbers, target)]
    return sum(outcomes) / len(outcomes)


def cut_points(text):
    """Every block-level cut of ``text``: its start and end, before every ``<`` and after every ``>``."""
    return sorted({0, len(text), *(m.start() for m in re.finditer("<", text)),
                   *(m.end() for m in re.finditer(">", text))})


MALFORMED = [
    "no tags at all 3+5",
    "<attempt>hello</attempt><verify>looks correct</verify>",
    "<verify>3+5=8 correct</verify><attempt>3+5</attempt>",
    "<attempt>3+5</attempt><verify>maybe</verify><verify>8!=20 incorrect</verify>",
    "<attempt>3 + 5</attempt><verify>INCORRECT</verify><revise>5+3</revise><verify>no</verify>",
    "<attempt>8+12<verify>8+12=20 correct",
    "<attempt>3+5</attempt><attempt></attempt><verify>incorrect</verify><revise>",
    "<revise>12+8</revise><verify>12+8=20 correct</verify><attempt>3+5</attempt>",
]


def solver_traces(level_id, n, p_slip):
    task = SubsetSumTask(difficulty=level_id)
    solver = NoisySolver(LEVELS[level_id], SolverConfig(p_correct=0.3, p_slip=p_slip))
    rng = random.Random(level_id)
    problems = task.generate("train", n=n, seed=1)
    return task, solver, [(p, solver.trace(p, rng)) for p in problems]


@pytest.mark.parametrize("level_id", [2, 5])
def test_exact_j_equals_brute_force_on_every_prefix(level_id):
    task, _, traces = solver_traces(level_id, 30, p_slip=0.3)
    checked = 0
    for problem, trace in traces:
        texts = [trace.completion, *MALFORMED]
        for text in texts:
            for cut in cut_points(text):
                prefix = text[:cut]
                assert task.exact_success(problem["prompt"], prefix) == pytest.approx(
                    brute_j(problem["prompt"], prefix, LEVELS[level_id]), abs=1e-12), (problem["prompt"], prefix)
                checked += 1
    assert checked > 1000


def test_believed_pending_and_rejected_by_hand():
    task = SubsetSumTask(difficulty=2)
    prompt = "Numbers: 3 8 5 12. Target: 20.\n"  # pairs: 3+8 3+5 3+12 8+5 8+12 5+12; only 8+12 is right
    j = lambda prefix: task.exact_success(prompt, prefix)  # noqa: E731
    assert j("") == pytest.approx(1 / 6)
    assert j("<attempt>8+12</attempt>") == 1.0  # pending right
    assert j("<attempt>3+5</attempt>") == 0.0  # pending wrong
    assert j("<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify>") == pytest.approx(1 / 5)
    # a rejection rules out the same terms in any order
    assert j("<attempt>5+3</attempt><verify>5+3=8!=20 incorrect</verify>") == pytest.approx(1 / 5)
    # a slip that rejects the right answer leaves no right candidate
    assert j("<attempt>8+12</attempt><verify>8+12=21!=20 incorrect</verify>") == 0.0
    # believed (even wrongly, after a slip) wins over a later pending attempt
    assert j("<attempt>3+5</attempt><verify>3+5=20 correct</verify><revise>8+12</revise>") == 0.0
    assert j("<attempt>8+12</attempt><verify>8+12=20 correct</verify><revise>3+5</revise>") == 1.0
    # the last belief counts
    assert j("<attempt>8+12</attempt><verify>correct</verify><revise>3+5</revise><verify>correct</verify>") == 0.0
    rejected_all_wrong = "".join(f"<revise>{e}</revise><verify>incorrect</verify>"
                                 for e in ("3+8", "3+5", "3+12", "8+5", "5+12"))
    assert j(rejected_all_wrong) == 1.0
    everything = rejected_all_wrong + "<revise>8+12</revise><verify>incorrect</verify>"
    assert j(everything) == 0.0  # all ruled out: the rule answers the first candidate, 3+8
    # a verify block without a verdict leaves the attempt pending
    assert j("<attempt>8+12</attempt><verify>8+12=20</verify>") == 1.0


def test_malformed_prefix_falls_back_to_the_uniform_guess_over_all_candidates():
    task = SubsetSumTask(difficulty=2)
    prompt = "Numbers: 3 8 5 12. Target: 20.\n"
    for text in ("", "garbage", "<attempt>hello</attempt>", "<verify>8+12=20 correct</verify>",
                 "<attempt></attempt><verify>incorrect</verify>", "<<<>>>", "<attempt>" * 50):
        assert task.exact_success(prompt, text) == pytest.approx(1 / 6), text
    with pytest.raises(ValueError, match="needs the problem prompt"):
        task.exact_success("What is 2+2?", "")


def test_agrees_with_the_warm_starts_forced_answer_rule():
    """Where the rule names an answer (believed or pending), J is that answer's correctness; a fresh guess of the
    solver is a correct candidate with probability p_correct, exact J is the share of correct candidates."""
    task, solver, traces = solver_traces(2, 40, p_slip=0.3)
    named = guessed = 0
    for problem, trace in traces:
        for cut in episode_cuts(trace.completion):  # the boundaries the rule is taught at
            prefix = trace.completion[:cut]
            answer = solver.forced_answer(prefix, problem, random.Random(0))
            j = task.exact_success(problem["prompt"], prefix)
            blocks = re.findall(r"<(attempt|revise|verify)>", prefix)
            if "correct</verify>" in prefix.replace("incorrect</verify>", "") or (blocks and blocks[-1] != "verify"):
                assert j == float(task.verify(answer, "", problem["prompt"])), prefix
                named += 1
            else:
                assert 0.0 <= j <= 1.0
                guessed += 1
    assert named > 40 and guessed > 40


def test_r1_format_prefixes():
    task = SubsetSumTask(difficulty=2)
    prompt = "Numbers: 3 8 5 12. Target: 20.\n"
    think = "<think>\nI need some of the numbers 3, 8, 5, 12 that add up to 20. Let me try 3+5.\n\n3+5=8.\n\n"
    assert task.exact_success(prompt, "<think>\n") == pytest.approx(1 / 6)
    assert task.exact_success(prompt, think) == 0.0  # pending 3+5
    rejected = think + "8 is not 20, so 3+5 does not work.\n\n"
    assert task.exact_success(prompt, rejected) == pytest.approx(1 / 5)
    assert task.exact_success(prompt, rejected + "Wait, that does not work. Let me try 8+12.\n\n") == 1.0
    works = rejected + "Wait. Let me try 3+12.\n\n3+12=20.\n\n20 is the target, so 3+12 works.\n\n"
    assert task.exact_success(prompt, works) == 0.0  # believed after a slip
    assert task.exact_success(prompt, works + "But let me double-check 3+12.\n\n3+12=15.\n\n"
                                             "15 is not 20, so 3+12 does not work.\n\n") == pytest.approx(1 / 4)


# --------------------------------------------------------------------------- the reward


def make_trace(prompt, text, cuts, answer="8+12"):
    return Trace(prompt, text, answer=answer, episodes=[Episode("other", a, b, text[a:b]) for a, b in zip(cuts, cuts[1:])])


PROMPT = "Numbers: 3 8 5 12. Target: 20.\n"
TEXT = "<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify><revise>8+12</revise><verify>8+12=20 correct</verify>"


def episode_cuts(text):
    return [0, *(m.end() for m in re.finditer(r"</(attempt|verify|revise)>", text))]


def test_reward_records_j_where_monte_carlo_progress_does_and_telescopes():
    from metarl.calibration import j_values

    trace = make_trace(PROMPT, TEXT, episode_cuts(TEXT))
    deltas = ExactProgress(SubsetSumTask()).score_batch([trace])[0]
    js = [trace.meta["J_init"], *(e.info["J"] for e in trace.episodes)]
    assert js == pytest.approx([1 / 6, 0.0, 0.2, 1.0, 1.0])
    assert deltas == pytest.approx([b - a for a, b in zip(js, js[1:])])
    assert sum(deltas) == pytest.approx(js[-1] - js[0])
    assert all(e.info["J_se"] == 0.0 and e.info["J_exact"] == e.info["J"] for e in trace.episodes)
    assert j_values(trace) == pytest.approx(js)  # what the termination baseline reads
    # record_j=False leaves J to another estimator, J_exact is still written
    other = make_trace(PROMPT, TEXT, episode_cuts(TEXT))
    ExactProgress(SubsetSumTask(), record_j=False).score_batch([other])
    assert "J_init" not in other.meta and "J" not in other.episodes[0].info
    assert [e.info["J_exact"] for e in other.episodes] == pytest.approx(js[1:])


def test_binomial_noise_mean_variance_and_reproducibility():
    m, calls = 8, 3000
    trace = make_trace(PROMPT, TEXT, episode_cuts(TEXT))
    noisy = ExactProgress(SubsetSumTask(), m=m, seed=7)
    draws = []
    for _ in range(calls):
        js = noisy.success_rates([trace])[0]
        assert js[1] == 0.0 and js[3] == js[4] == 1.0  # J of 0 or 1 has no noise
        assert all(round(j * m) == j * m for j in js)
        assert trace.episodes[1].info["J_exact"] == pytest.approx(0.2)
        draws.append(js[2])
    p = 0.2
    assert statistics.fmean(draws) == pytest.approx(p, abs=4 * (p * (1 - p) / m / calls) ** 0.5)
    assert statistics.pvariance(draws) == pytest.approx(p * (1 - p) / m, rel=0.1)
    # the same seed gives the same draws call by call; another seed other draws
    again = ExactProgress(SubsetSumTask(), m=m, seed=7)
    assert [again.success_rates([trace])[0][2] for _ in range(50)] == draws[:50]
    other = ExactProgress(SubsetSumTask(), m=m, seed=8)
    assert [other.success_rates([trace])[0][2] for _ in range(50)] != draws[:50]
    # a prefix shared by the traces of a group is drawn once per call, as Monte Carlo progress samples it once
    group = [make_trace(PROMPT, TEXT, episode_cuts(TEXT)) for _ in range(4)]
    rates = ExactProgress(SubsetSumTask(), m=m, seed=1).success_rates(group)
    assert len({tuple(r) for r in rates}) == 1
    se = group[0].episodes[1].info["J_se"]
    assert se == pytest.approx((rates[0][2] * (1 - rates[0][2]) / m) ** 0.5)


class NoState(Task):
    name = "no_state"

    def generate(self, split="train", n=100, seed=0, difficulty=None):
        return []

    def verify(self, prediction, answer, prompt=""):
        return prediction == answer

    def extract_answer(self, text):
        return text


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match=r"NoState does not: implement it .*rewards=\[mc_progress\]"):
        ExactProgress(NoState())
    with pytest.raises(ConfigError, match="task=subset_sum"):
        ExactProgress(None)
    for m in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="m="):
            ExactProgress(SubsetSumTask(), m=m)
    built = ExactProgress({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 5}, m=4)
    assert built.task.level().ops == "+-" and built.m == 4


def test_a_dataset_run_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    import metarl.models.loading as loading
    from metarl.config import compose
    from metarl.trainer.run import run

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration error was raised")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", refuse)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n")
    cfg = compose("train", ["recipe=obj2_exact_progress", "name=x", "model=random-tiny", f"run_dir={tmp_path / 'run'}",
                            "task=dataset", f"task.source={data}"])
    with pytest.raises(ConfigError, match=r"rewards\.exact_progress: .*task\.task is null"):
        run(cfg)


def test_trains_in_place_of_monte_carlo_progress_with_the_termination_baseline(tmp_path):
    """``recipe=obj2_mc_progress rewards=[exact_progress]``: two steps, and the rollouts carry the exact J."""
    from omegaconf import open_dict

    from metarl.config import compose
    from metarl.trainer.run import run

    cfg = compose("train", ["recipe=obj2_mc_progress", "rewards=[exact_progress]", "model=random-tiny",
                            "trainer.max_steps=2", "evaluate.enabled=false", "task.n_train=16",
                            "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=40",
                            "rollouts_every=1", "objective.baseline=termination", "name=exact",
                            f"run_dir={tmp_path / 'run'}"])
    with open_dict(cfg):  # the recipe's options for mc_progress stay behind when rewards=[...] drops it
        if "_target_" not in cfg.rewards.get("mc_progress", {"_target_": None}):
            del cfg.rewards["mc_progress"]
    assert list(cfg.rewards) == ["exact_progress"]
    summary = run(cfg)
    assert summary["steps"] == 2
    rollouts = [json.loads(line) for line in (Path(summary["run_dir"]) / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["episodes"] for r in rollouts)
    task = SubsetSumTask(difficulty=2)
    for r in rollouts:
        assert r["meta"]["J_init"] == task.exact_success(r["prompt"], "")
        for e in r["episodes"]:
            assert e["info"]["J"] == e["info"]["J_exact"] == task.exact_success(r["prompt"], r["completion"][:e["end"]])
            assert "exact_progress" in e["rewards"]


def test_the_last_rule_answers_the_last_expression_stated_whatever_its_verdict():
    """rule='last' (the tiny warm starts' forced-answer rule): J is the last stated expression's correctness,
    a guess over all candidates before any; the reward passes the rule on and refuses an unknown one."""
    from metarl.registry import ConfigError
    from metarl.rewards.exact import ExactProgress
    from metarl.tasks import SubsetSumTask

    task = SubsetSumTask(difficulty=2)
    prompt = "Numbers: 3 8 5 12. Target: 20.\n"
    right = "<attempt>8+12</attempt><verify>8+12=21!=20 incorrect</verify>"  # a slip rejects the right answer
    wrong = "<attempt>3+5</attempt><verify>3+5=20 correct</verify>"  # a slip believes a wrong one
    assert task.exact_success(prompt, right, rule="last") == 1.0 and task.exact_success(prompt, right) < 1.0
    assert task.exact_success(prompt, wrong, rule="last") == 0.0 == task.exact_success(prompt, wrong)
    assert task.exact_success(prompt, "", rule="last") == task.exact_success(prompt, "")  # 1 of 6 pairs
    with pytest.raises(ValueError, match="rule"):
        task.exact_success(prompt, right, rule="newest")
    with pytest.raises(ConfigError, match="rule"):
        ExactProgress(task, rule="newest")
    assert ExactProgress(task, rule="last").rule == "last"
