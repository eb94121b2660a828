"""The built-in subset-sum task: generators, splits, the bounded verifier, the extractor, the synthetic traces."""
from __future__ import annotations

import random

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metarl.prover import TAG_PROVER
from metarl.registry import ConfigError
from metarl.tasks import LEVELS, Level, SubsetSumTask, build_task
from metarl.tasks.base import split_of, stable_hash, tagged_blocks
from metarl.tasks.subset_sum import MAX_EXPR_CHARS, format_prompt, is_solution, parse_expression, parse_problem
from metarl.tasks.subset_sum_traces import NoisySolver, SolverConfig, candidates


@pytest.fixture(scope="module")
def task() -> SubsetSumTask:
    return SubsetSumTask()


PROMPT = format_prompt([3, 8, 5, 12, 9], 20)


# ---------------------------------------------------------------- registry


CONF = Path(__file__).resolve().parents[1] / "conf"


def test_build_task_from_a_config_node_or_an_object():
    t = build_task({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 4})
    assert t.level() == LEVELS[4]
    assert build_task(t) is t
    assert isinstance(build_task(OmegaConf.load(CONF / "task" / "subset_sum.yaml").task), SubsetSumTask)
    with pytest.raises(ConfigError, match=r"task\.task: Error locating target 'metarl\.tasks\.NoSuchTask'"):
        build_task({"_target_": "metarl.tasks.NoSuchTask"})
    with pytest.raises(ConfigError, match=r"task\.task='subset_sum': a task is a mapping with `_target_`"):
        build_task("subset_sum")  # short names are gone: the config-group files are the registry
    with pytest.raises(ValueError, match="unknown difficulty 9"):
        SubsetSumTask(difficulty=9)


# ---------------------------------------------------------------- generators and splits


@pytest.mark.parametrize("difficulty", sorted(LEVELS))
def test_generated_problems_are_solvable_by_their_gold_answer(task, difficulty):
    lv = LEVELS[difficulty]
    n = 30
    for split in ("train", "test"):
        for p in task.generate(split, n, seed=3, difficulty=difficulty):
            assert set(p) >= {"prompt", "answer", "id"}
            assert isinstance(p["answer"], str)
            assert parse_problem(p["prompt"]) == (p["numbers"], p["target"])
            assert len(p["numbers"]) == lv.n_numbers == len(set(p["numbers"]))
            assert all(1 <= v <= lv.max_value for v in p["numbers"])
            terms = parse_expression(p["answer"])
            assert lv.min_terms <= len(terms) <= lv.max_terms
            assert task.verify(p["answer"], p["answer"], p["prompt"])
            assert p["target"] > 0 and p["target"] not in p["numbers"]


def test_generation_is_deterministic_and_seed_dependent(task):
    a = task.generate("train", 50, seed=7, difficulty=3)
    assert a == task.generate("train", 50, seed=7, difficulty=3)
    assert a != task.generate("train", 50, seed=8, difficulty=3)
    assert a[:10] == task.generate("train", 10, seed=7, difficulty=3)  # a prefix, whatever n
    assert len({p["id"] for p in a}) == len(a)


def test_train_and_test_splits_are_disjoint_by_problem(task):
    """No problem (numbers as a set, and target) is in both splits, whatever the seed or the order."""
    for d in (1, 2, 3):
        train = {task.problem_key(p["numbers"], p["target"]) for s in range(3)
                 for p in task.generate("train", 150, seed=s, difficulty=d, allow_fewer=True)}
        test = {task.problem_key(p["numbers"], p["target"]) for s in range(3)
                for p in task.generate("test", 40, seed=s, difficulty=d, allow_fewer=True)}
        assert train and test and not train & test
    # the split is a property of the problem, not of how it is written
    assert task.split_of([3, 8, 5], 11) == task.split_of([5, 3, 8], 11)


def test_split_fraction_and_stable_hash():
    keys = [f"k{i}" for i in range(4000)]
    frac = sum(split_of(k, 0.2) == "test" for k in keys) / len(keys)
    assert 0.17 < frac < 0.23
    assert stable_hash("abc") == 0xBA7816BF8F01CFEA  # first 8 bytes of sha256("abc"): same in every process


