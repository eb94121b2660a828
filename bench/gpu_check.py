"""One short check of metarl's GPU path: train, evaluate and score with a model built from a config.

    python bench/gpu_check.py --out /tmp/gpu_check --json $OUT/gpu_check.json   # a GPU session (docs/gpu.md)
    python bench/gpu_check.py --quick --out /tmp/gpu_check_cpu                   # the same parts on a CPU, ~1 min

Parts, each in its own process and run directory under ``--out``, each through the console scripts' entry
(``metarl.cli.train:main`` / ``metarl.cli.score:main``, what ``metarl-train`` / ``metarl-score`` run):

1. ``train-<recipe>`` for ``outcome_grpo``, ``obj2_mc_progress`` and ``obj2_likelihood_progress``: a few GRPO
   steps of a randomly initialised Llama with the character tokenizer (``model=random-tiny``; nothing is
   downloaded), with the held-out evaluation before and after (``evaluate.n``). On CUDA: float32 weights
   and ``trainer=gpu`` (bf16 mixed precision, gradient checkpointing, its batch of 8 x 4 accumulation, G=8), a 256-wide, 4-layer
   model (head dim 64, as real models have; the default tiny one is 32 wide with head dim 8). On a CPU: float32,
   ``trainer=cpu``, ``threads=1``.
2. ``score``: ``metarl-score`` with the likelihood run's trained checkpoint (``model=hf``; ``random-tiny`` if that
   run failed) and the model-based rewards ``[likelihood_progress, mc_progress]`` on the built-in sample traces.

Each child process records where the policy really was (device and dtype of its parameters) when the held-out
evaluation, the model-based rewards and the end of the run saw it (it wraps those functions to look, changing
nothing). A part fails on a non-zero exit, missing or non-finite training metrics, missing evaluation or
scores, or, on CUDA, a policy that was not trained on the GPU; parts that ran on the CPU although a
GPU was there are warnings. The check goes on after a failed part, prints a summary per part and a one-line
verdict, writes the same to the JSON file after every part, and exits 1 if any part failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("outcome_grpo", "obj2_mc_progress", "obj2_likelihood_progress")
SAMPLE_TRACES = ROOT / "metarl" / "data" / "sample_traces.jsonl"
SCORE_REWARDS = ("likelihood_progress", "mc_progress")
# A random policy never answers right, so outcome rewards (and Monte Carlo progress) are all 0 and so are the
# advantages and gradients; likelihood progress in log-probability (not probability, ~1e-27 here) differs within
# each group: that run must move the weights (a finite, non-zero grad_norm), so the backward pass is checked too.
EXTRA = {"obj2_likelihood_progress": ["rewards.likelihood_progress.scale=log"]}
NEEDS_GRADIENT = ("obj2_likelihood_progress",)

# Sizes: None leaves the trainer config's own value (trainer=gpu's batch 8 x accumulation 4, G=8).
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(steps=2, hidden=32, layers=2, batch=4, generations=4, accumulation=1, cap=32, n_train=16,
                  n_eval=4),
    "cpu": dict(steps=3, hidden=32, layers=2, batch=8, generations=4, accumulation=1, cap=64, n_train=32, n_eval=8),
    "gpu": dict(steps=5, hidden=256, layers=4, batch=None, generations=None, accumulation=None, cap=128, n_train=64,
                n_eval=16),
}


# ----------------------------------------------------------------------------------------------- child process
def _install_probe(path: Path, snapshot: bool) -> None:
    """Record the device and dtype of the model the held-out evaluation, the model-based rewards and the end of
    the run see, and (``snapshot``) the fraction of its weights that differ at exit from what was loaded; written
    to ``path`` at exit. Wraps library functions to look at their arguments only."""
    import atexit

    import torch

    import metarl.eval.heldout as heldout
    import metarl.models.loading as loading
    import metarl.scoring as scoring

    seen: dict[str, list[str]] = {}
    loaded: list[Any] = []
    initial: list[Any] = []

    def where(model: Any) -> str | None:
        try:
            p = next(iter(model.parameters()))
        except (AttributeError, StopIteration, TypeError):
            return None
        return f"{p.device.type}:{str(p.dtype).removeprefix('torch.')}"

    def note(key: str, model: Any) -> None:
        w = where(model)
        if w is not None and w not in seen.setdefault(key, []):
            seen[key].append(w)

    load = loading.load_model_and_tokenizer

    def load_model_and_tokenizer(*a: Any, **k: Any):
        model, tok = load(*a, **k)
        loaded.append(model)
        note("loaded", model)
        if snapshot and not initial:
            initial.extend(p.detach().to("cpu", copy=True) for p in model.parameters())
        return model, tok

    evaluate = heldout.evaluate_policy

    def evaluate_policy(backend: Any, *a: Any, **k: Any):
        desc = str(k.get("desc") or "")
        phase = next((p for p in ("before", "during", "after") if f"{p} training" in desc), "")
        note(f"held-out evaluation {phase}".strip(), getattr(backend, "model", None))
        return evaluate(backend, *a, **k)

    score = scoring.Scorer.score

    def scorer_score(self: Any, traces: Any, *, model: Any = None, **k: Any):
        if any(getattr(r, "needs_model", False) or getattr(r, "needs_engine", False) for r in self.rewards):
            note("model-based rewards", model if model is not None else self.model)
        return score(self, traces, model=model, **k)

    loading.load_model_and_tokenizer = load_model_and_tokenizer
    heldout.evaluate_policy = evaluate_policy
    scoring.Scorer.score = scorer_score

    def write() -> None:
        for m in loaded:
            note("end of run", m)
        out: dict[str, Any] = {"phases": seen, "cuda_available": torch.cuda.is_available()}
        if loaded:
            out["parameters"] = sum(p.numel() for p in loaded[0].parameters())
        if initial:
            changed = sum(int((p.detach().cpu() != q).sum()) for p, q in zip(loaded[0].parameters(), initial))
            out["weights_changed"] = changed / max(1, sum(q.numel() for q in initial))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda_max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        path.write_text(json.dumps(out, indent=1))

    atexit.register(write)


def _child(app: str, probe: str, argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    _install_probe(Path(probe), snapshot=app == "train")
    sys.argv = [f"metarl-{app}", *argv]
    if app == "train":
        from metarl.cli.train import main
    else:
        from metarl.cli.score import main
    main()


# ---------------------------------------------------------------------------------------------- the parent
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "device": device, "gpu": device == "cuda", "cuda_available": torch.cuda.is_available(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": version("transformers"), "trl": version("trl"),
        "accelerate": version("accelerate"), "datasets": version("datasets"), "hydra-core": version("hydra-core"),
    }
    env["device_name"] = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({env['cpu']})"
    if device == "cuda":
        env["cuda"] = torch.version.cuda
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    return env


def model_overrides(size: dict[str, Any], dtype: str) -> list[str]:
    return ["model=random-tiny", f"model.dtype={dtype}", f"+model.tiny.hidden_size={size['hidden']}",
            f"+model.tiny.num_layers={size['layers']}"]


def train_overrides(recipe: str, size: dict[str, Any], device: str, threads: int, run_dir: Path,
                    tensorboard: bool) -> list[str]:
    gpu = device == "cuda"
    out = [f"recipe={recipe}", *model_overrides(size, "float32"),
           f"trainer={'gpu' if gpu else 'cpu'}", f"trainer.max_steps={size['steps']}",
           f"trainer.save_steps={size['steps']}", "trainer.warmup_steps=0", f"task.n_train={size['n_train']}",
           f"task.n_test={size['n_eval']}", "evaluate.enabled=true", f"evaluate.n={size['n_eval']}",
           f"budget.cap={size['cap']}", f"threads={threads}", "seed=0", f"run_dir={run_dir}", *EXTRA.get(recipe, [])]
    for key, name in (("batch", "per_device_train_batch_size"), ("generations", "num_generations"),
                      ("accumulation", "gradient_accumulation_steps")):
        if size[key] is not None:
            out.append(f"trainer.{name}={size[key]}")
    if gpu and not tensorboard:  # trainer=gpu reports to tensorboard: off where it is not installed
        out.append("trainer.report_to=[]")
    return out


def score_overrides(model: list[str], input_path: Path, threads: int, run_dir: Path) -> list[str]:
    return [f"input={input_path}", *model, f"rewards=[{','.join(SCORE_REWARDS)}]", f"threads={threads}", "seed=0",
            f"run_dir={run_dir}"]


def last_error(log: Path) -> str | None:
    """The most telling line of a failed part's log: the exception (last one), else the last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    pattern = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt)\b|metarl-\w+: .*error)")
    for ln in reversed(lines):
        if pattern.match(ln):
            return ln[:500]
    return lines[-1][:500] if lines else None


