"""Cost benchmarks of the dense rewards in one run, written as ``DIR/costs.json`` and ``DIR/costs_*.csv``.

    python bench/costs.py --out runs/compare/costs            # full run (est. ~7 min on 1 thread, see below)
    python bench/costs.py --out /tmp/costs-quick --quick      # smoke run: tiny sizes, numbers meaningless (< 1 min)
    python bench/results_page.py runs/compare                 # the "Cost of dense rewards" section reads costs.json

Three parts, every number measured in this run:

1. ``train_step``: each recipe of ``bench_train_step.RECIPES`` trains ``steps`` GRPO steps on the same
   model (default ``model=tiny``, the warm-started tiny policy), data, batch (16 completions, groups of
   8), seed 0 and compute cap (``budget.cap=192``; the L1 recipes' length targets are C/6, C/4, C/3, C/2
   = 32, 48, 64, 96 tokens). Step time: TRL's ``step_time``, median over steps 2..N
   (``bench_train_step.step_times``); ratio = step time / ``outcome_grpo``'s. Each recipe runs in its own
   process, and so does a baseline that only loads the model and the data. Peak memory on CPU: the
   child's peak resident set, ``VmHWM`` of ``/proc/self/status`` (``ru_maxrss`` is not used: Linux
   carries the parent's peak into a child's ``ru_maxrss`` across fork and exec). On CUDA
   (``--device cuda``) also ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
   Children are forked from a ``multiprocessing`` fork server that has imported torch, transformers,
   TRL and the trainer once, so every child starts with the same libraries in memory (as a fresh
   process importing them would) without paying the import each time.
2. ``likelihood``: ``bench_likelihood.measure`` with its defaults (random tiny Llama, hidden 256,
   4 layers; B=8 traces, 8 episodes, prompt 64 + completion 512 tokens; median of 5 interleaved
   repeats): one forward pass vs. all-prefix scoring (``one_pass``, ``cached``) vs. ``naive``.
3. ``mc``: ``bench_mc.mc_grid`` on the same model: Monte Carlo progress sampling for m in {2, 4, 8}
   and episodes per trace in {2, 4, 8} (B=4 traces, prompt 64 + completion 256 tokens, 16-token forced
   answers, 64 sequences per ``generate`` call; median of 3 interleaved repeats), with reuse of the
   shared prefix (the engine's branches, what ``MCProgress`` calls: one prefill per trace) and without
   (``HFBackend(prefix_sharing=False)``: every prefix as an explicit context, each of its m sample rows
   prefilled on its own). Ratios are to one forward pass and to likelihood ``one_pass`` on the same traces (median of
   5). Checked, not assumed: every timed call of both paths returns exactly m answers per prefix (else
   the run stops), and greedy forced answers of the two paths are compared token for token on every
   prefix (``mc.per_episodes[*].greedy_agree`` of ``prefixes``). Sampled answers are not compared:
   the paths consume the random stream in a different order, so equal seeds give different draws.

Time estimate of the full run on 1 thread, from parts of it timed on a 2-core machine busy with other
work: train_step ~1 min (8 processes, 0.1-0.5 s per step), likelihood ~0.6 min, mc ~5 min (the
no-reuse cells at m=8 dominate); less on an idle machine.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import bench_likelihood  # noqa: E402
import bench_mc  # noqa: E402
import bench_train_step  # noqa: E402
import compare_learning  # noqa: E402
from tables import markdown_table  # noqa: E402

PRELOAD = ["__main__", "torch", "transformers", "trl", "datasets", "hydra", "metarl.trainer.run",
           "metarl.trainer.grpo", "metarl.models.loading"]
"""Modules the fork server imports once; every train_step child is forked from it."""
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainStepSettings:
    """One GRPO comparison: every recipe with these sizes (``steps`` >= 2: step 1 is left out)."""

    model: str = "tiny"
    cap: int = 192
    batch: int = 16
    group: int = 8
    steps: int = 11
    threads: int = 1
    recipes: tuple[str, ...] = bench_train_step.RECIPES
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSettings:
    """The random tiny Llama of the likelihood and MC parts (`bench_likelihood.build_model`)."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    seed: int = 0


