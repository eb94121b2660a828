"""Meta-prover calibration: the statistics against hand-computed values, the verdict, the mu_calibration monitor,
the pre-flight check the trainer runs, the report section, and metarl-calibrate (input path, sampling path, errors)."""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from metarl.calibration import (Thresholds, auroc, calibrate, calibration_bins, episode_rows, grader_correctness,
                                j_ses, pearson, preflight)
from metarl.monitors import HealthConfig, MuCalibration, build_calibration_monitor, replay_traces
from metarl.registry import ConfigError
from metarl.types import Episode, Trace

ROOT = Path(__file__).resolve().parents[1]


def rec(outcome, js, kinds, correct=(), step=None):
    """A trace record as rollouts.jsonl holds it: J_init = js[0], episode i has J = js[i + 1]; ``correct`` gives
    the generation_correctness of the attempt / revise episodes in order."""
    marks = iter(correct)
    eps = []
    for k, j in zip(kinds, js[1:]):
        rewards = {"generation_correctness": float(next(marks))} if k in ("attempt", "revise") else {}
        eps.append({"kind": k, "text": k, "info": {"J": j}, "rewards": rewards})
    out = {"prompt": "p", "completion": "".join(kinds), "answer": "a", "outcome": float(outcome),
           "meta": {"J_init": js[0]}, "episodes": eps}
    if step is not None:
        out["step"] = step
    return out


# J_last = 0.75, 0.5 (correct traces), 0.25, 0.5 (wrong traces); verify after correct: +0.25, -0.5; after wrong:
# -0.25, +0.5
HAND = [rec(1, [0.0, 0.5, 0.75], ["attempt", "verify"], [1]),
        rec(1, [0.0, 1.0, 0.5], ["attempt", "verify"], [1]),
        rec(0, [0.25, 0.5, 0.25], ["attempt", "verify"], [0]),
        rec(0, [0.0, 0.0, 0.5, 0.5], ["attempt", "verify", "revise"], [0, 0])]


def test_statistics_match_hand_computed_values():
    cal = calibrate(HAND, bins=2, m=4)
    # Pearson: x̄ = ȳ = 0.5, Sxy = 0.25, Sxx = 0.125, Syy = 1 -> 0.25 / sqrt(0.125)
    assert cal.correlation == pytest.approx(0.25 / math.sqrt(0.125))
    assert cal.correlation == pytest.approx(0.7071067811865476)
    # AUROC: (0.75 > 0.25) + (0.75 > 0.5) + (0.5 > 0.25) + tie(0.5, 0.5)/2 over 4 pairs
    assert cal.auroc == pytest.approx(3.5 / 4)
    assert (cal.J_last_correct, cal.J_last_wrong) == (pytest.approx(0.625), pytest.approx(0.375))
    assert cal.J_init == pytest.approx(0.0625) and cal.accuracy == 0.5 and cal.n_traces == 4 and cal.n_episodes == 9
    assert cal.verify_after_correct.n == 2 and cal.verify_after_correct.mean == pytest.approx(-0.125)
    assert cal.verify_after_correct.std == pytest.approx(math.sqrt((0.375 ** 2 * 2) / 1))
    assert cal.verify_after_wrong.n == 2 and cal.verify_after_wrong.mean == pytest.approx(0.125)
    kinds = cal.delta_by_kind
    assert list(kinds) == ["attempt", "verify", "revise"]
    assert kinds["attempt"].mean == pytest.approx((0.5 + 1.0 + 0.25 + 0.0) / 4) and kinds["attempt"].n == 4
    assert kinds["verify"].mean == pytest.approx(0.0) and kinds["revise"].n == 1 and math.isnan(kinds["revise"].std)
    # bins of width 0.5: [0, 0.5) holds the 0.25 trace (wrong), [0.5, 1] the others (2 of 3 correct)
    assert [(b.n, b.success_rate) for b in cal.bins] == [(1, 0.0), (3, pytest.approx(2 / 3))]
    assert cal.bins[1].mean_J == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    # Monte Carlo noise with m = 4: SE(J) = sqrt(J(1 - J)/4); SE of a ΔĴ combines both ends
    assert j_ses(HAND[0], m=4) == [0.0, 0.25, pytest.approx(math.sqrt(0.75 * 0.25 / 4))]
    rows = episode_rows(HAND, m=4)
    assert rows[1]["se_delta"] == pytest.approx(math.sqrt(0.25 ** 2 + 0.75 * 0.25 / 4))
    assert cal.delta_se == pytest.approx(sum(r["se_delta"] for r in rows) / 9)
    assert cal.snr == pytest.approx(cal.delta_std / cal.delta_se)
    d = cal.to_dict()
    assert d["verdict"] == "uninformative" and d["bins"][0]["n"] == 1 and d["thresholds"]["correlation"] == 0.8
    json.dumps(d)  # plain data


