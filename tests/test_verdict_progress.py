"""bench/verdict_progress.py: exact J's change by episode kind and the first verdict, against hand-computed values."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import verdict_progress as vp  # noqa: E402

QID = "subset_sum/d2/3,5,8,12|20"  # the example of SubsetSumTask.exact_success: J("") = 1/6 at level 2
WRONG_SAYS_INCORRECT = "<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify>"  # J: 1/6 -> 0 -> 0.2
WRONG_SAYS_CORRECT = "<attempt>3+5</attempt><verify>3+5=20 correct</verify>"        # J: 1/6 -> 0 -> 0
RIGHT_SAYS_CORRECT = "<attempt>8+12</attempt><verify>8+12=20 correct</verify>"      # J: 1/6 -> 1 -> 1


def test_progress_by_kind_and_first_verdicts_match_hand_values():
    rows = [{"question_id": QID, "completion": c}
            for c in (WRONG_SAYS_INCORRECT, WRONG_SAYS_CORRECT, RIGHT_SAYS_CORRECT)]
    s = vp.arm_stats(rows)
    assert s["progress"]["attempt"]["n"] == 3
    assert s["progress"]["attempt"]["mean"] == pytest.approx((-1 / 6 - 1 / 6 + 5 / 6) / 3)
    assert s["progress"]["verify"]["mean"] == pytest.approx(0.2 / 3)
    assert s["verdicts"] == {"attempt right, says correct": 1, "attempt wrong, says correct": 1,
                             "attempt wrong, says incorrect": 1}
    # under the "last" rule a verdict never moves J
    assert vp.arm_stats(rows, rule="last")["progress"]["verify"]["mean"] == 0.0


def test_main_reads_the_cap_budget_per_arm_and_refuses_other_ids(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"cap": 64}))
    f = tmp_path / "runs" / "arm" / "seed0" / "bf" / "eval" / "samples.jsonl"
    f.parent.mkdir(parents=True)
    rows = [{"question_id": QID, "completion": WRONG_SAYS_CORRECT, "budget": 64},
            {"question_id": QID, "completion": RIGHT_SAYS_CORRECT, "budget": 128}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = vp.main([str(tmp_path)])
    assert result["budget"] == 64 and result["arms"]["arm"]["streams"] == 1
    assert json.loads((tmp_path / "verdict_progress.json").read_text())["arms"]["arm"]["verdicts"] == \
        {"attempt wrong, says correct": 1}
    with pytest.raises(ValueError, match="not a subset-sum id"):
        vp.question("gsm8k/17")


def test_a_verdict_checks_the_latest_attempt_episode_and_needs_one():
    two = "<attempt>3+5</attempt><revise>8+12</revise><verify>8+12=20 correct</verify>"
    rows = [{"question_id": QID, "completion": c} for c in (two, "<verify>8+12=20 correct</verify>")]
    assert vp.arm_stats(rows)["verdicts"] == {"attempt right, says correct": 1, "no attempt before the verify": 1}
