"""``make demo`` over training seeds: how often what it headlines is far outside its own noise band.

Runs ``python -m metarl.demo`` once per seed, one after the other (never two at a time), each in its own run
directory ``OUT/s<seed>``, with the same extra Hydra overrides, and records per seed, cap and metric the demo's
own verdicts (``metarl.demo.changes``): the paired change after - before over the held-out problems of the
headline (revisions after an "incorrect" verdict), episodes per trace, verification accuracy and accuracy, its
noise band (2 paired standard errors), the ratio, plus the run's wall time, the CPU model and the commit::

    .venv/bin/python bench/demo_seeds.py --out runs/sweep/default --seeds 0-9
    .venv/bin/python bench/demo_seeds.py --out runs/sweep/lr4e-4 --seeds 0,2 -- trainer.learning_rate=4e-4

``--stop-after-failures K`` stops the sweep once K seeds' headline is not >= 3x its band. Each demo uses the
recipe's ``threads``; two sweeps side by side on a 2-core machine should each pass ``-- threads=1`` (the numbers
are the same, only the speed differs).

Resumable: a seed whose result is already in ``OUT/results.jsonl`` is skipped, and a run directory that holds
a finished ``summary.json`` is read instead of trained again; a run directory left unfinished (killed) is
removed and that seed runs from the start. ``OUT/results.jsonl`` has one line per seed, ``OUT/results.csv``
one row per seed, cap and metric, ``OUT/summary.json`` the median and range per cap and metric over the seeds.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metarl.demo import HEADLINE  # noqa: E402

CSV_FIELDS = ["config", "seed", "cap", "metric", "before", "after", "change", "band", "ratio", "above", "far", "n",
              "samples", "wall_s", "cpu", "commit"]
"""One row per seed, cap and metric (``metarl.demo.METRICS``: the headline first); ``above``: change > band,
``far``: change >= 3 x band (what the demo headlines must reach in 9 of 10 seeds)."""


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,2,5"`` or ``"0-2,7"`` -> a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.update(range(lo, hi + 1))
        else:
            seeds.add(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return sorted(seeds)


def seed_result(run_dir: Path) -> dict[str, Any] | None:
    """The demo's verdicts per cap and metric from a finished run directory's ``summary.json`` (None if
    unfinished): ``metarl.demo.changes``, the computation the demo prints, plus ``above`` (change > band, the band
    being 2 paired standard errors) and ``far`` (change >= 3 x band; a change with no spread is far unless it is 0).
    """
    from metarl.demo import changes

    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if not summary.get("after") or not summary.get("before"):
        return None
    caps = {}
    for cap in sorted(summary["after"], key=int):
        got = changes(summary["before"][cap], summary["after"][cap])
        for c in got.values():
            c["above"], c["far"] = c["ratio"] > 1, c["ratio"] >= 3
            c["samples"] = summary["after"][cap].get("samples", 1)
        caps[str(cap)] = got
    return {"seed": summary.get("seed"), "train_seconds": summary.get("train_seconds"), "caps": caps}


def machine() -> dict[str, str]:
    """The CPU model and the commit (``+dirty`` when the work tree differs from it) a sweep row was measured on."""
    from metarl.utils import cpu_model

    def git(*a: str) -> str:
        try:
            r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "metarl", "conf", "recipes"):
        commit += "+dirty"
    return {"cpu": cpu_model(), "commit": commit}


def load_results(path: Path) -> dict[int, dict[str, Any]]:
    """Per-seed results already recorded in a results.jsonl (the last line of a seed wins)."""
    out: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[int(rec["seed"])] = rec
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cap and metric over seeds: median and range of the change, median band and ratio, how many seeds are
    above the noise and how many far outside it (>= 3 x band); the wall-time range."""
    caps: dict[str, dict[str, Any]] = {}
    for cap in sorted({c for r in results for c in r["caps"]}, key=int):
        per: dict[str, Any] = {}
        for metric in dict.fromkeys(m for r in results for m in r["caps"].get(cap, {})):
            rows = [r["caps"][cap][metric] for r in results if metric in r["caps"].get(cap, {})]
            changes = [c["change"] for c in rows]
            per[metric] = {"seeds": len(rows), "above": sum(bool(c["above"]) for c in rows),
                           "far": sum(bool(c["far"]) for c in rows),
                           "change_median": statistics.median(changes), "change_min": min(changes),
                           "change_max": max(changes), "band_median": statistics.median(c["band"] for c in rows),
                           "ratio_median": statistics.median(c["ratio"] for c in rows),
                           "ratio_min": min(c["ratio"] for c in rows)}
        caps[cap] = per
    walls = [r["wall_s"] for r in results if r.get("wall_s") is not None]
    return {"seeds": sorted(int(r["seed"]) for r in results), "headline": HEADLINE, "caps": caps,
            "machines": sorted({f"{r.get('cpu', '?')} @ {r.get('commit', '?')}" for r in results}),
            "wall_s_min": min(walls) if walls else None, "wall_s_max": max(walls) if walls else None,
            "wall_s_median": statistics.median(walls) if walls else None}


