"""Training speed with metarl's load-aware thread count, on an idle machine and beside one busy process.

    python bench/threads_under_load.py --out runs/threads              # step times, about 3 min on a 2-core CPU
    python bench/threads_under_load.py --out runs/threads --demo       # and make demo idle and loaded (+ ~7 min)

Runs ``metarl-train recipe=demo_obj1`` (the demo's model and batch, no held-out evaluation) for ``--steps`` training
steps in each condition, one run at a time, and reads the seconds per training step from the run's
``metrics.jsonl`` (TRL's ``step_time``, the first step left out, so start-up does not count):

- ``threads=2`` (the demo recipe's: at most 2, fewer while other processes keep CPUs busy) or ``threads=1``;
- idle; beside one busy process (a Python loop spinning on one core) from the start; or with that process
  starting after ``--steps // 3`` steps (the thread count then follows it during training).

``--demo`` also times ``python -m metarl.demo`` (the whole of ``make demo`` with the warm start cached) idle and
beside one busy process. Prints a table with each condition's step time relative to (idle, threads=2), all
measured in this run, and writes ``OUT/threads.json`` and ``OUT/threads.csv``. Nothing else should run meanwhile.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def step_times(run_dir: Path) -> list[float]:
    """TRL's ``step_time`` (seconds per training step) of each logged step of ``metrics.jsonl``, the first (warm-up)
    left out."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [float(r["step_time"]) for r in rows if "step_time" in r][1:]
    if not times:
        raise RuntimeError(f"{run_dir}/metrics.jsonl has no step_time after the first step")
    return times


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY])


def run(cmd: list[str], load: str, run_dir: Path, load_after_steps: int = 0) -> float:
    """Run ``cmd`` with ``load`` ("idle", "loaded": a busy process throughout, "later": one started once
    ``run_dir/metrics.jsonl`` has ``load_after_steps`` steps); the wall seconds."""
    busy = busy_process() if load == "loaded" else None
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            time.sleep(0.5)
            if load == "later" and busy is None and (run_dir / "metrics.jsonl").exists():
                steps = sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "step_time" in line)
                if steps >= load_after_steps:
                    busy = busy_process()
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return wall


def main(argv: list[str] | None = None) -> list[dict]:
    from metarl.utils import cpu_model

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=12, help="training steps per condition (default 12)")
    p.add_argument("--demo", action="store_true", help="also time the whole demo, idle and loaded")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for load, threads in (("idle", 2), ("idle", 1), ("loaded", 2), ("loaded", 1), ("later", 2)):
        name = f"{load}_t{threads}"
        run_dir = a.out / name
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists: use a fresh --out")
        cmd = [sys.executable, "-m", "metarl.cli.train", "recipe=demo_obj1", f"trainer.max_steps={a.steps}",
               "trainer.logging_steps=1", "trainer.save_steps=100000", "evaluate.n=0", "rollouts_every=0",
               f"threads={threads}", f"run_dir={run_dir}"]
        wall = run(cmd, load, run_dir, load_after_steps=max(2, a.steps // 3))
        times = step_times(run_dir)
        row = {"what": "train step", "name": name, "load": load, "threads": threads, "steps": a.steps,
               "s_per_step": sum(times) / len(times), "wall_s": round(wall, 1)}
        if load == "later":  # before and after the busy process started
            k = max(1, a.steps // 3)
            row["s_per_step_before_load"] = sum(times[:k - 1]) / max(1, k - 1)
            row["s_per_step_after_load"] = sum(times[k + 1:]) / max(1, len(times[k + 1:]))
        print(f"[threads] {name}: {row['s_per_step']:.2f} s/step, {wall:.0f} s wall", flush=True)
        rows.append(row)
    if a.demo:
        for load in ("idle", "loaded"):
            run_dir = a.out / f"demo_{load}"
            wall = run([sys.executable, "-m", "metarl.demo", f"run_dir={run_dir}"], load, run_dir)
            rows.append({"what": "make demo", "name": f"demo_{load}", "load": load, "threads": 2,
                         "steps": json.loads((run_dir / "summary.json").read_text())["steps"], "wall_s": round(wall, 1)})
            print(f"[threads] demo {load}: {wall:.0f} s wall", flush=True)
    base = next(r["s_per_step"] for r in rows if r["name"] == "idle_t2")
    for r in rows:
        if "s_per_step" in r:
            r["ratio"] = round(r["s_per_step"] / base, 3)
    cpu = cpu_model()
    print(f"\nseconds per training step of recipe=demo_obj1 ({a.steps} steps; {cpu})")
    print(f"{'machine':>22} | {'threads':>7} | {'s/step':>6} | vs idle, threads=2")
    for r in rows:
        if "s_per_step" in r:
            extra = (f"  (before the load {r['s_per_step_before_load']:.2f}, after {r['s_per_step_after_load']:.2f})"
                     if r["load"] == "later" else "")
            label = {"idle": "idle", "loaded": "one busy process", "later": "busy process from step"}[r["load"]]
            print(f"{label:>22} | {r['threads']:>7} | {r['s_per_step']:6.2f} | {r['ratio']:.2f}x{extra}")
    for r in rows:
        if r["what"] == "make demo":
            print(f"make demo ({r['steps']} steps, warm start cached), {r['load']}: {r['wall_s']:.0f} s")
    (a.out / "threads.json").write_text(json.dumps({"cpu": cpu, "steps": a.steps, "rows": rows}, indent=2))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(a.out / "threads.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