def launch(app: str, argv: list[str], run_dir: Path, log: Path, env: dict[str, str], timeout: float
           ) -> tuple[int | None, float, dict[str, Any]]:
    """Run one part in its own process (its own session, so a timeout ends all of it); return exit status (None:
    timed out), seconds and the probe's record."""
    probe = run_dir.parent / f"{run_dir.name}.probe.json"
    probe.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", app, str(probe), "--", *argv]
    t0 = time.time()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    seconds = time.time() - t0
    record: dict[str, Any] = {}
    if probe.exists():
        try:
            record = json.loads(probe.read_text())
        except json.JSONDecodeError:
            pass
    return rc, seconds, record


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def check_train(part: dict[str, Any], run_dir: Path, size: dict[str, Any], device: str) -> None:
    """Fill ``part`` from the run directory: steps, step times, evaluation; failures into ``errors``."""
    errors, warnings = part["errors"], part["warnings"]
    metrics = run_dir / "metrics.jsonl"
    rows = []
    if metrics.exists():
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    steps = [r for r in rows if "step_time" in r]
    part["steps"] = len(steps)
    times = [float(r["step_time"]) for r in steps]
    part["step_time_s"] = [round(t, 4) for t in times]
    if times:
        part["step_time_first_s"] = round(times[0], 4)
        part["s_per_step"] = round(statistics.median(times[1:] or times), 4)
    if len(steps) != size["steps"]:
        errors.append(f"metrics.jsonl logged {len(steps)} training steps with step_time, expected {size['steps']}")
    bad = [(r.get("step"), k) for r in steps for k in ("loss", "grad_norm") if k in r and not finite(r[k])]
    if bad:
        errors.append(f"non-finite training metrics: {bad[:4]}")
    if steps:
        part["loss"] = [r.get("loss") for r in steps]
        part["grad_norm"] = [r.get("grad_norm") for r in steps]
        part["learning_rate"] = steps[-1].get("learning_rate")
        part["reward_errors"] = sum(r.get("metarl/reward_errors", 0) or 0 for r in steps)
        dense = [r.get("metarl/reward/dense") for r in steps]
        part["dense_reward"] = dense
        if part.get("recipe") in NEEDS_GRADIENT and not any(finite(g) and g > 0 for g in part["grad_norm"]):
            errors.append(f"grad_norm was {part['grad_norm']}: no gradient reached the policy")
        changed = part.get("weights_changed")
        if changed is not None and any(finite(g) and g > 0 for g in part["grad_norm"]) and changed < 0.5:
            warnings.append(f"only {changed:.1%} of the weights changed although the gradients were non-zero: "
                            f"updates below the weights' {part.get('dtype')} resolution are lost (learning rate "
                            f"{part.get('learning_rate')})")
        if part["reward_errors"]:
            errors.append(f"the rewards failed on {part['reward_errors']} samples (metarl/reward_errors)")
    summary = run_dir / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        cap = str(size["cap"])
        for phase in ("before", "after"):
            res = (s.get(phase) or {}).get(cap)
            if not res or res.get("n") != size["n_eval"]:
                errors.append(f"no held-out evaluation {phase} training on {size['n_eval']} problems in summary.json")
            else:
                part[f"accuracy_{phase}"] = res.get("accuracy")
        part["train_seconds"] = s.get("train_seconds")
    else:
        errors.append("no summary.json")
    phases = part["devices"]
    trained = phases.get("end of run", [])
    want = "cuda:float32" if device == "cuda" else "cpu:float32"
    if trained and trained != [want]:
        errors.append(f"the trained policy ended on {', '.join(trained)}, expected {want}")
    if device == "cuda":
        for phase, seen in phases.items():
            if any(w.startswith("cpu") for w in seen) and phase not in ("loaded", "end of run"):  # the latter: an error
                warnings.append(f"{phase} ran on the CPU ({', '.join(seen)}) although a GPU was there")


