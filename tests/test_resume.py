"""SIGKILL a real CPU training run, resume it, and find every step logged exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["recipe=obj1_verify", "name=resume", "model=random-tiny", "trainer.max_steps=6", "trainer.save_steps=2",
        "evaluate.enabled=false", "task.n_train=64", "trainer.per_device_train_batch_size=8",
        "trainer.num_generations=4", "budget.cap=32", "rollouts_every=1"]


def _cmd(run_dir, *extra):
    exe = Path(sys.executable).with_name("metarl-train")
    return [str(exe), *ARGS, f"run_dir={run_dir}", *extra]


def _steps(path):
    return [json.loads(line)["step"] for line in Path(path).read_text().splitlines()]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


@pytest.mark.timeout(600)
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_cmd(run_dir), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once step 3 is logged (after the step-2 checkpoint, before step 4's)
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed: " + proc.stderr.read()[-2000:])
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _steps(metrics)
    assert 3 <= len(killed_at) < 6

    r = subprocess.run(_cmd(run_dir, "trainer.resume=true"), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stdout
    assert _steps(metrics) == [1, 2, 3, 4, 5, 6]
    rollout_steps = _steps(run_dir / "rollouts.jsonl")
    assert sorted(set(rollout_steps)) == [1, 2, 3, 4, 5, 6]
    per_step = {s: rollout_steps.count(s) for s in set(rollout_steps)}
    assert len(set(per_step.values())) == 1, f"every step has the same number of rollouts: {per_step}"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6


def test_resume_refuses_to_overwrite_and_finds_no_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    r = subprocess.run(_cmd(run_dir), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "trainer.resume=true" in r.stderr


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    """A retry script that resumes every job leaves finished runs as they are; a run killed after its last
    checkpoint but before the final save is finished from that checkpoint, without an extra step."""
    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.trainer.run import run

    run_dir = tmp_path / "run"
    small = [a for a in ARGS if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=2", f"run_dir={run_dir}"]
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        first = compose("train", overrides=small)
        again = compose("train", overrides=[*small, "trainer.resume=true"])
    summary = run(first)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert run(again) == summary
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files  # nothing touched
    (run_dir / "summary.json").unlink()  # killed after the step-2 checkpoint, before the final save
    weights = (run_dir / "final" / "model.safetensors").read_bytes()
    for p in (run_dir / "final").iterdir():
        p.unlink()
    resumed = run(again)
    assert resumed["steps"] == 2 and _steps(run_dir / "metrics.jsonl") == [1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert (run_dir / "final" / "model.safetensors").read_bytes() == weights  # the checkpoint's trained weights


def test_a_resumed_run_keeps_the_held_out_evaluation_before_training(tmp_path):
    """The 'before' evaluation runs once, at the first start; a run resumed after a kill still reports it (it is
    kept in eval/before.json), so a comparison's learning curve keeps its step-0 point."""
    from hydra import compose, initialize_config_dir

    from metarl.config import conf_dir
    from metarl.trainer.run import run

    run_dir = tmp_path / "run"
    small = [a for a in ARGS if not a.startswith(("trainer.max_steps", "evaluate."))] + [
        "trainer.max_steps=2", "evaluate.enabled=true", "evaluate.n=4", "evaluate.every=0", f"run_dir={run_dir}"]
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        first = compose("train", overrides=small)
        again = compose("train", overrides=[*small, "trainer.resume=true"])
    summary = json.loads(json.dumps(run(first)))
    assert summary["before"] and json.loads((run_dir / "eval" / "before.json").read_text()) == summary["before"]
    (run_dir / "summary.json").unlink()  # killed after the last checkpoint, before the final save
    for p in (run_dir / "final").iterdir():
        p.unlink()
    resumed = json.loads(json.dumps(run(again)))
    assert resumed["before"] == summary["before"] and resumed["after"].keys() == summary["after"].keys()
