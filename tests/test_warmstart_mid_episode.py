"""TinyRecipe.forced_mid_episode: forced-answer examples cut inside an episode, as the cap cuts a stream."""
from __future__ import annotations

import hashlib
import json
import random
import re

import pytest

from metarl.models.warmstart import TinyRecipe, make_recipe, sft_examples
from metarl.prover import TAG_PROVER
from metarl.tasks.subset_sum import parse_expression
from metarl.tasks.subset_sum_traces import NoisySolver, SolverConfig

#: Computed with the code before forced_mid_episode existed: the default keeps every cached warm start.
KEY_DEFAULT = "104eda2adecb8b0b"
KEY_TEST_FRACTION_04 = "ec4e22168a5b36d6"
KEY_TINY_MRT = "bcf9e2ac89695630"  # conf/model/tiny_mrt.yaml before it set forced_mid_episode
DATA_DEFAULT_2000 = "433f276cf3cccd7c"  # sha256 of json.dumps(sft_examples(TinyRecipe(n_examples=2000)))
DATA_L3_UNIFORM_2000 = "c79f806350053480"  # ... of TinyRecipe(n_examples=2000, difficulty=3, forced_final=None)

MRT = dict(difficulty=3, p_correct=0.2, p_slip=0.05, p_continue=0.95, max_attempts=6)
#: a candidate is stated once its block's closing tag has begun (its "<" written)
STATED = re.compile(r"<(?:attempt|revise)>([^<]*)<")


def _digest(examples) -> str:
    return hashlib.sha256(json.dumps(examples).encode()).hexdigest()[:16]


def _prefix(example: dict[str, str]) -> str:
    """The trace prefix of a forced-answer example (the problem's prompt ends with its only newline)."""
    assert example["prompt"].endswith(TAG_PROVER.suffix)
    return example["prompt"][: -len(TAG_PROVER.suffix)].rsplit("\n", 1)[1]


def test_the_default_leaves_the_keys_and_the_data_unchanged():
    assert TinyRecipe().forced_mid_episode == 0.0
    assert TinyRecipe().key() == KEY_DEFAULT
    assert TinyRecipe(test_fraction=0.4).key() == KEY_TEST_FRACTION_04
    assert TinyRecipe(**MRT).key() == KEY_TINY_MRT
    assert _digest(sft_examples(TinyRecipe(n_examples=2000))) == DATA_DEFAULT_2000
    assert _digest(sft_examples(TinyRecipe(n_examples=2000, difficulty=3, forced_final=None))) == DATA_L3_UNIFORM_2000
    # a non-default value is a new recipe
    assert make_recipe(forced_mid_episode=0.3).key() not in (KEY_DEFAULT, make_recipe(forced_mid_episode=0.5).key())


def test_mid_episode_examples_are_cut_inside_an_episode_and_answer_the_last_stated_candidate():
    r = make_recipe(n_examples=300, forced_fraction=1.0, forced_mid_episode=1.0, forced_rule="last", **MRT)
    fresh = 0
    for e in sft_examples(r):
        prefix = _prefix(e)
        assert prefix and not re.search(r"</(?:attempt|verify|revise)>$", prefix)  # strictly inside an episode
        answer = e["completion"][: -len(TAG_PROVER.answer_stop[0])]
        assert e["completion"].endswith(TAG_PROVER.answer_stop[0]) and parse_expression(answer) is not None
        stated = STATED.findall(prefix)
        if stated:
            assert answer == "".join(stated[-1].split())  # the "last" rule; an unfinished expression is not stated
        else:
            fresh += 1  # cut inside the first attempt's expression: a fresh guess
    assert fresh < 300 // 2


def test_the_share_of_mid_episode_cuts_and_the_believed_rule():
    r = make_recipe(n_examples=600, forced_fraction=1.0, forced_final=1.0, forced_mid_episode=0.5, **MRT)
    mid = [not _prefix(e).endswith("</verify>") for e in sft_examples(r)]
    assert 0.4 < sum(mid) / len(mid) < 0.6  # forced_final=1 puts every other forced answer after the whole trace
    solver = NoisySolver(r.task().level(), SolverConfig())
    p = {"prompt": "Numbers: 1 2 4 7 8. Target: 9.\n", "numbers": [1, 2, 4, 7, 8], "target": 9}
    # a right candidate the trace rejects by a slip, then a wrong one, cut inside the second verification
    from metarl.tasks.subset_sum_traces import SolverRound, SolverTrace

    completion = ("<attempt>1+8</attempt><verify>1+8=10!=9 incorrect</verify>"
                  "<revise>2+4</revise><verify>2+4=6!=9 incorrect</verify>")
    trace = SolverTrace(p["prompt"], completion, [SolverRound([1, 8], True, 10, False), SolverRound([2, 4], False, 6, False)])
    seen = set()
    for seed in range(60):
        for rule in ("last", "believed"):
            e = solver.forced_answer_example(trace, p, random.Random(seed), p_final=0.0, rule=rule, p_mid=1.0)
            prefix = _prefix(e)
            seen.add(prefix)
            answer = e["completion"][: -len(TAG_PROVER.answer_stop[0])]
            if "<revise>2+4<" in prefix and (rule == "last" or "6!=9 incorrect<" not in prefix):
                assert answer == "2+4"  # the last / pending candidate: the one being verified
            elif "<attempt>1+8<" in prefix and rule == "last":
                assert answer == "1+8"  # the right candidate restated after its (wrong) rejection
            elif "<attempt>1+8<" in prefix and "<revise>" not in prefix and "10!=9 incorrect<" not in prefix:
                assert answer == "1+8"  # believed: pending until the verdict is complete
    assert len(seen) > 20
    with pytest.raises(ValueError, match="forced_mid_episode"):
        make_recipe(forced_mid_episode=1.5)


