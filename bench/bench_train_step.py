"""Training-step cost of every dense recipe relative to outcome-only GRPO, measured in one run.

    python bench/bench_train_step.py                       # tiny random Llama, CPU, all recipes
    python bench/bench_train_step.py --model tiny --steps 6 --mc-m 2,4,8 --episodes 2,4,8

Each recipe trains ``--steps`` steps on the same model, data, seed and batch; the step time is TRL's
``step_time`` (generation + scoring + credit + backward), median over steps 2..N (step 1 warms up).
Monte Carlo progress is also measured as a function of m (forced answers per prefix) and episodes per
trace (token-chunk segmentation with k = cap / episodes, so every trace has that many episodes).
Prints a table of absolute times and ratios to ``outcome_grpo`` (target: likelihood progress <= 1.15x).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


RECIPES: tuple[str, ...] = ("outcome_grpo", "obj1_verify", "obj2_likelihood_progress", "obj2_mc_progress",
                            "obj2_mc_progress_min", "mrt_termination_baseline", "l1_exact", "l1_max")
"""Every recipe whose step cost is compared; the first is the baseline."""
BASELINE = RECIPES[0]


def common_overrides(threads: int, cap: int, batch: int, group: int, extra: list[str] | tuple[str, ...] = (),
                     target_tokens: str | None = "[16,32,48]") -> list[str]:
    """Hydra overrides shared by every recipe of one comparison (``target_tokens=None``: the recipes' own)."""
    targets = [] if target_tokens is None else [f"budget.target_tokens={target_tokens}"]
    return [f"threads={threads}", f"budget.cap={cap}", f"trainer.per_device_train_batch_size={batch}",
            f"trainer.num_generations={group}", *targets, *extra]


def train_config(recipe: str, overrides: list[str], steps: int, model: str, run_dir: Path):
    """The composed training config of one benchmark run (no evaluation, seed 0, no checkpoints)."""
    from metarl.config import compose

    return compose("train", [f"recipe={recipe}", f"name={recipe}", f"model={model}", f"trainer.max_steps={steps}",
                             "evaluate.enabled=false", "seed=0", f"run_dir={run_dir}", "trainer.save_steps=100000",
                             *overrides])


def step_times(recipe: str, overrides: list[str], steps: int, model: str, out: Path) -> tuple[float, dict]:
    """Median step time (s) over steps 2..N of one run, and its last episodes/trace and mean tokens."""
    from metarl.trainer.run import run

    run_dir = out / f"{recipe}-{abs(hash(tuple(overrides))) % 10**8}"
    cfg = train_config(recipe, overrides, steps, model, run_dir)
    # quiet, into real files: vLLM's engine start-up needs sys.stdout.fileno()
    with tempfile.TemporaryFile("w+") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        run(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in rows[1:]] or [rows[0]["step_time"]]
    last = rows[-1]
    return statistics.median(times), {"episodes": last.get("metarl/episodes_per_trace"),
                                      "tokens": last.get("metarl/tokens/mean")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random-tiny", help="model config: random-tiny | tiny | hf (+ overrides)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap", type=int, default=64, help="compute cap C (thinking tokens)")
    ap.add_argument("--batch", type=int, default=16, help="completions per step")
    ap.add_argument("--group", type=int, default=8, help="samples per prompt")
    ap.add_argument("--mc-m", default="2,4,8", help="Monte Carlo m values to sweep")
    ap.add_argument("--episodes", default="2,4,8", help="episodes per trace to sweep (token chunks)")
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    args = ap.parse_args()
    common = common_overrides(args.threads, args.cap, args.batch, args.group, args.extra)
    out = Path(tempfile.mkdtemp(prefix="metarl-bench-"))
    print(f"model={args.model} cap={args.cap} batch={args.batch} group={args.group} steps={args.steps} "
          f"threads={args.threads} (median step time over steps 2..{args.steps})\n")
    base, _ = step_times(BASELINE, common, args.steps, args.model, out)
    print(f"{'recipe / setting':<46} {'step s':>8} {'ratio':>7} {'episodes':>9} {'tokens':>7}")
    print(f"{BASELINE:<46} {base:>8.3f} {1.0:>7.2f}")
    for r in RECIPES[1:]:
        t, info = step_times(r, common, args.steps, args.model, out)
        print(f"{r:<46} {t:>8.3f} {t / base:>7.2f} {info['episodes'] or 0:>9.2f} {info['tokens'] or 0:>7.1f}")
    print("\nMonte Carlo progress cost vs m and episodes per trace (token-chunk episodes):")
    for n_ep in [int(x) for x in args.episodes.split(",")]:
        k = max(1, args.cap // n_ep)
        seg = ["segmenter=tokens", f"segmenter.k={k}"]
        t_lik, info = step_times("obj2_likelihood_progress", common + seg, args.steps, args.model, out)
        print(f"{f'likelihood_progress, episodes~{n_ep}':<46} {t_lik:>8.3f} {t_lik / base:>7.2f} "
              f"{info['episodes'] or 0:>9.2f} {info['tokens'] or 0:>7.1f}")
        for m in [int(x) for x in args.mc_m.split(",")]:
            t, info = step_times("obj2_mc_progress", common + seg + [f"rewards.mc_progress.m={m}"], args.steps,
                                 args.model, out)
            print(f"{f'mc_progress m={m}, episodes~{n_ep}':<46} {t:>8.3f} {t / base:>7.2f} "
                  f"{info['episodes'] or 0:>9.2f} {info['tokens'] or 0:>7.1f}")


if __name__ == "__main__":
    main()