def test_pearson_and_auroc_edge_cases():
    r, why = pearson([0.1, 0.2, 0.3], [1, 1, 1])
    assert math.isnan(r) and "every trace correct" in why
    r, why = pearson([0.5, 0.5], [0, 1])
    assert math.isnan(r) and "Ĵ_last has no spread" in why
    assert auroc([0.5, 0.5, 0.5], [1, 0, 1]) == (0.5, None)  # all tied
    assert auroc([0.2, 0.9], [0, 1]) == (1.0, None) and auroc([0.9, 0.2], [0, 1]) == (0.0, None)
    assert math.isnan(auroc([0.1], [0])[0])
    cal = calibrate([rec(1, [0.0, 0.5], ["attempt"], [1]), rec(1, [0.0, 1.0], ["attempt"], [1])])
    assert math.isnan(cal.correlation) and math.isnan(cal.auroc) and "no wrong trace" in cal.auroc_reason
    assert cal.verdict == "uninformative" and "undefined" in cal.reasons[0]
    assert [b.n for b in calibration_bins([0.0, 0.2, 0.99, 1.0], [0, 0, 1, 1], bins=5)] == [1, 1, 0, 0, 2]


def test_verdict_uses_both_thresholds():
    both = calibrate(HAND)  # correlation 0.707 < 0.8 and verify-after-correct -0.125 < -0.05
    assert both.verdict == "uninformative" and len(both.reasons) == 2
    assert "0.707 < 0.8" in both.reasons[0] and "-0.125" in both.reasons[1]
    assert calibrate(HAND, Thresholds(0.7, -0.2)).verdict == "informative"
    only_verify = calibrate(HAND, Thresholds(0.7, -0.1))
    assert only_verify.verdict == "uninformative" and len(only_verify.reasons) == 1 and "verify" in only_verify.reasons[0]
    only_corr = calibrate(HAND, Thresholds(0.8, -0.2))
    assert len(only_corr.reasons) == 1 and "correlation" in only_corr.reasons[0]
    with pytest.raises(ValueError, match="thresholds.correlation"):
        Thresholds(correlation=1.5)
    flat = calibrate([rec(1, [0.0, 0.0], ["attempt"], [1]), rec(0, [0.0, 0.0], ["attempt"], [0])])
    assert flat.verdict == "uninformative" and "check the prover" in flat.reasons[0]
    no_verify = calibrate([rec(1, [0.0, 1.0], ["attempt"], [1]), rec(0, [0.0, 0.0], ["attempt"], [0])])
    assert no_verify.verdict == "informative" and "not checked" in no_verify.notes[0]


def test_attempts_graded_from_trace_objects():
    """Trace objects without a recorded generation_correctness: the grader reads the attempt's text."""
    def trace(text_attempt, js, outcome):
        a = Episode("attempt", 0, len(text_attempt), text_attempt, info={"J": js[1]})
        v = Episode("verify", a.end, a.end + 7, "correct", info={"J": js[2]})
        t = Trace("q", text_attempt + "correct", answer="7", episodes=[a, v], outcome=outcome)
        t.meta["J_init"] = js[0]
        return t
    traces = [trace("7", [0.0, 1.0, 1.0], 1.0), trace("5", [0.0, 0.0, 0.0], 0.0)]
    assert calibrate(traces).verify_after_correct.n == 0 and calibrate(traces).verify_unknown == 2
    graded = grader_correctness(lambda p, a, prompt="": p == a, lambda text: text.strip())
    cal = calibrate(traces, episode_correct=graded)
    assert (cal.verify_after_correct.n, cal.verify_after_wrong.n, cal.verdict) == (1, 1, "informative")


def test_monitor_trips_on_low_correlation_with_the_numbers():
    mon = MuCalibration(window=64, min_traces=8, correlation=0.8)
    bad = [rec(i % 2, [0.0, 0.5 if i % 4 < 2 else 0.25], ["attempt"], [i % 2]) for i in range(8)]
    assert mon.update(1, bad[:4])["alarm"] == 0.0  # 4 traces < min_traces: not judged
    stats = mon.update(2, bad[4:])
    assert stats["alarm"] == 1.0 and stats["tripped"] == 1.0 and stats["n"] == 8
    assert stats["correlation"] == pytest.approx(0.0)
    assert mon.status.tripped and mon.status.step == 2
    assert "correlation of Ĵ_last with the outcome is 0.000 (trips below 0.8)" in mon.status.message