def write_tables(out: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """results.csv (one row per seed, cap and metric) and summary.json from the per-seed records."""
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in sorted(results, key=lambda r: int(r["seed"])):
            for cap, metrics in sorted(r["caps"].items(), key=lambda kv: int(kv[0])):
                for metric, c in metrics.items():
                    w.writerow({"config": r.get("config", ""), "seed": r["seed"], "cap": cap, "metric": metric,
                                **{k: round(c[k], 4) for k in ("before", "after", "change", "band", "ratio")},
                                "above": int(bool(c["above"])), "far": int(bool(c["far"])), "n": c["n"],
                                "samples": c["samples"], "wall_s": r.get("wall_s"), "cpu": r.get("cpu", ""),
                                "commit": r.get("commit", "")})
    summary = summarize(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def describe(summary: dict[str, Any]) -> str:
    lines = []
    for cap, per in summary["caps"].items():
        for metric, c in per.items():
            tag = " [headline]" if metric == summary["headline"] else ""
            lines.append(f"  cap {cap} {metric}{tag}: change median {c['change_median']:+.3f} (range "
                         f"{c['change_min']:+.3f} to {c['change_max']:+.3f}), band median ±{c['band_median']:.3f}, "
                         f"ratio median {c['ratio_median']:.1f} (min {c['ratio_min']:.1f}); above the noise in "
                         f"{c['above']} of {c['seeds']} seeds, >= 3x the band in {c['far']}")
    lines.append(f"  measured on: {'; '.join(summary['machines'])}; wall {summary['wall_s_min']}-"
                 f"{summary['wall_s_max']} s")
    return "\n".join(lines)


def run_demo(cmd: list[str], log: Path, env: dict[str, str]) -> int:
    """One demo run, its output in ``log``; the exit code."""
    with log.open("w") as f:
        return subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode


def _exit_on_sigterm(signum, frame):
    # raised inside subprocess.run, which then kills the running demo: no orphan trains on into a seed's directory
    raise SystemExit(f"[demo_seeds] stopped by signal {signum}; finished seeds are kept (rerun to resume)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="sweep directory: OUT/s<seed> per run, results here")
    p.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,2,5 (default 0-9)")
    p.add_argument("--name", default=None, help="configuration name in the tables (default: OUT's name)")
    p.add_argument("--stop-after-failures", type=int, default=None, metavar="K",
                   help="stop once K seeds' headline is not >= 3x its band at every cap (2 of 10: 9 is out of reach)")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or out.name
    (out / "overrides.json").write_text(json.dumps(overrides))
    results_path = out / "results.jsonl"
    done = load_results(results_path)
    seeds = parse_seeds(args.seeds)
    where = machine()  # the CPU model and commit, recorded with every row
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for k, seed in enumerate(seeds, 1):
        failures = sum(not all(c.get(HEADLINE, {}).get("far") for c in done[s]["caps"].values())
                       for s in seeds if s in done)
        if args.stop_after_failures is not None and failures >= args.stop_after_failures:
            print(f"[demo_seeds] {name}: {failures} seeds whose headline is not >= 3x its band; stopping", flush=True)
            break
        if seed in done:
            print(f"[demo_seeds] {name} seed {seed} ({k}/{len(seeds)}): recorded, skipped", flush=True)
            continue
        run_dir = out / f"s{seed}"
        res, wall = seed_result(run_dir), None
        if res is None:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a killed run: start that seed over
            print(f"[demo_seeds] {name} seed {seed} ({k}/{len(seeds)}): running", flush=True)
            cmd = [sys.executable, "-m", "metarl.demo", f"run_dir={run_dir}", f"seed={seed}", *overrides]
            t0 = time.time()
            code = run_demo(cmd, out / f"s{seed}.log", env)
            wall = round(time.time() - t0, 1)
            if code != 0:
                print(f"[demo_seeds] seed {seed} failed (exit {code}); see {out / f's{seed}.log'}",
                      flush=True)
                return 1
            res = seed_result(run_dir)
            if res is None:
                print(f"[demo_seeds] seed {seed}: no finished summary.json in {run_dir}", flush=True)
                return 1
        rec = {"config": name, "seed": seed, "overrides": overrides, "wall_s": wall, **where, **res}
        rec["seed"] = seed
        with results_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done[seed] = rec
        verdicts = "; ".join(f"C={cap} {m} {c['change']:+.3f} ±{c['band']:.3f} ({c['ratio']:.1f}x)"
                             for cap, per in rec["caps"].items() for m, c in per.items())
        print(f"[demo_seeds] {name} seed {seed}: {verdicts} ({wall} s)", flush=True)
    chosen = [done[s] for s in seeds if s in done]
    summary = write_tables(out, chosen)
    print(f"[demo_seeds] {name}, seeds {args.seeds}:\n{describe(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