def check_score(part: dict[str, Any], out_file: Path, n_lines: int, device: str) -> None:
    errors, warnings = part["errors"], part["warnings"]
    if not out_file.exists():
        errors.append(f"no {out_file.name}")
        return
    recs = [json.loads(ln) for ln in out_file.read_text().splitlines() if ln.strip()]
    part["lines_scored"] = len(recs)
    if len(recs) != n_lines:
        errors.append(f"{len(recs)} scored lines for {n_lines} input lines")
    episodes = [e for r in recs for e in r.get("episodes") or []]
    part["episodes"] = len(episodes)
    missing = sum(1 for e in episodes for k in SCORE_REWARDS if not finite((e.get("rewards") or {}).get(k)))
    if not episodes:
        errors.append("no episodes in the scored lines")
    if missing:
        errors.append(f"{missing} episode rewards missing or non-finite")
    errs = [r.get("line") for r in recs if (r.get("meta") or {}).get("reward_errors") or r.get("error")]
    if errs:
        errors.append(f"reward errors on lines {errs}")
    if device == "cuda":
        for phase, seen in part["devices"].items():
            if phase != "loaded" and any(w.startswith("cpu") for w in seen):
                warnings.append(f"metarl-score's {phase} ran on the CPU ({', '.join(seen)}) although a GPU was there")