def test_small_level_is_exhausted_with_a_clear_error(task):
    with pytest.raises(ValueError, match="too few distinct test problems"):
        task.generate("test", 1000, difficulty=1)
    allp = task.generate("test", 1000, difficulty=1, allow_fewer=True)
    assert 10 < len(allp) < 1000 and len({p["id"] for p in allp}) == len(allp)
    with pytest.raises(ValueError, match="unknown split"):
        task.generate("validation", 3)


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize("pred,ok", [
    ("8+12", True), ("12+8", True), (" 8 + 12 ", True), ("3+5+12", True), ("9+8+3", True),
    ("12-3+8+3", False),      # reuses 3
    ("8+8+5-1", False),       # reuses 8, 1 is not a number of the problem
    ("20", False),            # 20 is the target, not a given number
    ("11+9", False),          # 11 is not given
    ("8+13-1", False),        # 13 and 1 not given
    ("3+8", False),           # wrong sum
    ("-12+8+12+9+3", False),  # uses 12 twice
    ("12+9-8+3+5-1", False),
    ("8*2+4", False), ("8++12", False), ("8+12=20", False), ("", False), (None, False),
    ("eval('8+12')", False), ("__import__('os')", False), ("8+12\n", True), ("8\u221212", False),
    ("5+12+3", True), ("9+12-5+3+8-3", False),
])
def test_verify_examples(task, pred, ok):
    assert task.verify(pred, "8+12", PROMPT) is ok