def test_rejected_right_examples_restate_the_right_candidate_a_slip_rejected():
    """TinyRecipe.forced_rejected_right: forced answers right after a verification that wrongly rejected a right
    candidate; the answer is that candidate (what the "last" rule answers there), the default leaves keys alone."""
    assert TinyRecipe().forced_rejected_right == 0.0 and TinyRecipe(**MRT).key() == KEY_TINY_MRT
    keys = {make_recipe(**MRT).key(), make_recipe(**MRT, forced_rejected_right=0.2).key(),
            make_recipe(**MRT, forced_rejected_right=0.4).key()}
    assert len(keys) == 3
    r = make_recipe(n_examples=200, forced_fraction=1.0, forced_rejected_right=1.0, **MRT)
    solver = NoisySolver(r.task().level(), r.solver_config())
    rounds = []
    for e in sft_examples(r):
        prefix = _prefix(e)
        answer = e["completion"][: -len(TAG_PROVER.answer_stop[0])]
        head = e["prompt"].split("\n", 1)[0]
        target = int(re.search(r"Target: (-?\d+)", head).group(1))
        assert sum(parse_expression(answer)) == target  # the candidate is right ...
        assert prefix.endswith(" incorrect</verify>") and prefix.rsplit("<verify>", 1)[1].startswith(answer + "=")
        assert solver.forced_answer(prefix, {"numbers": [], "target": target}, random.Random(0), rule="last") == answer
        # ... every earlier candidate is wrong and rightly rejected
        for expr in STATED.findall(prefix)[:-1]:
            assert sum(parse_expression(expr)) != target
        rounds.append(prefix.count("<verify>"))
    assert min(rounds) == 1 and max(rounds) == MRT["max_attempts"]  # 0..max_attempts-1 wrong rounds first
    with pytest.raises(ValueError, match="forced_rule='last'"):
        make_recipe(forced_rejected_right=0.2, forced_rule="believed")
    with pytest.raises(ValueError, match=r"forced_rejected_right must lie in \[0, 1\]"):
        make_recipe(forced_rejected_right=1.5)


def test_mid_episode_cuts_inside_verify_blocks_only_answer_the_verified_candidate():
    r = make_recipe(n_examples=300, forced_fraction=1.0, forced_mid_episode=1.0, forced_mid_blocks="verify", **MRT)
    assert r.key() != make_recipe(forced_mid_episode=1.0, **MRT).key()
    for e in sft_examples(r):
        prefix = _prefix(e)
        answer = e["completion"][: -len(TAG_PROVER.answer_stop[0])]
        tail = prefix[max(prefix.rfind("</attempt>") + 10, prefix.rfind("</revise>") + 9):]
        assert tail and (tail.startswith("<verify>") or "<verify>".startswith(tail))  # inside a verify block,
        assert not tail.endswith("</verify>")  # strictly (a cut in its opening tag included)
        assert answer == "".join(STATED.findall(prefix)[-1].split())  # the candidate it verifies
    with pytest.raises(ValueError, match="forced_mid_blocks"):
        make_recipe(forced_mid_blocks="attempt")


def test_length_sentence_examples_carry_l1s_sentence_with_a_random_target():
    """TinyRecipe.length_sentence (conf/model/tiny_l1.yaml): whole traces whose prompt ends with L1's sentence, as
    LCPO training writes it (metarl.rewards.budget.budget_prompt), N unrelated to the trace; the default is off and
    keeps every key and the data (the pins above)."""
    from metarl.rewards.budget import budget_prompt

    assert TinyRecipe().length_sentence == 0.0 and TinyRecipe().key() == KEY_DEFAULT
    r = make_recipe(length_sentence=1.0, length_targets=[32, 96], forced_fraction=0.0, n_examples=400)
    assert r.length_targets == (32, 96) and r.key() == make_recipe(length_sentence=1.0, length_targets=(32, 96),
                                                                   forced_fraction=0.0, n_examples=400).key()
    assert r.key() not in (KEY_DEFAULT, make_recipe(length_sentence=0.5, length_targets=[32, 96]).key())
    sentence = re.compile(r"^(Numbers: [\d ]+\. Target: \d+\.) Think for (maximum )?(\d+) tokens\.\n$")
    plain = sft_examples(make_recipe(forced_fraction=0.0, n_examples=400))
    seen = set()
    for ex in sft_examples(r):
        m = sentence.match(ex["prompt"])
        assert m, ex["prompt"]
        mode, n = ("max" if m.group(2) else "exact"), int(m.group(3))
        seen.add((mode, n))
        assert budget_prompt(m.group(1) + "\n", n, mode) == ex["prompt"]  # exactly what training writes
        assert ex["completion"].startswith("<attempt>")
    assert seen == {(m, n) for m in ("exact", "max") for n in (32, 96)}
    # without the option no prompt carries it
    assert all(sentence.match(ex["prompt"]) is None for ex in plain)
    half = sft_examples(make_recipe(length_sentence=0.5, n_examples=2000))
    share = sum(" Think for " in ex["prompt"] for ex in half if not ex["prompt"].endswith(TAG_PROVER.suffix)) / \
        sum(not ex["prompt"].endswith(TAG_PROVER.suffix) for ex in half)
    assert 0.45 < share < 0.55  # only whole traces, about half of them; forced-answer prompts never
    assert not any(" Think for " in ex["prompt"] for ex in half if ex["prompt"].endswith(TAG_PROVER.suffix))
    for bad in (dict(length_sentence=1.5), dict(length_sentence=0.5, length_targets=[]),
                dict(length_sentence=0.5, length_targets=[0, 32])):
        with pytest.raises(ValueError, match="length_"):
            make_recipe(**bad)