def describe(part: dict[str, Any]) -> list[str]:
    status = "ok" if part["ok"] else "FAILED"
    rc = part["exit_status"]
    rc_text = "timed out" if rc is None and part.get("timed_out") else ("not run" if rc is None else f"exit {rc}")
    lines = [f"[{part['index']}] {part['name']:<32} {status:<6} {rc_text}, {part['seconds']:.1f} s"]
    if part.get("devices"):
        extra = f" ({part['parameters']:,} parameters)" if part.get("parameters") else ""
        if part.get("cuda_max_memory_gib") is not None:
            extra += f", peak GPU memory {part['cuda_max_memory_gib']} GiB"
        lines.append("      ran on: " + "; ".join(f"{k} {'/'.join(v)}" for k, v in part["devices"].items()) + extra)
    if part["kind"] == "train" and "steps" in part:
        st = (f", {part['s_per_step']:.3f} s/step (median of steps 2..{part['steps']}; step 1 "
              f"{part['step_time_first_s']:.3f} s)") if "s_per_step" in part else ""
        acc = ""
        if "accuracy_before" in part or "accuracy_after" in part:
            acc = f"; held-out accuracy {part.get('accuracy_before')} -> {part.get('accuracy_after')}"
        grads = [g for g in part.get("grad_norm") or [] if finite(g)]
        grad = f"; grad_norm max {max(grads):.3g}" if grads else ""
        if part.get("weights_changed") is not None:
            grad += f", {part['weights_changed']:.1%} of the weights changed"
        lines.append(f"      steps {part['steps']}/{part['steps_requested']}{st}{grad}{acc}")
    if part["kind"] == "score" and "lines_scored" in part:
        lines.append(f"      model {part['model']}: {part['lines_scored']} lines, {part.get('episodes', 0)} episodes "
                     f"scored with {', '.join(SCORE_REWARDS)}")
    for e in part["errors"]:
        lines.append(f"      error: {e}")
    for w in part["warnings"]:
        lines.append(f"      warning: {w}")
    return lines


