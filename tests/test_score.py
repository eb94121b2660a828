"""metarl-score end to end: schema, one output line per input line, bad lines, segmentation-only mode."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from metarl.config import conf_dir
from metarl.cli.score import score_file
from metarl.registry import ConfigError

SAMPLE = Path(conf_dir()).parent / "metarl" / "data" / "sample_traces.jsonl"


def _cfg(overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose("score", overrides=overrides)


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_obj1_scores_on_sample(tmp_path):
    out = tmp_path / "o.jsonl"
    score_file(_cfg([f"input={SAMPLE}", f"output={out}", "verifier=subset_sum",
                     "rewards=[outcome,generation_correctness,verification_correctness]"]))
    rows = _rows(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    first = rows[0]
    assert [e["kind"] for e in first["episodes"]] == ["attempt", "verify", "revise", "verify"]
    assert [e["rewards"].get("generation_correctness") for e in first["episodes"]] == [0.0, None, 1.0, None]
    assert [e["rewards"].get("verification_correctness") for e in first["episodes"]] == [None, 1.0, None, 1.0]
    assert first["outcome"] == 1.0
    assert first["rewards"]["dense"] == 3.0 and first["rewards"]["total"] == 4.0  # 3 dense + alpha(1) x outcome
    second = rows[1]  # a wrong attempt the model calls correct
    assert second["episodes"][1]["rewards"]["verification_correctness"] == 0.0
    for r in rows:
        for e in r["episodes"]:
            assert r["completion"][e["start"]:e["end"]] == e["text"]


def test_segmentation_only_mrt(tmp_path):
    out = tmp_path / "o.jsonl"
    score_file(_cfg([f"input={SAMPLE}", f"output={out}", "segmenter=mrt", "rewards=[]"]))
    r17 = _rows(out)[3]  # "17*3" trace: paragraphs 0..5, "Wait" at 1 (too close), double-check at 4
    kinds = [e["kind"] for e in r17["episodes"]]
    assert len(r17["episodes"]) == 2 and kinds[0] == "attempt"
    assert r17["episodes"][1]["text"].startswith("But let me double-check")
    assert all(e["rewards"] == {} for e in r17["episodes"])


def test_bad_lines_are_reported_and_kept_in_place(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    good = json.dumps({"prompt": "p", "completion": "The answer is 4.", "answer": "4"})
    src.write_text("\n".join([good, "{not json", json.dumps({"prompt": "p"}), json.dumps([1, 2]),
                              json.dumps({"prompt": "p", "completion": "c", "target_tokens": -3}), good]) + "\n")
    out = tmp_path / "o.jsonl"
    counts = score_file(_cfg([f"input={src}", f"output={out}"]))
    rows = _rows(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [("error" in r) for r in rows] == [False, True, True, True, True, False]
    assert "completion" in rows[2]["error"] and "line 3" in rows[2]["error"]
    assert counts == {"lines": 6, "scored": 2, "bad": 4, "no_answer": 0, "ungraded": 0, "output": str(out)}
    assert "line 2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="line 2"):
        score_file(_cfg([f"input={src}", f"output={out}", "on_bad_line=fail"]))


def test_token_spans_with_a_tokenizer(tmp_path):
    out = tmp_path / "o.jsonl"
    score_file(_cfg([f"input={SAMPLE}", f"output={out}", "tokenizer=char", "rewards=[]"]))
    for r in _rows(out):
        eps = r["episodes"]
        assert eps[0]["token_start"] == 0 and eps[-1]["token_end"] == len(r["completion"])  # 1 char = 1 token
        assert all(a["token_end"] == b["token_start"] for a, b in zip(eps, eps[1:]))


def test_cli_and_missing_model_message(tmp_path):
    exe = Path(sys.executable).with_name("metarl-score")
    r = subprocess.run([str(exe), f"input={SAMPLE}", "rewards=[likelihood_progress]", f"run_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "need a model" in r.stderr and "model=tiny" in r.stderr
    r = subprocess.run([str(exe), f"input={tmp_path / 'nope.jsonl'}", f"run_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "is not a file" in r.stderr
