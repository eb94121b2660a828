"""End to end: fabricate run directories, run analysis.report, check files and CSV numbers."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

# analysis/ is a top-level folder of the repository (not in the installed metarl package): make it
# importable when pytest is started from elsewhere or through the `pytest` script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.report import build_report, main, parse_budgets  # noqa: E402
from metarl.analysis import collect_curves, load_run, read_jsonl  # noqa: E402

T_975_1 = 12.706204736174707  # Student t quantile, 0.975, 1 degree of freedom (two seeds)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path: Path, rows: list, bad_lines: dict[int, str] | None = None) -> None:
    """Write rows as JSONL; ``bad_lines`` inserts raw text at those 1-based line numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows]
    for lineno, text in sorted((bad_lines or {}).items()):
        lines.insert(lineno - 1, text)
    path.write_text("\n".join(lines) + "\n")


def episode(kind, end, tok_end, J, tok_start=None, start=None, rewards=None):
    e = {"kind": kind, "start": start or 0, "end": end, "text": "", "rewards": rewards or {}, "info": {"J": J, "J_se": 0.1}}
    if tok_end is not None:
        e["token_start"], e["token_end"] = tok_start or 0, tok_end
    return e


def make_runs(root: Path) -> dict[str, Path]:
    # run 1: outcome_grpo (one seed) with metrics, rollouts (two steps) and eval results
    r = root / "outcome_seed0"
    (r).mkdir(parents=True)
    (r / "config.yaml").write_text("name: outcome_grpo\nrecipe: outcome_grpo\nseed: 0\n")
    write_jsonl(
        r / "metrics.jsonl",
        [{"step": s, "outcome_accuracy": 0.1 * s, "reward/outcome": 0.5, "note": "text", "done": True} for s in range(4)],
        bad_lines={3: '{"step": 2, "outcome_accuracy": '},
    )
    trace_a = {  # J: 0.2 -> 0.6 at token 10 -> 0.4 at token 30
        "step": 5, "prompt": "qa", "completion": "x" * 30, "answer": "1", "outcome": 0, "meta": {"J_init": 0.2},
        "episodes": [
            episode("attempt", 10, 10, 0.6, rewards={"progress": 0.4}),
            episode("verify", 30, 30, 0.4, tok_start=10, start=10, rewards={"progress": -0.2, "verify": 1.0}),
        ],
    }
    trace_b = {"step": 5, "prompt": "qb", "completion": "y" * 20, "meta": {"J_init": 0.0},
               "episodes": [episode("attempt", 20, 20, 1.0, rewards={"progress": 1.0})]}
    old = {"step": 0, "prompt": "qa", "completion": "z" * 5, "meta": {"J_init": 0.99},
           "episodes": [episode("attempt", 5, 5, 0.99)]}  # an earlier training step: must be ignored
    write_jsonl(r / "rollouts.jsonl", [old, trace_a, trace_b], bad_lines={2: "[1, 2]"})
    ev = []
    for q, bin_, acc16, acc64 in [("q0", 1, 1, 1), ("q1", 1, 0, 1), ("q2", 2, 0, 0), ("q3", 2, 0, 1)]:
        ev.append({"question_id": q, "strategy": "majority", "budget": 16, "correct": acc16, "tokens": 12.0, "n": 4, "c": 2, "difficulty_bin": bin_})
        ev.append({"question_id": q, "strategy": "majority", "budget": 64, "correct": acc64, "tokens": 50.0, "n": 4, "c": 2, "difficulty_bin": bin_})
        ev.append({"question_id": q, "strategy": "pass@1", "budget": 64, "n": 4, "c": {"q0": 4, "q1": 2, "q2": 0, "q3": 1}[q], "difficulty_bin": bin_})
    write_jsonl(r / "eval" / "results.jsonl", ev)
    runs = {"outcome": r}
    # runs 2-3: two seeds of obj2_progress; traces without token spans (character fallback)
    for seed, j_end in [(0, 1.0), (1, 0.5)]:
        d = root / f"obj2_seed{seed}"
        d.mkdir()
        (d / "config.yaml").write_text(f"name: obj2_progress\nseed: {seed}\n")
        write_jsonl(d / "metrics.jsonl", [{"step": s, "outcome_accuracy": 0.1 * s + 0.2 * seed} for s in range(4)])
        write_jsonl(d / "scored.jsonl", [{"prompt": "qc", "completion": "w" * 40, "meta": {"J_init": 0.5},
                                          "episodes": [episode("attempt", 40, None, j_end)]}])
        runs[f"obj2_{seed}"] = d
    (root / "empty").mkdir()
    runs["empty"] = root / "empty"
    runs["missing"] = root / "does_not_exist"
    return runs


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def row(rows: list[dict[str, str]], **match) -> dict[str, str]:
    hits = [r for r in rows if all(r[k] == str(v) for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = make_runs(root)
    out = root / "report"
    assert main([str(p) for p in runs.values()] + ["--out", str(out), "--budgets", "5,50"]) == 0
    return out, runs


def test_report_writes_every_plot_with_its_csv(report):
    out, _ = report
    names = ["training_accuracy_objective", "metrics_all", "info_gain_tokens", "info_gain_episodes", "progress_by_kind", "episode_rewards_by_kind",
             "regret_vs_budget", "cumulative_regret", "compute_accuracy", "compute_accuracy_bins"]
    md = (out / "report.md").read_text()
    for n in names:
        if n == "metrics_all":  # raw numbers only, no plot
            assert (out / "metrics_all.csv").is_file() and "](metrics_all.csv)" in md
            continue
        png = out / f"{n}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000, n
        assert (out / f"{n}.csv").is_file(), n
        assert f"]({n}.png)" in md and f"]({n}.csv)" in md, n


def test_report_lists_input_problems_with_file_and_line(report):
    out, runs = report
    md = (out / "report.md").read_text()
    assert f"{runs['outcome'] / 'metrics.jsonl'}:3: malformed JSON" in md
    assert f"{runs['outcome'] / 'rollouts.jsonl'}:2: expected a JSON object, got list" in md
    assert f"{runs['missing']}: no such file or directory" in md
    assert f"{runs['empty']}: no JSONL files found" in md
    assert "rollouts.jsonl`: kept the 2 traces of the last logged step 5 of 2 logged steps" in md
    assert "| obj2_progress | 1 |" in md  # runs table: label and seed from config.yaml


def test_training_curves_csv_pools_seeds_with_t_interval_clipped(report):
    rows = read_csv(report[0] / "training_accuracy_objective.csv")
    assert {r["metric"] for r in rows} == {"outcome_accuracy"}  # no objective logged; strings and bools skipped
    r = row(rows, metric="outcome_accuracy", run="obj2_progress", step=1)
    assert float(r["mean"]) == pytest.approx(0.2) and r["n_runs"] == "2"
    # two seeds 0.1 and 0.3: s/sqrt(n) = 0.1, t-interval 0.2 -/+ 1.27, clipped to [0, 1] (a fraction)
    assert T_975_1 * 0.1 > 0.8 and (float(r["ci_low"]), float(r["ci_high"])) == (0.0, 1.0)
    r = row(rows, metric="outcome_accuracy", run="outcome_grpo", step=3)
    assert float(r["mean"]) == pytest.approx(0.3) and r["ci_low"] == "" and r["n_runs"] == "1"  # batch size unknown
    # the malformed line 3 is skipped; the four valid rows remain
    assert sorted(r["step"] for r in rows if r["run"] == "outcome_grpo" and r["metric"] == "outcome_accuracy") == ["0", "1", "2", "3"]
    raw = read_csv(report[0] / "metrics_all.csv")  # every logged key, strings included
    assert row(raw, run="outcome_grpo", step=2)["reward/outcome"] == "0.5"
    assert row(raw, run="outcome_grpo", step=2)["note"] == "text"


def test_regret_csv_numbers(report):
    rows = read_csv(report[0] / "regret_vs_budget.csv")
    # outcome_grpo: traces A and B of the last step (see tests/test_metrics.py for the integrals)
    r5 = row(rows, run="outcome_grpo", budget=5.0)
    assert float(r5["normalized_regret"]) == pytest.approx(((1 - 1.5 / 5) + (1 - 0.625 / 5)) / 2)
    assert (r5["n_traces"], r5["n_questions"], r5["unit"]) == ("2", "2", "tokens")
    assert float(r5["ci_low"]) <= float(r5["normalized_regret"]) <= float(r5["ci_high"])
    r50 = row(rows, run="outcome_grpo", budget=50.0)
    assert float(r50["normalized_regret"]) == pytest.approx(((1 - 22 / 50) + (1 - 40 / 50)) / 2)
    # obj2: per seed, J 0.5 -> j_end at char 40, held after; t-interval over the two seeds
    seed0 = 1 - ((0.5 + 0.5625) / 2 * 5) / 5
    r = row(rows, run="obj2_progress", budget=5.0)
    assert r["unit"] == "chars" and r["n_runs"] == "2"
    assert float(r["normalized_regret"]) == pytest.approx((seed0 + 0.5) / 2)
    assert float(r["ci_high"]) - float(r["normalized_regret"]) == pytest.approx(T_975_1 * abs(seed0 - 0.5) / 2)
    r = row(rows, run="obj2_progress", budget=50.0)
    assert float(r["normalized_regret"]) == pytest.approx(((1 - (30 + 10) / 50) + 0.5) / 2)
    cum = read_csv(report[0] / "cumulative_regret.csv")
    assert float(row(cum, run="outcome_grpo", episodes=1)["mean_delta"]) == pytest.approx(((1 - 0.6) + (1 - 1.0)) / 2)
    assert float(row(cum, run="outcome_grpo", episodes=2)["mean_delta"]) == pytest.approx(0.4 + 0.6)


def test_information_gain_csv_numbers(report):
    out = report[0]
    eps = read_csv(out / "info_gain_episodes.csv")
    assert float(row(eps, run="outcome_grpo", episodes_completed=0)["mean_J"]) == pytest.approx(0.1)
    assert float(row(eps, run="outcome_grpo", episodes_completed=1)["mean_J"]) == pytest.approx(0.8)
    r = row(eps, run="outcome_grpo", episodes_completed=2)
    assert float(r["mean_J"]) == pytest.approx(0.4) and r["n_traces"] == "1"
    toks = read_csv(out / "info_gain_tokens.csv")
    r = row(toks, run="outcome_grpo", offset=15.0)  # grid 0..30 in 101 points; A: 0.6 - 0.2*5/20, B: 0.75
    assert float(r["mean_J"]) == pytest.approx((0.55 + 0.75) / 2)
    r = row(toks, run="outcome_grpo", offset=30.0)  # B is held at 1.0 after its end at 20
    assert float(r["mean_J"]) == pytest.approx((0.4 + 1.0) / 2)
    assert {r["unit"] for r in toks if r["run"] == "obj2_progress"} == {"chars"}
    prog = read_csv(out / "progress_by_kind.csv")
    r = row(prog, run="outcome_grpo", kind="attempt")
    assert (r["n_episodes"], float(r["mean"])) == ("2", pytest.approx(0.7))
    assert float(row(prog, run="outcome_grpo", kind="verify")["mean"]) == pytest.approx(-0.2)
    rew = read_csv(out / "episode_rewards_by_kind.csv")
    assert float(row(rew, reward="progress", run="outcome_grpo", kind="attempt")["mean"]) == pytest.approx(0.7)
    assert row(rew, reward="verify", run="outcome_grpo", kind="verify")["n_episodes"] == "1"


def test_compute_accuracy_csv_numbers(report):
    rows = read_csv(report[0] / "compute_accuracy.csv")
    assert {r["run"] for r in rows} == {"outcome_grpo"}
    r = row(rows, strategy="majority", budget=16.0, difficulty_bin="all")
    assert float(r["accuracy"]) == pytest.approx(0.25) and float(r["mean_tokens"]) == 12.0 and r["n_questions"] == "4"
    assert float(row(rows, strategy="majority", budget=64.0, difficulty_bin="all")["accuracy"]) == pytest.approx(0.75)
    r = row(rows, strategy="pass@1", budget=64.0, difficulty_bin="all")  # no `correct`: c / n
    assert float(r["accuracy"]) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4) and r["mean_tokens"] == ""
    bins = read_csv(report[0] / "compute_accuracy_bins.csv")
    assert float(row(bins, strategy="majority", budget=16.0, difficulty_bin=1)["accuracy"]) == pytest.approx(0.5)
    assert float(row(bins, strategy="majority", budget=64.0, difficulty_bin=2)["accuracy"]) == pytest.approx(0.5)
    assert float(row(bins, strategy="pass@1", budget=64.0, difficulty_bin=1)["accuracy"]) == pytest.approx(0.75)


def test_missing_inputs_give_notes_not_crashes(tmp_path):
    d = tmp_path / "run"
    write_jsonl(d / "metrics.jsonl", [], bad_lines={1: "not json"})
    path = build_report([d, tmp_path / "nope"], tmp_path / "out")
    md = path.read_text()
    assert f"{d / 'metrics.jsonl'}:1: malformed JSON" in md
    for skipped in ("training curves skipped", "information-gain curves skipped", "regret skipped", "compute–accuracy skipped"):
        assert skipped in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md"]


def test_read_jsonl_and_load_run_classify_rows(tmp_path):
    f = tmp_path / "mixed.jsonl"
    write_jsonl(f, [{"step": 1, "loss": 0.5}, {"completion": "a", "episodes": []}, {"strategy": "s", "budget": 1, "correct": 1}, {"x": 1}],
                bad_lines={3: "{oops"})
    rows, problems = read_jsonl(f)
    assert len(rows) == 4 and problems == [f"{f}:3: malformed JSON (Expecting property name enclosed in double quotes at column 2); line skipped"]
    assert rows[1]["_source"] == f"{f}:2"
    run = load_run(f)  # a single JSONL file is a run too
    assert (run.label, len(run.metrics), len(run.traces), len(run.eval_results)) == ("mixed", 1, 1, 1)
    assert any("neither traces" in n for n in run.notes)


def test_parse_budgets():
    assert parse_budgets("128,64, 64") == [64.0, 128.0]
    assert parse_budgets("mrt") == [4096.0, 8192.0, 12288.0, 16384.0]
    assert parse_budgets(None) is None
    with pytest.raises(Exception, match="comma-separated"):
        parse_budgets("64;128")
    with pytest.raises(Exception, match="positive"):
        parse_budgets("0,5")


def test_command_line_entry_point(tmp_path):
    d = tmp_path / "run"
    write_jsonl(d / "metrics.jsonl", [{"step": s, "outcome_accuracy": s / 4} for s in range(3)])
    res = subprocess.run([sys.executable, "-m", "analysis.report", str(d), "--out", str(tmp_path / "o")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "training_accuracy_objective.png").read_bytes()[:8] == PNG_MAGIC
    assert float(row(read_csv(tmp_path / "o" / "training_accuracy_objective.csv"), step=2)["mean"]) == 0.5


def _health_rows(n: int) -> list[dict]:
    """A run whose dense reward climbs from step 1 while accuracy stays flat; cap fraction and episodes healthy."""
    return [{"step": s, "metarl/reward/dense": 0.5 + 0.05 * s, "metarl/outcome_accuracy": 0.3 + 0.01 * (s % 2),
             "metarl/tokens/mean": 40.0, "metarl/tokens/cap_fraction": 0.1, "metarl/episodes_per_trace": 2.0}
            for s in range(1, n + 1)]


def test_health_section_from_logged_and_replayed_metrics(tmp_path):
    from metarl.monitors import build_monitors, replay

    # run A: health keys logged by the trainer (window 4, patience 1 in its config): trips at step 4
    a = tmp_path / "logged"
    a.mkdir()
    (a / "config.yaml").write_text("name: hacked\nseed: 0\nhealth:\n  window: 4\n  patience: 1\n")
    rows = _health_rows(8)
    logged = [{**r, **rec} for r, rec in zip(rows, replay(rows, build_monitors({"window": 4, "patience": 1})))]
    write_jsonl(a / "metrics.jsonl", logged)
    # run B: the same series without health keys and a config without a health block: replayed with the
    # defaults (window 20, patience 3) it needs 22 steps; with 30 it trips at step 22
    b = tmp_path / "replayed"
    b.mkdir()
    (b / "config.yaml").write_text("name: hacked\nseed: 1\n")
    write_jsonl(b / "metrics.jsonl", _health_rows(30))
    # run C: old-style bare metric names (no metarl/ prefix), too short to trip anything
    c = tmp_path / "bare"
    write_jsonl(c / "metrics.jsonl", [{"step": s, "outcome_accuracy": 0.5} for s in range(3)])
    out = tmp_path / "report"
    md = build_report([a, b, c], out).read_text()
    section = md.split("## Training health", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| hacked")]
    tripped = [ln for ln in lines if "**tripped**" in ln]
    assert len(tripped) == 2 and all("| reward_hacking |" in ln for ln in tripped)
    assert "| hacked | 0 | `logged` | reward_hacking | **tripped** | 4 | dense reward (metarl/reward/dense) changed +0.15 " \
           "over the last 4 steps" in section
    assert "| hacked | 1 | `replayed` | reward_hacking | **tripped** | 22 | dense reward (metarl/reward/dense) changed " \
           "+0.95 over the last 20 steps" in section
    assert "| hacked | 0 | `logged` | cap_saturation | quiet |  | last window: cap_fraction=0.1, n=4 |" in section
    assert "| bare | | `bare` | reward_hacking | no data |" in section.replace("|  |", "| |")
    assert "health read from the health/ keys the trainer logged" in section
    assert "health replayed over metrics.jsonl with the default thresholds" in section
    for name in ("health_hacked_seed0", "health_hacked_seed1"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC and f"]({name}.csv)" in md
    # nothing tripped in the bare run: no figure of its quiet monitors, its numbers in the CSV
    assert not (out / "health_bare.png").exists() and "bare: no monitor tripped, nothing plotted" in md
    assert "](health_bare.csv)" in md
    data = read_csv(out / "health_hacked_seed0.csv")
    assert float(row(data, step=4, series="health/reward_hacking/reward_change")["value"]) == pytest.approx(0.15)
    assert float(row(data, step=8, series="metarl/reward/dense")["value"]) == pytest.approx(0.9)
    assert float(row(read_csv(out / "health_bare.csv"), step=2, series="metarl/outcome_accuracy")["value"]) == 0.5


# ---------------------------------------------------------------- issue 25: curated plots, likelihood progress


def lp_episode(kind, tok_end, logp, tok_start=0):
    """An episode scored by likelihood progress: info.logp, no info.J."""
    return {"kind": kind, "start": tok_start, "end": tok_end, "text": "", "token_start": tok_start, "token_end": tok_end,
            "rewards": {"likelihood_progress": 0.0}, "info": {"logp": logp}}


def test_likelihood_progress_traces_give_curves_but_no_regret(tmp_path):
    import math

    d = tmp_path / "lp"
    d.mkdir()
    (d / "config.yaml").write_text("name: lp\nseed: 0\nrewards:\n  likelihood_progress:\n    scale: prob\n")
    traces = [{"prompt": f"q{i}", "completion": "x" * 20, "meta": {"logp_init": math.log(0.25)},
               "episodes": [lp_episode("attempt", 10, math.log(0.5)), lp_episode("verify", 20, math.log(p), 10)]}
              for i, p in enumerate((1.0, 0.5))]
    write_jsonl(d / "scored.jsonl", traces)
    run = load_run(d)
    sets, notes = collect_curves([run])  # auto: the run's reward used scale=prob -> exp(logp)
    cs = sets["lp"]
    assert cs.value == "p" and len(cs.curves) == 2
    assert cs.curves[0].J == pytest.approx((0.25, 0.5, 1.0)) and cs.curves[0].tokens == (0.0, 10.0, 20.0)
    sets, _ = collect_curves([run], likelihood_scale="log")
    assert sets["lp"].value == "logp" and sets["lp"].curves[1].J == pytest.approx((math.log(0.25), math.log(0.5), math.log(0.5)))
    out = tmp_path / "out"
    md = build_report([d], out, likelihood_scale="log").read_text()
    eps = read_csv(out / "info_gain_episodes_logp.csv")
    assert float(row(eps, run="lp", episodes_completed=2)["mean_J"]) == pytest.approx((0.0 + math.log(0.5)) / 2)
    assert all(float(r["ci_high"]) <= 0.0 for r in eps if r["ci_high"])  # a log-probability's interval stays <= 0
    assert (out / "info_gain_tokens_logp.png").read_bytes()[:8] == PNG_MAGIC
    assert "log p(a* | prefix)" in md and "not μ's probability of success J" in md
    assert "regret is not defined for it; regret skipped" in md and not (out / "regret_vs_budget.png").exists()
    from metarl.metrics import normalized_regret

    with pytest.raises(ValueError, match="regret needs J"):
        normalized_regret(sets["lp"].curves[0], 10.0)


def test_collect_curves_keeps_every_trace_of_a_scored_file_and_notes_rollout_filter(tmp_path):
    def trace(step, j):
        return {"step": step, "prompt": f"q{step}", "completion": "x" * 10, "meta": {"J_init": 0.0},
                "episodes": [episode("attempt", 10, 10, j)]}

    # a metarl-score output of logged rollouts keeps their `step`: every trace counts
    scored = tmp_path / "scored"
    write_jsonl(scored / "scored.jsonl", [trace(1, 0.1), trace(1, 0.2), trace(2, 0.3), {"prompt": "no J", "completion": "y"}])
    sets, notes = collect_curves([load_run(scored)])
    assert len(sets["scored"].curves) == 3
    assert any("kept 3 of 4 traces (the others have no values to plot)" in n for n in notes)
    # a training run's rollouts.jsonl: the last step's traces, and the note says so
    train = tmp_path / "train"
    write_jsonl(train / "rollouts.jsonl", [trace(1, 0.1), trace(1, 0.2), trace(10, 0.3)])
    sets, notes = collect_curves([load_run(train)])
    assert [c.J[-1] for c in sets["train"].curves] == [0.3]
    assert any("kept the 1 traces of the last logged step 10 of 2 logged steps (3 traces with values); "
               "--all-steps for every step" in n for n in notes)
    sets, notes = collect_curves([load_run(train)], all_steps=True)
    assert len(sets["train"].curves) == 3 and any("kept all 3 traces of 2 logged steps" in n for n in notes)


def test_no_interval_of_a_probability_leaves_0_1(tmp_path):
    runs = []
    for seed, acc in ((0, 0.0), (1, 0.1)):  # a t-interval over these two seeds would reach far below 0
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "config.yaml").write_text(f"name: low\nseed: {seed}\n")
        write_jsonl(d / "metrics.jsonl", [{"step": s, "metarl/outcome_accuracy": acc, "metarl/tokens/cap_fraction": acc,
                                           "metarl/reward/total": acc, "metarl/reward/dense": 0.0} for s in (1, 2)])
        write_jsonl(d / "scored.jsonl", [{"prompt": "q", "completion": "x" * 10, "meta": {"J_init": 0.0},
                                          "episodes": [episode("attempt", 10, 10, acc)]}])
        write_jsonl(d / "eval" / "results.jsonl", [{"question_id": "q", "strategy": "greedy", "budget": b, "correct": acc}
                                                   for b in (16, 32)])
        runs.append(d)
    one = tmp_path / "one"  # one run, 64 traces per step: a Wilson interval, inside [0, 1] even at 0
    one.mkdir()
    (one / "config.yaml").write_text("name: one\ntrainer:\n  per_device_train_batch_size: 64\n")
    write_jsonl(one / "metrics.jsonl", [{"step": s, "metarl/outcome_accuracy": 0.0} for s in (1, 2)])
    out = tmp_path / "out"
    build_report(runs + [one], out)
    checked = 0
    for name, cols in (("training_accuracy_objective", ("outcome_accuracy",)), ("training_tokens_episodes", ("tokens/cap_fraction",)),
                       ("info_gain_tokens", None), ("info_gain_episodes", None), ("compute_accuracy", None)):
        for r in read_csv(out / f"{name}.csv"):
            if cols is not None and r["metric"] not in cols or not r["ci_low"]:
                continue
            assert 0.0 <= float(r["ci_low"]) <= float(r["ci_high"]) <= 1.0, (name, r)
            checked += 1
    assert checked >= 10
    r = row(read_csv(out / "training_accuracy_objective.csv"), metric="outcome_accuracy", run="one", step=1)
    assert float(r["ci_low"]) == 0.0 and float(r["ci_high"]) == pytest.approx(0.0568, abs=1e-3)  # Wilson, n = 64
    r = row(read_csv(out / "training_accuracy_objective.csv"), metric="reward/total", run="low", step=1)
    assert float(r["ci_low"]) < 0  # not a probability: its t-interval is not clipped


def test_no_plot_of_a_constant_flag_and_every_key_in_the_csv(tmp_path):
    d = tmp_path / "quiet"
    d.mkdir()
    (d / "config.yaml").write_text("name: quiet\nseed: 0\nbudget:\n  cap: 64\n")
    write_jsonl(d / "metrics.jsonl", [
        {"step": s, "metarl/outcome_accuracy": 0.5, "metarl/tokens/mean": 30.0, "metarl/episodes_per_trace": 2.0,
         "metarl/reward_errors": 0.0, "health/reward_hacking/alarm": 0, "health/reward_hacking/tripped": 0,
         "clip_ratio/low_mean": 0.0} for s in range(1, 6)])
    out = tmp_path / "out"
    md = build_report([d], out).read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["training_accuracy_objective.png", "training_tokens_episodes.png"]  # no flag, no quiet monitor
    plotted = {r["metric"] for n in ("training_accuracy_objective", "training_tokens_episodes") for r in read_csv(out / f"{n}.csv")}
    assert plotted == {"outcome_accuracy", "tokens/mean", "episodes_per_trace"}
    raw = read_csv(out / "metrics_all.csv")
    assert len(raw) == 5 and {"health/reward_hacking/tripped", "metarl/reward_errors", "clip_ratio/low_mean"} <= set(raw[0])
    assert "quiet (seed 0): no monitor tripped, nothing plotted" in md


def test_compute_accuracy_skipped_with_one_point(tmp_path):
    d = tmp_path / "ev"
    write_jsonl(d / "eval" / "results.jsonl", [{"question_id": f"q{i}", "strategy": "sampled8/before", "budget": 192,
                                                "correct": i % 2, "tokens": 80.0} for i in range(6)])
    out = tmp_path / "out"
    md = build_report([d], out).read_text()
    assert not (out / "compute_accuracy.png").exists()
    assert "a compute–accuracy curve needs >= 2 budgets; plot skipped" in md
    assert "| ev | sampled8/before | 192 | 0.500 [" in md
    assert float(row(read_csv(out / "compute_accuracy.csv"), strategy="sampled8/before")["accuracy"]) == 0.5