@dataclass(frozen=True)
class LikelihoodSettings:
    """All-prefix likelihood scoring sizes (bench_likelihood's defaults)."""

    batch: int = 8
    episodes: int = 8
    completion_tokens: int = 512
    prompt_tokens: int = 64
    repeats: int = 5


@dataclass(frozen=True)
class MCSettings:
    """Monte Carlo progress sweep sizes."""

    m: tuple[int, ...] = (2, 4, 8)
    episodes: tuple[int, ...] = (2, 4, 8)
    batch: int = 4
    completion_tokens: int = 256
    prompt_tokens: int = 64
    answer_tokens: int = 16
    gen_batch: int = 64
    repeats: int = 3
    baseline_repeats: int = 5


@dataclass(frozen=True)
class Settings:
    """Everything one run measures."""

    train_step: TrainStepSettings = field(default_factory=TrainStepSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    likelihood: LikelihoodSettings = field(default_factory=LikelihoodSettings)
    mc: MCSettings = field(default_factory=MCSettings)
    device: str = "cpu"


FULL = Settings()
QUICK = Settings(
    train_step=TrainStepSettings(cap=32, batch=4, group=2, steps=2),
    model=ModelSettings(hidden=64, layers=2),
    likelihood=LikelihoodSettings(batch=2, completion_tokens=64, prompt_tokens=32, repeats=2),
    mc=MCSettings(batch=2, completion_tokens=64, prompt_tokens=32, answer_tokens=8, repeats=1, baseline_repeats=1),
)


def l1_targets(cap: int) -> str:
    """The L1 recipes' length targets as a Hydra list: C/6, C/4, C/3, C/2 (32, 48, 64, 96 at C=192)."""
    return "[" + ",".join(str(max(1, cap // d)) for d in (6, 4, 3, 2)) + "]"


# --------------------------------------------------------------------------------------------------
# train_step: one process per recipe
# --------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (2**20 bytes).

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own memory. Not
    ``ru_maxrss``: the kernel keeps the parent's peak in a child's ``ru_maxrss`` across fork and exec,
    so a small child of a large parent would report the parent's peak. Elsewhere: ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _reset_gpu_peak(gpu: bool) -> None:
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb(gpu: bool) -> float | None:
    if not gpu:
        return None
    import torch

    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def recipe_child(recipe: str, overrides: list[str], steps: int, model: str, run_root: str,
                 gpu: bool) -> dict[str, Any]:
    """In a child process: train one recipe; its median step time and the child's peak memory."""
    _reset_gpu_peak(gpu)
    seconds, info = bench_train_step.step_times(recipe, overrides, steps, model, Path(run_root))
    return {"step_seconds": seconds, "episodes_per_trace": info["episodes"], "tokens": info["tokens"],
            "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": _gpu_peak_mb(gpu)}


def baseline_child(overrides: list[str], model: str, run_root: str, gpu: bool) -> dict[str, Any]:
    """In a child process: only load the model and the training data (as ``run`` does), then the peak memory."""
    from datasets import Dataset

    from metarl.config import plain
    from metarl.models.loading import load_model_and_tokenizer
    from metarl.trainer.run import validate
    from metarl.utils import set_threads

    cfg = bench_train_step.train_config(bench_train_step.BASELINE, overrides, 1, model,
                                        Path(run_root) / "baseline")
    plan = validate(cfg)
    set_threads(int(cfg.threads))
    _reset_gpu_peak(gpu)
    model_cfg = plain(cfg.model)
    model_cfg.pop("lora", None)
    with contextlib.redirect_stderr(io.StringIO()):  # the weight-loading progress bar
        policy, _ = load_model_and_tokenizer(**model_cfg)
    if gpu:
        policy.to("cuda")
    rows = Dataset.from_list(plan.train_rows)
    return {"peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": _gpu_peak_mb(gpu), "train_rows": len(rows)}


def child_pool() -> ProcessPoolExecutor:
    """An executor that runs each task in a fresh process forked from a preloaded fork server."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)


def measure_train_step(s: TrainStepSettings, device: str, log: Log = print) -> dict[str, Any]:
    """Step time, ratio to the first recipe and peak memory of every recipe, each in its own process."""
    if s.steps < 2:
        raise ValueError(f"train_step steps={s.steps}: need >= 2 (step 1 warms up and is left out)")
    if s.model == "tiny":  # build the cached policy here, so no child's time or memory includes the build
        from metarl.models.warmstart import tiny_policy_path

        log(f"[train_step] tiny policy: {tiny_policy_path()}")
    gpu = device.startswith("cuda")
    extra = [*s.extra, *(["trainer.use_cpu=false"] if gpu else [])]
    overrides = bench_train_step.common_overrides(s.threads, s.cap, s.batch, s.group, extra,
                                                  target_tokens=l1_targets(s.cap))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="metarl-costs-") as tmp, child_pool() as pool:
        t0 = time.perf_counter()
        base = pool.submit(baseline_child, overrides, s.model, tmp, gpu).result()
        log(f"[train_step] baseline (load model + {base['train_rows']} training rows): "
            f"peak RSS {base['peak_rss_mb']:.0f} MB ({time.perf_counter() - t0:.1f} s)")
        for recipe in s.recipes:
            t0 = time.perf_counter()
            r = pool.submit(recipe_child, recipe, overrides, s.steps, s.model, tmp, gpu).result()
            r = {"recipe": recipe, **r}
            r["ratio"] = r["step_seconds"] / (rows[0] if rows else r)["step_seconds"]
            rows.append(r)
            log(f"[train_step] {recipe}: {r['step_seconds']:.3f} s/step ({r['ratio']:.2f}x), peak RSS "
                f"{r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] - base['peak_rss_mb']:+.0f}) "
                f"({time.perf_counter() - t0:.1f} s)")
    settings = {**asdict(s), "overrides": overrides, "baseline_recipe": s.recipes[0], "device": device,
                "step_time": f"median of TRL step_time over steps 2..{s.steps}",
                "memory": "peak RSS (VmHWM) of one process per recipe" + (", CUDA max_memory_allocated" if gpu else "")}
    return {"settings": settings, "rows": rows, "baseline_rss_mb": base["peak_rss_mb"],
            "baseline_gpu_mb": base["peak_gpu_mb"]}


# --------------------------------------------------------------------------------------------------
# likelihood and mc: in this process, on the random tiny Llama
# --------------------------------------------------------------------------------------------------


def measure_likelihood(s: LikelihoodSettings, model: Any, tok: Any, m: ModelSettings, log: Log = print
                       ) -> dict[str, Any]:
    """Forward / one_pass / cached / naive seconds on B random traces, and the three ratios."""
    traces = bench_likelihood.make_traces(tok, s.batch, s.episodes, s.completion_tokens, s.prompt_tokens, m.seed)
    r = bench_likelihood.measure(model, tok, traces, repeats=s.repeats)
    out = {"settings": {**asdict(s), **asdict(m), "suffix": "<answer>", "answer_template": "{answer}",
                        "timing": f"median of {s.repeats} interleaved repeats after a warm-up"},
           "forward_s": r["forward"], "one_pass_s": r["one_pass"], "cached_s": r["cached"], "naive_s": r["naive"],
           "one_pass_over_forward": r["one_pass"] / r["forward"], "cached_over_forward": r["cached"] / r["forward"],
           "naive_over_one_pass": r["naive"] / r["one_pass"], "max_abs_logp_diff_vs_naive": r["max_diff"],
           "tokens": {k: r[f"tokens_{k}"] for k in ("forward", "one_pass", "naive")}}
    log(f"[likelihood] forward {r['forward']:.4f} s, one_pass {r['one_pass']:.4f} s, cached {r['cached']:.4f} s, "
        f"naive {r['naive']:.4f} s; max |ΔL| vs naive {r['max_diff']:.1e}")
    return out


def measure_mc(s: MCSettings, model: Any, tok: Any, m: ModelSettings, log: Log = print) -> dict[str, Any]:
    """Monte Carlo sampling seconds for every (m, episodes), with and without prefix reuse."""
    grid = bench_mc.mc_grid(model, tok, s.m, s.episodes, s.batch, s.completion_tokens, s.prompt_tokens,
                            s.answer_tokens, s.gen_batch, s.repeats, s.baseline_repeats, m.seed,
                            log=lambda line: log(f"[mc]{line}"))
    settings = {**asdict(s), **asdict(m), "suffix": "<answer>", "temperature": bench_mc.TEMPERATURE,
                "timing": f"median of {s.repeats} interleaved repeats (reuse, no reuse); forward and "
                          f"one_pass: median of {s.baseline_repeats}; one warm-up call of each path first",
                "reuse": "Engine.branch (MCProgress): one prefill per trace, KV cache shared",
                "no_reuse": "HFBackend(prefix_sharing=False): every prefix an explicit context (each sample row "
                            "prefilled)"}
    agree = sum(p["greedy_agree"] for p in grid["per_episodes"])
    total = sum(p["prefixes"] for p in grid["per_episodes"])
    checks = {"samples_per_prefix": "every timed call of both paths returned exactly m answers per prefix",
              "greedy_identical_prefixes": agree, "greedy_compared_prefixes": total}
    return {"settings": settings, "rows": grid["rows"], "per_episodes": grid["per_episodes"], "checks": checks}


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def machine(threads: int) -> dict[str, Any]:
    """Platform, CPU, library versions (compare_learning's) and the torch thread count used."""
    return {**compare_learning.machine(), "threads": threads}


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """``costs.json`` and one CSV per part; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "costs.json"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    ts, lk, mc = result["train_step"], result["likelihood"], result["mc"]
    base = ts["baseline_rss_mb"]
    paths.append(out / "costs_train_step.csv")
    _write_csv(paths[-1], ["recipe", "step_seconds", "ratio", "peak_rss_mb", "rss_over_baseline_mb", "peak_gpu_mb",
                           "episodes_per_trace", "tokens"],
               [[r["recipe"], r["step_seconds"], r["ratio"], r["peak_rss_mb"], r["peak_rss_mb"] - base,
                 r["peak_gpu_mb"], r["episodes_per_trace"], r["tokens"]] for r in ts["rows"]])
    paths.append(out / "costs_likelihood.csv")
    _write_csv(paths[-1], ["what", "seconds", "over_forward", "tokens"],
               [[k, lk[f"{k}_s"], lk[f"{k}_s"] / lk["forward_s"], lk["tokens"].get(k)]
                for k in ("forward", "one_pass", "cached", "naive")])
    paths.append(out / "costs_mc.csv")
    _write_csv(paths[-1], ["m", "episodes", "reuse", "seconds", "over_forward", "over_likelihood"],
               [[r["m"], r["episodes"], r["reuse"], r["seconds"], r["over_forward"], r["over_likelihood"]]
                for r in mc["rows"]])
    return paths


def tables(result: dict[str, Any]) -> str:
    """Markdown tables of every part (what the run printed as it went, in one place)."""
    table = markdown_table
    ts, lk, mc = result["train_step"], result["likelihood"], result["mc"]
    base = ts["baseline_rss_mb"]
    parts = [f"train_step (baseline process, model + data only: {base:.0f} MB peak RSS)",
             table(["recipe", "step s", "x outcome_grpo", "peak RSS MB", "over baseline MB"],
                   [[r["recipe"], f"{r['step_seconds']:.3f}", f"{r['ratio']:.2f}", f"{r['peak_rss_mb']:.0f}",
                     f"{r['peak_rss_mb'] - base:.0f}"] for r in ts["rows"]]),
             "", "likelihood (all prefixes)",
             table(["what", "seconds", "ratio"],
                   [["forward", f"{lk['forward_s']:.4f}", ""], ["one_pass", f"{lk['one_pass_s']:.4f}", ""],
                    ["cached", f"{lk['cached_s']:.4f}", ""], ["naive", f"{lk['naive_s']:.4f}", ""],
                    ["one_pass / forward", "", f"{lk['one_pass_over_forward']:.2f}"],
                    ["cached / forward", "", f"{lk['cached_over_forward']:.2f}"],
                    ["naive / one_pass", "", f"{lk['naive_over_one_pass']:.2f}"]]),
             "", f"mc (greedy answers identical on {mc['checks']['greedy_identical_prefixes']}/"
                 f"{mc['checks']['greedy_compared_prefixes']} prefixes)",
             table(["m", "episodes", "reuse", "seconds", "x forward", "x likelihood one_pass"],
                   [[r["m"], r["episodes"], "yes" if r["reuse"] else "no", f"{r['seconds']:.3f}",
                     f"{r['over_forward']:.1f}", f"{r['over_likelihood']:.1f}"] for r in mc["rows"]])]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    """Options and the settings they select (full or ``--quick``, with the overrides given)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (costs.json, costs_*.csv)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, numbers meaningless (< 1 min)")
    p.add_argument("--model", help="train_step policy: tiny (default) | random-tiny | hf (+ --extra overrides)")
    p.add_argument("--cap", type=int, help="train_step compute cap C (default 192; quick 32)")
    p.add_argument("--batch", type=int, help="train_step completions per step (default 16; quick 4)")
    p.add_argument("--group", type=int, help="train_step samples per prompt (default 8; quick 2)")
    p.add_argument("--steps", type=int, help="train_step steps per recipe, >= 2 (default 11; quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (cuda: train with trainer.use_cpu=false)")
    p.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every train_step run")
    a = p.parse_args(argv)
    base = QUICK if a.quick else FULL
    given = {k: getattr(a, k) for k in ("model", "cap", "batch", "group", "steps") if getattr(a, k) is not None}
    ts = replace(base.train_step, threads=a.threads, extra=tuple(a.extra), **given)
    return a, replace(base, train_step=ts, device=a.device)


def run(s: Settings, log: Log = print) -> dict[str, Any]:
    """All three parts with settings ``s``; the result as written to ``costs.json`` (less command/quick)."""
    import torch

    torch.set_num_threads(s.train_step.threads)
    t0 = time.perf_counter()
    log(f"== train_step: {len(s.train_step.recipes)} recipes + baseline, one process each, model="
        f"{s.train_step.model} C={s.train_step.cap} batch={s.train_step.batch} steps={s.train_step.steps}")
    train_step = measure_train_step(s.train_step, s.device, log)
    m = s.model
    model, tok = bench_likelihood.build_model(m.hidden, m.layers, m.heads, device=s.device, seed=m.seed)
    log(f"== likelihood: random Llama hidden={m.hidden} layers={m.layers}, B={s.likelihood.batch}, "
        f"{s.likelihood.episodes} episodes, completion {s.likelihood.completion_tokens} tokens")
    likelihood = measure_likelihood(s.likelihood, model, tok, m, log)
    log(f"== mc: m in {list(s.mc.m)} x episodes in {list(s.mc.episodes)}, B={s.mc.batch}, completion "
        f"{s.mc.completion_tokens} tokens, with and without prefix reuse")
    mc = measure_mc(s.mc, model, tok, m, log)
    return {"machine": machine(s.train_step.threads), "device": s.device,
            "wall_seconds": time.perf_counter() - t0, "train_step": train_step, "likelihood": likelihood, "mc": mc}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    a, settings = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))  # before the fork server starts
    result = {"command": "python bench/costs.py " + shlex.join(argv), "quick": bool(a.quick), **run(settings)}
    paths = write_outputs(result, Path(a.out))
    print("\n" + tables(result))
    print(f"\nwrote {', '.join(str(p) for p in paths)} ({result['wall_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