def verdict(report: dict[str, Any]) -> str:
    parts, env = report["parts"], report["environment"]
    failed = [p for p in parts if not p["ok"]]
    warned = sum(len(p["warnings"]) for p in parts)
    where = (f"on {env['device_name']} in bf16 mixed precision" if env["gpu"] else
             "on the CPU in float32 -- " + ("the GPU left out (--device cpu)" if env["cuda_available"] else
                                            "no GPU (torch.cuda.is_available() is False)"))
    if failed:
        names = ", ".join(f"{p['name']} ({(p['errors'] or ['?'])[0][:80]})" for p in failed)
        return f"VERDICT: FAIL -- {len(failed)} of {len(parts)} parts failed {where}: {names}"
    note = f"; {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    return f"VERDICT: PASS -- all {len(parts)} parts ran {where}{note}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="folder of the run directories and logs "
                    "(default /tmp/gpu_check_<time>); must not hold an earlier check")
    ap.add_argument("--json", type=Path, default=None, help="the report (default OUT/gpu_check.json)")
    ap.add_argument("--quick", action="store_true", help="the smallest sizes (2 steps, cap 32): about a minute on "
                    "a 2-core CPU")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="auto: CUDA when torch sees a GPU, else the CPU; cpu: the CPU even with a GPU")
    ap.add_argument("--steps", type=int, default=None, help="training steps per recipe (default: 5 on CUDA, 3 on "
                    "a CPU, 2 with --quick)")
    ap.add_argument("--hidden", type=int, default=None, help="width of the random Llama (4 heads)")
    ap.add_argument("--layers", type=int, default=None, help="layers of the random Llama")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes to train")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of each part (default 1 on a CPU, "
                    "4 on a GPU machine: its CPU-side work)")
    ap.add_argument("--part-timeout", type=float, default=180.0, help="seconds one part may run")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check: a part gets at most "
                    "what is left, and parts not started in time fail as not run")
    ap.add_argument("--child", nargs=2, metavar=("APP", "PROBE"), help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        _child(args.child[0], args.child[1], rest)
        return 0
    if args.rest:
        ap.error(f"unrecognized arguments: {' '.join(args.rest)}")

    t_start = time.time()
    import importlib.util

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda, but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    size = dict(SIZES["quick" if args.quick else device if device == "cuda" else "cpu"])
    if args.quick and device == "cuda":  # small sizes, but the GPU's model and dtype
        size.update(hidden=SIZES["gpu"]["hidden"], layers=SIZES["gpu"]["layers"])
    for key in ("steps", "hidden", "layers"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    threads = args.threads if args.threads is not None else (4 if device == "cuda" else 1)
    out = (args.out or Path(f"/tmp/gpu_check_{time.strftime('%Y%m%d-%H%M%S')}")).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"gpu_check: --out {out} is not empty; choose a new folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    json_path = (args.json or out / "gpu_check.json").resolve()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]

    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1", HYDRA_FULL_ERROR="1",
               PYTHONUNBUFFERED="1", METARL_CACHE=str(out / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    tensorboard = importlib.util.find_spec("tensorboard") is not None

    report: dict[str, Any] = {
        "check": "metarl GPU check (bench/gpu_check.py)", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "environment": environment(device), "mode": "quick" if args.quick else "default", "sizes": size,
        "threads": threads, "out": str(out), "parts": [],
    }
    e = report["environment"]
    if device == "cuda":
        on = f", CUDA {e.get('cuda')}"
    else:
        on = " -- the GPU is left out (--device cpu)" if e["cuda_available"] else \
            " -- no GPU: torch.cuda.is_available() is False"
    header = [f"metarl GPU check {report['date']} ({report['mode']} sizes), out {out}",
              f"device: {e['device_name']}{on}",
              f"versions: torch {e['torch']}, transformers {e['transformers']}, trl {e['trl']}, accelerate "
              f"{e['accelerate']}, python {e['python']}; metarl {e['commit']}",
              f"model: random-tiny Llama {size['hidden']} wide, {size['layers']} layers, "
              f"{'float32 weights, bf16 mixed precision (trainer=gpu)' if device == 'cuda' else 'float32, trainer=cpu'}; {size['steps']} steps per "
              f"recipe, cap {size['cap']}, held-out n={size['n_eval']}; threads {threads}"]
    print("\n".join(header), flush=True)

    def save() -> None:
        json_path.write_text(json.dumps(report, indent=1))

    plan: list[tuple[str, str, Any]] = [("train", f"train-{r}", r) for r in recipes] + [("score", "score", None)]
    for index, (kind, name, recipe) in enumerate(plan, start=1):
        run_dir = out / name
        log = out / f"{name}.log"
        part: dict[str, Any] = {"index": index, "name": name, "kind": kind, "run_dir": str(run_dir),
                                "log": str(log), "exit_status": None, "seconds": 0.0, "errors": [], "warnings": [],
                                "devices": {}}
        report["parts"].append(part)
        left = args.budget - (time.time() - t_start)
        if kind == "train":
            argv = train_overrides(recipe, size, device, threads, run_dir, tensorboard)
            part.update(recipe=recipe, steps_requested=size["steps"],
                        dtype="float32")
        else:
            final = out / "train-obj2_likelihood_progress" / "final"
            trained = (final / "config.json").exists() and any(
                p["name"] == "train-obj2_likelihood_progress" and p["ok"] for p in report["parts"])
            dtype = "float32"  # weights; trainer=gpu computes in bf16 on CUDA
            model = (["model=hf", f"model.name_or_path={final}", f"model.dtype={dtype}"] if trained
                     else model_overrides(size, dtype))
            part.update(model=(f"the trained {final}" if trained else
                               f"random-tiny {size['hidden']}x{size['layers']}"), dtype=dtype)
            argv = score_overrides(model, SAMPLE_TRACES, threads, run_dir)
        part["command"] = f"python -m metarl.cli.{kind} " + " ".join(argv)
        if left < 20:
            part["errors"].append(f"not run: {args.budget:.0f} s budget spent")
            part["ok"] = False
        else:
            rc, seconds, probe = launch(kind, argv, run_dir, log, env, min(args.part_timeout, left))
            part.update(exit_status=rc, seconds=round(seconds, 1), devices=probe.get("phases", {}),
                        timed_out=rc is None, parameters=probe.get("parameters"),
                        cuda_max_memory_gib=probe.get("cuda_max_memory_gib"),
                        weights_changed=probe.get("weights_changed"))
            if rc is None:
                part["errors"].append(f"timed out after {seconds:.0f} s (log {log.name})")
            elif rc != 0:
                part["errors"].append(f"exit {rc}: {last_error(log)}")
            if rc is not None:
                if kind == "train":
                    check_train(part, run_dir, size, device)
                else:
                    n_lines = sum(1 for ln in SAMPLE_TRACES.read_text().splitlines() if ln.strip())
                    check_score(part, run_dir / "scored.jsonl", n_lines, device)
            part["ok"] = not part["errors"]
        print("\n".join(describe(part)), flush=True)
        save()

    report["seconds"] = round(time.time() - t_start, 1)
    report["ok"] = all(p["ok"] for p in report["parts"])
    report["verdict"] = verdict(report)
    save()
    print(f"total {report['seconds']:.0f} s; report {json_path}")
    print(report["verdict"], flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