def test_monitor_trips_when_verifying_a_correct_attempt_lowers_j():
    mon = MuCalibration(window=64, min_traces=4, min_verify=2, verify_after_correct=-0.05)
    good_corr = [rec(1, [0.0, 1.0, 0.9], ["attempt", "verify"], [1]), rec(0, [0.0, 0.0, 0.0], ["attempt", "verify"], [0])]
    stats = mon.update(1, good_corr * 2)
    assert stats["correlation"] == pytest.approx(1.0) and stats["verify_after_correct"] == pytest.approx(-0.1)
    assert stats["alarm"] == 1.0 and "changes Ĵ by -0.100 on average over 2 episodes" in mon.status.message


def test_monitor_quiet_when_calibrated_and_replays_by_step():
    calibrated = [rec(y, [0.0, float(y), float(y)], ["attempt", "verify"], [y], step=s) for s in (1, 2, 3) for y in (0, 1)] * 4
    mon = build_calibration_monitor(HealthConfig(calibration_min_traces=8))
    records = replay_traces(calibrated, mon)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["health/mu_calibration/alarm"] == 0 for r in records) and not mon.status.tripped
    assert records[-1]["health/mu_calibration/n"] == 24 and records[-1]["health/mu_calibration/correlation"] == 1.0
    # every trace wrong: the correlation is undefined, which is not an alarm
    mon = MuCalibration(min_traces=2)
    assert mon.update(1, [rec(0, [0.0, 0.5], ["attempt"], [0])] * 4)["alarm"] == 0.0
    assert mon.update(2, [{"outcome": 1.0, "episodes": []}]) == {}  # no J: not an observation
    with pytest.raises(ConfigError, match="health.calibration_correlation"):
        HealthConfig(calibration_correlation=2.0)


def test_preflight_watch_warns_once_and_writes_its_verdict(tmp_path, caplog):
    from metarl.trainer.callbacks import CalibrationWatch

    batch = [rec(i % 2, [0.0, 0.5, 0.25 if i % 2 else 0.5], ["attempt", "verify"], [i % 2]) for i in range(16)]
    mc = SimpleNamespace(name="mc_progress", fn=SimpleNamespace(m=8), records_J=True, needs_engine=True)
    scorer = SimpleNamespace(rewards=[mc], grader=lambda p, a, prompt="": p == a, extract_answer=lambda t: t)
    watch = CalibrationWatch.install(scorer, {"calibration_min_traces": 8}, tmp_path)
    assert watch is not None
    with caplog.at_level(logging.WARNING, logger="metarl"):  # the trainer's calls, one per training step
        watch.on_scored_batch(batch, 1)
        watch.on_scored_batch(batch, 2)
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("first scored batch (16 traces): μ is uninformative" in w for w in warnings) == 1
    assert sum("mu_calibration tripped at step 1" in w for w in warnings) == 1
    saved = json.loads((tmp_path / "calibration_preflight.json").read_text())
    assert saved["step"] == 1 and saved["calibration"]["verdict"] == "uninformative"
    logs = {"metarl/outcome_accuracy": 0.5}
    watch.on_log(None, None, None, logs=logs)
    assert logs["health/mu_calibration/tripped"] == 1.0 and logs["health/mu_calibration/n"] == 32
    # no mc_progress reward, or health.calibration=false: nothing is installed
    assert CalibrationWatch.install(SimpleNamespace(rewards=[]), None) is None
    assert CalibrationWatch.install(scorer, {"calibration": False}) is None
    assert preflight(batch[:4]) is None  # too few traces to judge


def write_run(root: Path, traces, config="name: obj2_mc_progress\nseed: 0\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(config)
    (root / "rollouts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (root / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "metarl/outcome_accuracy": 0.5}) + "\n"
                                                for s in (1, 2, 3)))
    return root


def test_report_shows_calibration_and_the_monitor(tmp_path):
    from analysis.report import build_report

    traces = [{**t, "step": s} for s in (1, 2) for t in HAND * 10]
    run = write_run(tmp_path / "run", traces)
    md = build_report([run], tmp_path / "out").read_text()
    assert "## Meta-prover calibration" in md and "| obj2_mc_progress | all logged traces | 80 |" in md
    assert "first step (1)" in md and "**uninformative**" in md
    assert "| mu_calibration | **tripped** | 1 |" in md and "replayed over the logged traces" in md
    assert (tmp_path / "out" / "calibration_obj2_mc_progress.png").stat().st_size > 1000
    assert (tmp_path / "out" / "calibration_obj2_mc_progress.csv").read_text().startswith("lo,hi,n,mean_J")


# --------------------------------------------------------------------------- the command

