"""metarl-score as a newcomer meets it: the README's commands grade metarl's own sample right, or refuse to guess;
and the edges of the command (exit codes, bad lines, traces without an answer, typos, run directories)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import metarl
from metarl.config import conf_dir
from metarl.tasks import SubsetSumTask
from metarl.types import EPISODE_KINDS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(metarl.__file__).resolve().parent / "data" / "sample_traces.jsonl"
SCORE = Path(sys.executable).with_name("metarl-score")


README_INPUTS = ("input=traces.jsonl", "input=t.jsonl", "input=r1.jsonl", "input=metarl/data/sample_traces.jsonl")


def readme_score_commands() -> list[list[str]]:
    """The arguments of every ``metarl-score`` command in the README that needs no model."""
    out = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\.venv/bin/metarl-score (.*?)(?:\s+#.*)?$", line.strip())
        if m:
            args = shlex.split(m.group(1))
            if not any(a.startswith("model=") for a in args):
                out.append(args)
    return out


def score(args: list[str], tmp_path: Path, name: str = "out.jsonl"):
    from metarl.cli.score import score_file

    out = tmp_path / name
    args = [f"input={SAMPLE}" if a in README_INPUTS else a for a in args]
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("score", overrides=[*args, f"output={out}", f"run_dir={tmp_path}"])
    counts = score_file(cfg)
    return counts, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def truth() -> list[tuple[float, list[float]]]:
    """(outcome, verdict rewards of the verify episodes) of every sample line, computed here: the subset-sum
    lines by the task's verifier, the math lines by hand (17*3 = 51, the positive root of x^2 = 16 is 4)."""
    task = SubsetSumTask()
    out = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("task") == "subset_sum":
            ok = task.verify(task.extract_answer(rec["completion"]), rec["answer"], rec["prompt"])
            verdicts = []
            attempt = None
            for tag, content in re.findall(r"<(attempt|revise|verify)>(.*?)</\1>", rec["completion"]):
                if tag == "verify":
                    right = task.verify(attempt, rec["answer"], rec["prompt"])
                    said = not content.rstrip().endswith("incorrect")
                    verdicts.append(1.0 if said == right else 0.0)
                else:
                    attempt = content
            out.append((float(ok), verdicts))
        else:
            out.append((1.0, []))
    return out


def test_the_truth_of_the_sample_is_what_a_reader_checks_by_hand():
    # 8+12=20 from {3,8,5,12,9}: right, both verdicts right; 4+2=6 is not 13, called correct; 5+9=14 right.
    assert truth() == [(1.0, [1.0, 1.0]), (0.0, [0.0]), (1.0, [1.0]), (1.0, []), (1.0, [])]


def test_readme_commands_grade_the_sample_file_right(tmp_path):
    commands = readme_score_commands()
    assert len(commands) >= 3, commands
    expected = truth()
    for i, args in enumerate(commands):  # the outcome is graded whatever the rewards
        counts, recs = score(args, tmp_path, f"out{i}.jsonl")
        assert counts["scored"] == len(expected), (args, counts)
        verifier = any(a.startswith("verifier=") for a in args)
        assert counts["ungraded"] == (2 if verifier else 0), (args, counts)
        for rec, (outcome, verdicts) in zip(recs, expected, strict=True):
            if rec.get("task") is None and verifier:
                # a math question graded by the subset-sum verifier: it cannot tell, and says so
                assert rec["outcome"] is None and rec["meta"]["ungraded"], (args, rec)
                continue
            assert rec["outcome"] == outcome, (args, rec["line"], rec["outcome"], rec.get("meta"))
            if any("verification_correctness" in a for a in args):
                got = [e["rewards"]["verification_correctness"] for e in rec["episodes"] if e["kind"] == "verify"]
                assert got == verdicts, (args, rec["line"], got)


def test_verdicts_with_the_readme_first_command_and_verification_rewards(tmp_path):
    counts, recs = score(["input=t.jsonl", "rewards=[outcome,verification_correctness]"], tmp_path)
    got = [(r["outcome"], [e["rewards"]["verification_correctness"] for e in r["episodes"] if e["kind"] == "verify"])
           for r in recs]
    assert got == truth()
    assert counts["ungraded"] == 0 and counts["no_answer"] == 0


# ---- the math grader and answer extraction, without a task ----------------------------------------------------

@pytest.fixture(scope="module")
def math_grader():
    from metarl.grading import MathGrader, build_grader

    return build_grader(MathGrader())


def test_tag_format_answers_are_the_last_attempt_revise_or_answer():
    from metarl.grading import extract_answer

    text = "<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise><verify>8+12=20 correct</verify>"
    assert extract_answer(text) == "8+12"
    assert extract_answer(text, "math") == "\\boxed{8+12}"
    assert extract_answer("<attempt>4+2</attempt><verify>4+2=6!=13 correct</verify>", "math") == "\\boxed{4+2}"
    assert extract_answer("<attempt>1</attempt><answer>42</answer>") == "42"
    assert extract_answer("<attempt>4+2</attempt>", "tag") == "4+2"


