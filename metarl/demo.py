"""``make demo``: meta-RL on a laptop CPU in a few minutes.

1. warm-start the tiny policy (built once, then cached),
2. train it with Obj-1 dense episode rewards on the built-in subset-sum task,
3. evaluate on held-out problems before and after, at several compute caps,
4. write plots and a report with ``analysis.report``,

and print a table a researcher can screenshot. Extra Hydra overrides can be passed on the command
line: ``python -m metarl.demo trainer.max_steps=10``. The setting is the recipe ``recipes/demo_obj1.yaml``
(``metarl-train recipe=demo_obj1`` trains the same run without the table). Each phase prints one line and one
progress bar; ``verbose=true`` lets the libraries' own bars, log dicts and deprecation warnings through.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RECIPE = "demo_obj1"
"""The demo's whole training and evaluation setting: ``recipes/demo_obj1.yaml``."""


def paired_delta(before: list[float], after: list[float]) -> tuple[float, float]:
    """Mean of after - before over the same questions and its standard error."""
    from metarl.metrics import mean_se

    return mean_se([a - b for a, b in zip(after, before)])


def main(argv: list[str] | None = None) -> int:
    from metarl.config import compose
    from metarl.models.warmstart import tiny_policy_path
    from metarl.trainer.run import run
    from metarl.utils import set_threads, set_verbose

    t0 = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    overrides = [f"recipe={RECIPE}", f"run_dir={Path('runs/demo', stamp).resolve()}", *(argv or [])]
    from metarl.registry import ConfigError

    try:
        cfg = compose("train", overrides)  # a bad override fails here, naming the key
    except ConfigError as e:
        print(f"[demo] configuration error: {e}", file=sys.stderr)
        return 2
    set_threads(int(cfg.threads))  # the warm start trains with these too
    set_verbose(bool(cfg.verbose))  # verbose=true: library chatter (HF bars, TRL log dicts, deprecation warnings)
    if cfg.model.name_or_path == "tiny":
        print("[demo] 1/4 tiny policy: warm start by SFT on synthetic attempt/verify/revise traces (cached)",
              flush=True)
        path = tiny_policy_path(**dict(cfg.model.get("tiny") or {}))
        print(f"[demo]     policy at {path} ({time.time() - t0:.0f}s)", flush=True)
    else:
        print(f"[demo] 1/4 policy: {cfg.model.name_or_path} (no warm start)", flush=True)
    print(f"[demo] 2/4 Obj-1 training ({cfg.trainer.max_steps} steps) with held-out evaluation before/after",
          flush=True)
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    print("[demo] 3/4 plots and report", flush=True)
    report = run_dir / "report"
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(run_dir), "--out", str(report)],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"[demo]     report failed: {r.stderr[-2000:]}", flush=True)
    cell = next(iter(summary.get("after", {}).values()), {})
    how = (f"pass@1 = mean correctness of {cell['samples']} samples per problem at temperature "
           f"{cfg.evaluate.temperature}" if cell.get("samples", 1) > 1 else "greedy decoding, one completion per problem")
    print(f"[demo] 4/4 results ({cfg.evaluate.n} held-out problems, {how})\n", flush=True)
    rows = []
    header = f"{'cap C':>6} | {'phase':>6} | {'accuracy':>14} | {'tokens':>6} | {'verify acc':>10} | {'episodes':>8}"
    print(header)
    print("-" * len(header))
    for b in sorted(summary.get("after", {})):
        for phase in ("before", "after"):
            s = summary[phase][b]
            va = s["verification_accuracy"]
            print(f"{b:>6} | {phase:>6} | {s['accuracy']:.3f} ± {s['accuracy_se']:.3f} | {s['tokens']:>6.1f} | "
                  f"{(f'{va:.3f}' if va is not None else 'n/a'):>10} | {s['episodes_per_trace']:>8.2f}")
        d, se = paired_delta(summary["before"][b]["correct"], summary["after"][b]["correct"])
        rows.append((b, d, se))
    print()
    for b, d, se in rows:
        verdict = "above" if d > 2 * se else "NOT above"
        print(f"cap {b}: accuracy change {d:+.3f}, noise band ±{2 * se:.3f} (2 paired standard errors over "
              f"{summary['after'][b]['n']} questions) -> {verdict} the noise")
    print(f"\nrun directory: {run_dir}\n  metrics:  {run_dir / 'metrics.jsonl'}\n  rollouts: {run_dir / 'rollouts.jsonl'}"
          f"\n  report:   {report / 'report.md'} (PNG plots + CSV)\n  total time: {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