def compose(*overrides):
    from metarl.config import compose as hydra_compose

    return hydra_compose("calibrate", list(overrides))


def test_cli_input_writes_every_file(tmp_path):
    from metarl.cli.calibrate import run

    src = tmp_path / "scored.jsonl"
    src.write_text("".join(json.dumps({**t, "line": i}) + "\n" for i, t in enumerate(HAND)) + "not json\n")
    out = tmp_path / "out"
    res = run(compose(f"input={src}", f"out={out}", "bins=2"))
    assert sorted(p.name for p in out.iterdir()) == ["calibration.csv", "calibration.json", "calibration.png",
                                                     "calibration_bins.csv"]
    data = json.loads((out / "calibration.json").read_text())
    assert data["calibration"]["correlation"] == pytest.approx(0.7071067811865476)
    assert data["calibration"]["verdict"] == "uninformative" and data["lines_skipped"][0].endswith("line skipped")
    rows = (out / "calibration.csv").read_text().splitlines()
    assert rows[0] == "trace,step,episode,kind,J_prev,J,delta_J,se_delta,outcome,attempt_correct" and len(rows) == 10
    assert rows[2].split(",")[3] == "verify" and rows[2].split(",")[-1] == "1"
    assert (out / "calibration_bins.csv").read_text().splitlines()[1:] == ["0.0,0.5,1,0.25,0.0",
                                                                         f"0.5,1.0,3,{1.75 / 3!r},{2 / 3!r}"]
    assert res["calibration"].n_traces == 4


def test_cli_run_directory_and_step(tmp_path):
    from metarl.cli.calibrate import run

    good = [rec(y, [0.0, float(y), float(y)], ["attempt", "verify"], [y], step=5) for y in (0, 1)] * 4
    run_dir = write_run(tmp_path / "run", [{**t, "step": 1} for t in HAND] + good)
    res = run(compose(f"input={run_dir}", f"out={tmp_path / 'o1'}", "step=last"))
    assert res["calibration"].verdict == "informative" and res["calibration"].n_traces == 8
    res = run(compose(f"input={run_dir}", f"out={tmp_path / 'o2'}", "step=first"))
    assert res["calibration"].n_traces == 4 and res["calibration"].verdict == "uninformative"


@pytest.mark.parametrize("overrides, message", [
    (["input=/nonexistent/x.jsonl"], "does not exist"),
    (["input={tmp}"], "without rollouts.jsonl or scored.jsonl"),
    (["input={tmp}/noj.jsonl"], "no trace carries Ĵ on every prefix"),
    (["input={tmp}/noj.jsonl", "step=last"], "carry no training step"),
    (["input={tmp}/noj.jsonl", "m=0"], "m=0 must be a whole number >= 1"),
    (["input={tmp}/noj.jsonl", "extract=middle"], "extract='middle'"),
    (["input={tmp}/noj.jsonl", "thresholds.correlation=1.5"], "thresholds.correlation=1.5"),
])
def test_cli_bad_input_is_a_config_error(tmp_path, overrides, message):
    from metarl.cli.calibrate import run

    (tmp_path / "noj.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c", "outcome": 1.0,
                                                    "episodes": [{"kind": "other", "info": {}}]}) + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run(compose(*[o.format(tmp=tmp_path) for o in overrides], f"out={tmp_path / 'out'}"))


def test_console_script_exit_codes(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in HAND))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "metarl.cli.calibrate"]
    ok = subprocess.run(base + [f"input={src}", f"run_dir={tmp_path / 'r'}", "strict=true"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 1, ok.stderr[-2000:]  # strict: μ is uninformative on these traces
    assert "verdict: μ is UNINFORMATIVE" in ok.stdout and (tmp_path / "r" / "calibration.png").exists()
    bad = subprocess.run(base + [f"input={tmp_path / 'missing.jsonl'}", f"run_dir={tmp_path / 'r2'}"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("metarl-calibrate: error: input=") and "does not exist" in bad.stderr


def test_cli_samples_and_estimates_j_on_a_random_policy(tmp_path):
    """The sampling path end to end (random tiny policy: J is near 0; what is checked is the plumbing)."""
    from metarl.cli.calibrate import run

    res = run(compose("model=random-tiny", "problems=3", "samples=2", "m=2", "budget.cap=12", "prover.answer_tokens=4",
                      f"out={tmp_path}"))
    cal = res["calibration"]
    assert cal.n_traces == 6 and cal.m == 2 and res["problems"] == 3 and res["samples"] == 2
    assert set(res["seconds"]) == {"load", "sample", "estimate_J"}
    assert json.loads((tmp_path / "calibration.json").read_text())["m"] == 2