def test_an_expression_answer_is_never_a_value_match_against_a_number(math_grader):
    prompt = "Numbers: 4 7 2 6. Target: 13.\n"
    # the only number the text ends on is the target: no answer is stated, so the grader cannot tell
    assert math_grader.judge("4+2=6 and the target is 13", "7+6", prompt)[0] is None
    assert math_grader.judge("\\boxed{13}", "7+6", prompt)[0] is None  # same value, another expression
    assert math_grader.judge("\\boxed{6+7}", "7+6", prompt)[0] is None
    assert math_grader.judge("\\boxed{7+6}", "7+6", prompt) == (True, None)
    assert math_grader.judge("<attempt>4+2</attempt>", "7+6", prompt) == (False, None)  # another value: wrong
    assert math_grader("\\boxed{13}", "7+6") is False  # a plain call is still a bool
    assert math_grader("\\boxed{51}", "51") is True and math_grader("so 1/2", "1/2") is True


# ---- metarl-score's edges -------------------------------------------------------------------------------------

def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_score(tmp_path: Path, *args: str):
    return subprocess.run([str(SCORE), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_a_segmenter_failing_on_every_trace_exits_2_with_one_line(tmp_path):
    (tmp_path / "segplug.py").write_text("def seg(text):\n    raise RuntimeError('always fails')\n")
    r = run_score(tmp_path, f"input={SAMPLE}", "segmenter=custom", "segmenter._target_=segplug.seg",
                  "segmenter._partial_=true", f"run_dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("metarl-score: error:")]
    assert len(errors) == 1 and "segmenter" in errors[0], r.stderr[-3000:]


def test_traces_without_an_answer_are_warned_about_and_counted(tmp_path, capsys):
    rec = json.loads(SAMPLE.read_text().splitlines()[0])
    src = write(tmp_path / "in.jsonl", [json.dumps({k: v for k, v in rec.items() if k != "answer"}),
                                         json.dumps(rec)])
    counts, recs = score([f"input={src}"], tmp_path)
    err = capsys.readouterr().err
    assert counts["no_answer"] == 1
    assert "1 trace has no `answer`" in err and "warning" in err
    assert recs[0]["outcome"] is None and recs[1]["outcome"] == 1.0


def test_on_bad_line_fail_keeps_the_lines_scored_before_and_every_bad_line_is_reported(tmp_path, capsys):
    from metarl.registry import ConfigError

    good = SAMPLE.read_text().splitlines()
    src = write(tmp_path / "in.jsonl", [good[0], good[2], "", "{not json", good[3]])
    counts, recs = score([f"input={src}"], tmp_path)
    err = capsys.readouterr().err
    assert counts["bad"] == 2
    assert ":line 3: empty line" in err and ":line 4: not valid JSON" in err
    with pytest.raises(ConfigError, match="line 3: empty line"):
        score([f"input={src}", "on_bad_line=fail"], tmp_path, "fail.jsonl")
    kept = [json.loads(line) for line in (tmp_path / "fail.jsonl").read_text().splitlines()]
    assert [r["line"] for r in kept] == [1, 2] and all("episodes" in r for r in kept)


def test_a_group_typo_lists_the_valid_names(tmp_path):
    from metarl.config import compose as metarl_compose
    from metarl.registry import ConfigError

    with pytest.raises(ConfigError) as e:
        metarl_compose("score", [f"input={SAMPLE}", "rewards=[mc_progres]"])
    assert "mc_progres" in str(e.value) and "mc_progress" in str(e.value) and "verification_correctness" in str(e.value)
    r = run_score(tmp_path, f"input={SAMPLE}", "rewards=[outcome,verifcation_correctness]")
    assert r.returncode == 2 and "verification_correctness" in r.stderr and "Traceback" not in r.stderr


def test_the_episode_kinds_are_documented():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    para = next(p for p in text.split("\n\n") if "episode kind" in p.lower())
    for kind in EPISODE_KINDS:
        assert f"`{kind}`" in para, (kind, para)
    assert "closed" in para.lower() or "only these" in para.lower()


def test_a_configuration_error_leaves_no_run_directory(tmp_path):
    run = tmp_path / "run"
    r = run_score(tmp_path, f"input={tmp_path / 'missing.jsonl'}", f"run_dir={run}")
    assert r.returncode == 2 and "is not a file" in r.stderr
    assert not run.exists(), sorted(p.name for p in run.rglob("*"))
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    r = run_score(tmp_path, f"input={tmp_path / 'missing.jsonl'}", f"run_dir={keep}")
    assert r.returncode == 2 and (keep / "notes.txt").read_text() == "mine"
    exe = Path(sys.executable).with_name("metarl-train")
    r = subprocess.run([str(exe), "recipe=demo_obj1", "seed=-1", f"run_dir={tmp_path / 'train'}"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "seed=-1" in r.stderr
    assert not (tmp_path / "train").exists()
