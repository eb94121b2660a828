"""bench/gpu_check.py: the GPU check run on the CPU at its --quick sizes, a failing part, and the GPU overrides.

The quick check (three recipes x 2 training steps, held-out evaluation, metarl-score; five processes) takes
about 40 s on a 2-core CPU, the failing one about 15 s: both run in the normal suite. On a GPU machine the
tests still run the CPU path (``--device cpu``); the GPU path itself is docs/gpu.md's command.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402

TRAIN_PARTS = [f"train-{r}" for r in gpu_check.RECIPES]


def check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    report_file = out / "gpu_check.json"
    assert report_file.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, json.loads(report_file.read_text())


def test_quick_check_on_the_cpu_runs_every_part(tmp_path):
    out = tmp_path / "check"
    proc, report = check(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    env = report["environment"]
    assert env["device"] == "cpu" and env["gpu"] is False and env["device_name"].startswith("CPU (")
    assert env["torch"] and env["transformers"] and env["trl"]
    assert [p["name"] for p in report["parts"]] == [*TRAIN_PARTS, "score"]
    for part in report["parts"]:
        assert part["ok"] and part["exit_status"] == 0 and part["errors"] == [], part
        assert part["devices"]["end of run"] == ["cpu:float32"] and part["dtype"] == "float32"
        assert Path(part["run_dir"]).parent == out.resolve()
    for part in report["parts"][:3]:
        run_dir = Path(part["run_dir"])
        assert (run_dir / "metrics.jsonl").exists() and (run_dir / "summary.json").exists()
        assert part["steps"] == part["steps_requested"] == 2
        assert len(part["step_time_s"]) == 2 and all(t > 0 for t in part["step_time_s"])
        assert part["s_per_step"] == part["step_time_s"][1]
        assert all(math.isfinite(x) for x in part["loss"] + part["grad_norm"])
        assert part["devices"]["held-out evaluation before"] == part["devices"]["held-out evaluation after"] == \
            ["cpu:float32"]
        assert part["accuracy_before"] is not None and part["accuracy_after"] is not None
    mc, likelihood = report["parts"][1], report["parts"][2]
    assert mc["devices"]["model-based rewards"] == likelihood["devices"]["model-based rewards"] == ["cpu:float32"]
    assert any(g > 0 for g in likelihood["grad_norm"]) and likelihood["weights_changed"] > 0.5  # the update landed
    assert all(part["warnings"] == [] for part in report["parts"])
    score = report["parts"][3]
    assert score["model"].startswith("the trained") and score["lines_scored"] == 5 and score["episodes"] > 0
    assert score["devices"]["model-based rewards"] == ["cpu:float32"]
    assert report["ok"] is True and report["verdict"].startswith("VERDICT: PASS -- all 4 parts ran on the CPU")
    assert "no GPU" in report["verdict"]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == report["verdict"]
    assert any(ln.startswith("device: CPU (") for ln in lines)
    assert sum("s/step" in ln for ln in lines) == 3


def test_a_failed_part_is_recorded_and_the_check_goes_on(tmp_path):
    proc, report = check(tmp_path / "check", "--recipes", "no_such_recipe")
    assert proc.returncode == 1
    bad, score = report["parts"]
    assert bad["name"] == "train-no_such_recipe" and not bad["ok"] and bad["exit_status"] == 2
    assert "no_such_recipe" in bad["errors"][0]
    # the next part still ran; without the likelihood run's checkpoint it scores with a random model
    assert score["ok"] and score["exit_status"] == 0 and score["model"].startswith("random-tiny")
    assert report["ok"] is False and report["verdict"].startswith("VERDICT: FAIL -- 1 of 2 parts failed")
    assert proc.stdout.strip().splitlines()[-1] == report["verdict"]


def test_gpu_overrides_compose_to_bf16_mixed_precision_on_cuda(tmp_path):
    """The GPU path's configs, which the CPU run does not compose: trainer=gpu (bf16 compute) over float32 weights,
    the 256-wide model."""
    from metarl.config import compose, validated

    size = gpu_check.SIZES["gpu"]
    for recipe in gpu_check.RECIPES:
        argv = gpu_check.train_overrides(recipe, size, "cuda", 4, tmp_path / recipe, tensorboard=False)
        cfg = validated(compose("train", argv), "train")
        assert cfg.model.dtype == "float32" and cfg.model.tiny == {"hidden_size": 256, "num_layers": 4}
        assert cfg.trainer.bf16 and not cfg.trainer.use_cpu and cfg.trainer.gradient_checkpointing
        assert cfg.trainer.max_steps == size["steps"] and cfg.trainer.report_to == []
        assert cfg.evaluate.enabled and cfg.evaluate.n == cfg.task.n_test == size["n_eval"]
    argv = gpu_check.score_overrides(["model=hf", "model.name_or_path=/x/final"], gpu_check.SAMPLE_TRACES, 4,
                                     tmp_path / "score")
    cfg = validated(compose("score", argv), "score")
    assert cfg.model.dtype == "float32" and list(cfg.rewards) == list(gpu_check.SCORE_REWARDS)


def test_the_checks_name_what_a_gpu_run_got_wrong(tmp_path):
    """check_train on a run directory as a broken GPU run would leave it: a non-finite loss, a missing step, no
    evaluation after training, the policy left on the CPU; and warnings for a phase on the CPU and lost updates."""
    size = dict(gpu_check.SIZES["gpu"], steps=3)
    rows = [{"step": 1, "loss": 0.1, "grad_norm": 0.5, "learning_rate": 1e-6, "step_time": 0.2},
            {"step": 2, "loss": float("nan"), "grad_norm": 0.4, "learning_rate": 1e-6, "step_time": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = {"n": size["n_eval"], "accuracy": 0.0}
    (tmp_path / "summary.json").write_text(json.dumps({"before": {str(size["cap"]): before}}))
    part = {"recipe": "obj2_likelihood_progress", "dtype": "float32", "errors": [], "warnings": [],
            "weights_changed": 0.02, "devices": {"loaded": ["cpu:float32"], "held-out evaluation before":
                                                 ["cpu:float32"], "end of run": ["cpu:float32"]}}
    gpu_check.check_train(part, tmp_path, size, "cuda")
    errors, warnings = " | ".join(part["errors"]), " | ".join(part["warnings"])
    assert "logged 2 training steps" in errors and "non-finite training metrics: [(2, 'loss')]" in errors
    assert "no held-out evaluation after training" in errors
    assert "ended on cpu:float32, expected cuda:float32" in errors
    assert "held-out evaluation before ran on the CPU" in warnings and "only 2.0% of the weights changed" in warnings
    assert "loaded" not in warnings  # loading on the CPU is how every model starts
    assert part["s_per_step"] == 0.1 and part["step_time_first_s"] == 0.2