def test_verify_adversarial_inputs_are_rejected_quickly(task):
    huge = "9" * 10_000 + "+1"
    assert task.verify(huge, "8+12", PROMPT) is False
    assert parse_expression("1" * 7) is None  # more than MAX_DIGITS digits
    assert parse_expression("+".join(["1"] * 17)) is None  # more than MAX_TERMS terms
    assert parse_expression("1" + "+1" * (MAX_EXPR_CHARS // 2)) is None  # too long
    assert task.verify("\x00" * 100, "8+12", PROMPT) is False
    assert task.verify("٣+٥", "8+12", PROMPT) is False  # non-ASCII digits are not numbers here


def test_verify_counts_duplicates_in_the_prompt():
    assert is_solution([4, 4], [4, 4, 1], 8)
    assert not is_solution([4, 4], [4, 1, 2], 8)
    assert is_solution([-3, 23], [3, 23], 20)


def test_verify_needs_the_prompt(task):
    with pytest.raises(ValueError, match="needs the problem prompt"):
        task.verify("8+12", "8+12", "")
    assert parse_problem("Numbers: 3 8 5. Target: 11.") == ([3, 8, 5], 11)
    assert parse_problem("Target: 11. Numbers: 3 8 5.\n") == ([3, 8, 5], 11)  # either order of the two fields
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    assert task.verify("8+12", "8+12", chat)  # chat-message prompts are read too
    assert task.verify(20, "8+12", PROMPT) is False  # a non-string prediction is not an expression


# ---------------------------------------------------------------- extractor


@pytest.mark.parametrize("text,expected", [
    ("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise><verify>8+12=20 correct</verify>",
     "8+12"),
    ("<attempt>3+9</attempt>", "3+9"),
    ("<verify>3+9=12!=20 incorrect</verify>", None),
    ("<revise>8+12</revise>", "8+12"),
    ("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+1", "8+1"),  # truncated stream
    ("<attempt>3+9</attempt><verify>12!=20</verify><answer>8+12</answer>", "8+12"),
    ("8 + 12</answer>", "8+12"),  # a forced answer read on its own
    ("8+12", "8+12"),             # untagged text is one block
    ("<attempt>3+9=12</attempt>", "3+9"),  # the part before '=' is the answer
    ("<attempt>hmm</attempt>", None),
    ("<attempt>3+9</attempt><revise>no idea</revise>", "3+9"),  # a block with no expression changes nothing
    ("", None),
])
def test_extract_answer(task, text, expected):
    assert task.extract_answer(text) == expected


def test_extract_answer_is_the_last_of_concatenated_episodes(task):
    episodes = ["<attempt>3+9</attempt>", "<verify>3+9=12!=20 incorrect</verify>", "<revise>8+12</revise>",
                "<verify>8+12=20 correct</verify>"]
    per_episode = [task.extract_answer(e) for e in episodes]
    assert per_episode == ["3+9", None, "8+12", None]
    assert task.extract_answer("".join(episodes)) == "8+12"
    assert task.verify(task.extract_answer("".join(episodes)), "8+12", PROMPT)
    assert not task.verify(task.extract_answer("".join(episodes[:2])), "8+12", PROMPT)


def test_tagged_blocks_keep_unknown_tags_inside_content():
    assert tagged_blocks("<attempt>1<b>2</attempt>") == [("attempt", "1<b>2")]


def test_verdict_and_format(task):
    assert task.verdict("12!=20 incorrect") is False
    assert task.verdict("8+12=20 correct") is True
    assert task.verdict("not sure") is None
    good = ("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify>"
            "<revise>8+12</revise><verify>8+12=20 correct</verify>")
    assert task.follows_format(good)
    assert not task.follows_format(good + "x")
    assert not task.follows_format("<revise>8+12</revise><verify>correct</verify>")  # must open with an attempt
    assert not task.follows_format("<attempt>3+9</attempt><verify>maybe</verify>")  # verify states no verdict
    assert not task.follows_format("<attempt>3+9</attempt>")  # never verified
    checks = task.verification_checks(good, PROMPT)
    assert checks == [(False, False), (True, True)]
    assert task.verification_checks("<attempt>3+9</attempt><verify>3+9=20 correct</verify>", PROMPT) == [(True, False)]


# ---------------------------------------------------------------- synthetic traces


def test_candidates_cover_the_level():
    cands = candidates([1, 2, 3, 4], LEVELS[2])
    assert len(cands) == 6 and [1, 2] in cands and [3, 4] in cands
    signed = candidates([1, 2, 3], Level(3, 9, 2, 3, "+-"))
    assert len(signed) == 3 * 2 + 1 * 4 and [1, -2, 3] in signed


def test_solver_traces_parse_back_and_agree_with_the_verifier(task):
    """Every synthetic trace follows the format, its rounds are what the text says, and the truth
    of every verify episode is the verifier's."""
    solver = NoisySolver(task.level(2), SolverConfig(p_correct=0.3, p_slip=0.2, p_continue=0.9, max_attempts=4))
    rng = random.Random(0)
    problems = task.generate("train", 200, seed=1, difficulty=2)
    n_wrong_first, n_revised, n_slips = 0, 0, 0
    for p in problems:
        tr = solver.trace(p, rng)
        assert task.follows_format(tr.completion), tr.completion
        blocks = tagged_blocks(tr.completion)
        assert len(blocks) == 2 * len(tr.rounds) <= 8
        checks = task.verification_checks(tr.completion, p["prompt"])
        assert [c[1] for c in checks] == [r.correct for r in tr.rounds]
        assert [c[0] for c in checks] == [r.verdict for r in tr.rounds]
        tried = [task.extract_answer(b) for b in tr.completion.split("</verify>")[:-1]]
        assert len(set(tried)) == len(tried)  # never the same guess twice
        assert all(not r.verdict for r in tr.rounds[:-1])  # it stops at the first "correct"
        n_wrong_first += not tr.rounds[0].correct
        n_revised += len(tr.rounds) > 1
        n_slips += sum(r.verdict != r.correct for r in tr.rounds)
    assert n_wrong_first > 80 and n_revised > 80 and 0 < n_slips < 100


def test_solver_is_deterministic_given_the_rng(task):
    solver = NoisySolver(task.level(3))
    p = task.generate("train", 1, seed=0, difficulty=3)[0]
    assert solver.trace(p, random.Random(5)).completion == solver.trace(p, random.Random(5)).completion


def test_forced_answer_follows_the_prefix(task):
    solver = NoisySolver(task.level(2), SolverConfig(p_correct=0.0))
    p = {"prompt": format_prompt([1, 2, 4, 7], 9), "numbers": [1, 2, 4, 7], "target": 9}
    rng = random.Random(0)
    believed = ("<attempt>1+2</attempt><verify>1+2=3!=9 incorrect</verify>"
                "<revise>1+4</revise><verify>1+4=9 correct</verify>")  # a slip: 1+4 is 5, but it is believed
    assert solver.forced_answer(believed, p, rng) == "1+4"  # what the prefix last verified as correct
    assert solver.forced_answer("<attempt>4+7</attempt>", p, rng) == "4+7"  # a pending attempt
    rejected = "<attempt>1+2</attempt><verify>1+2=3!=9 incorrect</verify>"
    for _ in range(20):  # a fresh guess never repeats a rejected one (p_correct=0: only wrong guesses)
        ans = solver.forced_answer(rejected, p, rng)
        assert ans != "1+2" and not task.verify(ans, "", p["prompt"])
    ex = solver.forced_answer_example(solver.trace(p, rng), p, rng)
    assert ex["prompt"].startswith(p["prompt"]) and ex["prompt"].endswith(TAG_PROVER.suffix)
    assert ex["completion"].endswith(TAG_PROVER.answer_stop[0])
    assert task.extract_answer(ex["completion"]) == ex["completion"][: -len("</answer>")]


def test_solver_config_validates():
    with pytest.raises(ValueError, match="p_slip"):
        SolverConfig(p_slip=1.5)
    with pytest.raises(ValueError, match="max_attempts"):
        SolverConfig(max_attempts=0)
