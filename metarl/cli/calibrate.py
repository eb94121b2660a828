"""``metarl-calibrate``: is the meta-prover μ calibrated for this policy, task and prover?

    metarl-calibrate model=tiny_split40                       # 64 held-out problems x 2 samples, m=8
    metarl-calibrate model=tiny budget.cap=192 problems=128 m=16 out=runs/calib
    metarl-calibrate prover=r1 model=smollm2-reasoner task=math ...
    metarl-calibrate input=runs/obj2_mc_progress/20260101-120000 step=1   # a run's logged rollouts, no model
    metarl-calibrate input=scored.jsonl                       # a metarl-score output scored with mc_progress

Without ``input``: samples ``samples`` completions of ``problems`` held-out problems of the task at cap
``budget.cap`` (:func:`metarl.eval.heldout.evaluate_policy`, the task's scorer), then estimates Ĵ at every episode
boundary with ``m`` forced answers (:meth:`metarl.rewards.progress.MCProgress.success_rates`). With ``input``: reads
traces that already carry Ĵ (``episodes[*].info.J``, ``meta.J_init``), e.g. a run's ``rollouts.jsonl`` scored by
``mc_progress``; an attempt's correctness is the recorded ``generation_correctness`` or, failing that, graded with
the run's task (its ``config.yaml``) or the task / grader given here.

Writes under ``out`` (default: the run directory): ``calibration.json`` (settings, timings, every statistic of
:class:`metarl.calibration.Calibration` and the verdict), ``calibration.csv`` (one row per episode: trace, step,
episode, kind, J_prev, J, delta_J, se_delta, outcome, attempt_correct), ``calibration_bins.csv`` (Ĵ_last bins:
lo, hi, n, mean_J, success_rate) and ``calibration.png``; prints the summary and the verdict. A configuration or
input error exits with status 2 and one line; ``strict=true`` exits with 1 when μ is uninformative.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from metarl.calibration import (Calibration, EpisodeCorrect, Thresholds, bins_rows, calibrate, episode_rows,
                                grader_correctness, json_safe, plot_calibration, recorded_correctness)
from metarl.cli.common import apply_verbosity, prepare_command_line
from metarl.config import conf_dir, plain
from metarl.registry import ConfigError

EXTRACT = ("auto", "raw", "boxed", "context", "full")
FILES = ("calibration.json", "calibration.csv", "calibration_bins.csv", "calibration.png")


def _whole(cfg: DictConfig, key: str, low: int) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{key}={v!r} must be a whole number >= {low}")
    return v


def check(cfg: DictConfig) -> dict[str, Any]:
    """The calibration options, checked (a :class:`ConfigError` names the key)."""
    opts: dict[str, Any] = {k: _whole(cfg, k, low) for k, low in
                            (("problems", 1), ("samples", 1), ("m", 1), ("bins", 1), ("threads", 1))}
    if opts["m"] < 8:
        print(f"metarl-calibrate: warning: m={opts['m']} < 8 forced answers per prefix: the standard error of one Ĵ is "
              f"up to {0.5 / math.sqrt(opts['m']):.2f}", file=sys.stderr)
    t = cfg.get("temperature")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise ConfigError(f"temperature={t!r} must be a number >= 0 (0: one greedy completion per problem)")
    if cfg.get("extract") not in EXTRACT:
        raise ConfigError(f"extract={cfg.get('extract')!r}: use one of {', '.join(EXTRACT)}")
    step = cfg.get("step")
    if step is not None and step not in ("first", "last") and (isinstance(step, bool) or not isinstance(step, int)):
        raise ConfigError(f"step={step!r}: use null (all steps), first, last or a step number")
    th = plain(cfg.get("thresholds")) or {}
    if not isinstance(th, dict) or set(th) - {"correlation", "verify_after_correct"}:
        raise ConfigError(f"thresholds={th!r}: known keys are correlation and verify_after_correct")
    try:
        opts["thresholds"] = Thresholds(**th)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(cfg.get("strict"), bool):
        raise ConfigError(f"strict={cfg.get('strict')!r} must be true or false")
    if not isinstance(cfg.get("verbose", False), bool):
        raise ConfigError(f"verbose={cfg.get('verbose')!r} must be true or false")
    return opts


# --------------------------------------------------------------------------- input: logged traces

def _input_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("rollouts.jsonl", "scored.jsonl"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"input={str(path)!r} is a directory without rollouts.jsonl or scored.jsonl; pass the JSONL "
                          f"of scored traces")
    raise ConfigError(f"input={str(path)!r} does not exist; pass a scored JSONL or a run directory")


def read_traces(path: Path, step: Any = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Trace records of a JSONL file (lines with ``episodes``), filtered to ``step``; problems as strings."""
    from metarl.runlog import jsonl_objects

    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = [obj for _, obj in jsonl_objects(f, path, problems)]
    traces = [r for r in rows if isinstance(r.get("episodes"), list)]
    if len(traces) < len(rows):
        problems.append(f"{path}: {len(rows) - len(traces)} line(s) without `episodes` skipped")
    steps = sorted({r["step"] for r in traces if isinstance(r.get("step"), int) and not isinstance(r["step"], bool)})
    if step is not None:
        if not steps:
            raise ConfigError(f"step={step}: the traces of {path} carry no training step")
        want = steps[0] if step == "first" else steps[-1] if step == "last" else step
        if want not in steps:
            raise ConfigError(f"step={step}: {path} has traces of steps {steps[:10]}{' ...' if len(steps) > 10 else ''}")
        traces = [r for r in traces if r.get("step") == want]
    return traces, problems


def _run_config(path: Path) -> DictConfig | None:
    root = path if path.is_dir() else path.parent
    cand = root / "config.yaml"
    if not cand.is_file():
        return None
    try:
        cfg = OmegaConf.load(cand)
    except Exception:  # a broken config: fall back to the task / grader given on the command line
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def _grading(cfg: DictConfig) -> EpisodeCorrect:
    from metarl.config import answer_tools, build_task_of

    task = build_task_of(cfg) if cfg.get("task") is not None else None
    grader, extract, _ = answer_tools(task, cfg.get("grader"), cfg.get("answer", "auto"), cfg.get("verdict"))
    return grader_correctness(grader, extract)


def _logged_m(run_cfg: DictConfig | None) -> int | None:
    try:
        m = run_cfg.rewards.mc_progress.m  # type: ignore[union-attr]
    except Exception:
        return None
    return m if isinstance(m, int) and not isinstance(m, bool) else None


def from_input(cfg: DictConfig) -> tuple[list[Any], EpisodeCorrect, int | None, dict[str, Any]]:
    """Logged traces, how attempts are graded, the run's m (when its config says) and notes on the input."""
    src = Path(str(cfg.input)).expanduser()
    path = _input_file(src)
    traces, problems = read_traces(path, cfg.get("step"))
    if not traces:
        raise ConfigError(f"input={str(src)!r}: no trace records (lines with `episodes`) in {path}")
    run_cfg = _run_config(src)
    source = f"the run's config ({(src if src.is_dir() else src.parent) / 'config.yaml'})" if run_cfg is not None \
        else "this command's task / grader"
    try:
        graded = _grading(run_cfg if run_cfg is not None else cfg)
    except ConfigError:
        if run_cfg is None:
            raise
        graded, source = _grading(cfg), "this command's task / grader (the run's config did not build)"

    def correct(trace: Any, episode: Any) -> bool | None:
        c = recorded_correctness(trace, episode)
        return graded(trace, episode) if c is None else c

    info = {"input": str(path), "lines_skipped": problems, "attempts_graded_by": source}
    return traces, correct, _logged_m(run_cfg), info


# --------------------------------------------------------------------------- sampling

def held_out_rows(cfg: DictConfig, task: Any, problems: int) -> list[dict[str, Any]]:
    """``problems`` held-out rows of the task (its test split; a dataset source's ``task.test_split``)."""
    from metarl.trainer.data import load_rows

    c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    c.task.n_test = problems
    c.task.n_train = 1 if task is not None else c.task.get("n_train", 1)
    _, test = load_rows(c, task)
    if not test:
        raise ConfigError(f"task {cfg.task.get('source')!r} has no held-out problems: for a dataset source set "
                          f"task.test_split")
    if len(test) < problems:
        print(f"metarl-calibrate: the task has {len(test)} held-out problems, fewer than problems={problems}",
              file=sys.stderr)
    return test[:problems]


def sample(cfg: DictConfig, opts: dict[str, Any]) -> tuple[list[Any], EpisodeCorrect, dict[str, Any]]:
    """Held-out traces of the policy with Ĵ at every episode boundary; how attempts are graded; timings."""
    from metarl.config import build_scorer, build_task_of
    from metarl.engine import Engine, as_chat, check_backend, make_backend, uses_chat
    from metarl.eval.heldout import CountingBackend, evaluate_policy
    from metarl.models.loading import load_model_and_tokenizer
    from metarl.rewards.progress import MCProgress
    from metarl.trainer.data import flatten_chat
    from metarl.utils import progress_bar

    check_backend(str(cfg.generation.backend))
    task = build_task_of(cfg)
    scorer = build_scorer(cfg, task=task)  # no rewards: segmenter, grader, extractor and the prover
    rows = held_out_rows(cfg, task, opts["problems"])
    model_cfg = plain(cfg.model)
    model_cfg.pop("lora", None)
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(**model_cfg)
    model.eval()
    if getattr(tok, "chat_template", None) is None:
        rows = flatten_chat(rows)
    else:
        try:
            chat = uses_chat(tok, cfg.get("chat_template", "auto"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if chat:
            rows = [{**r, "prompt": as_chat(r["prompt"])} for r in rows]
    scorer.tokenizer = tok
    backend = make_backend(cfg.generation, model, tok)
    t1 = time.perf_counter()
    temperature = float(cfg.temperature)
    per = f" x {opts['samples']} samples" if temperature > 0 and opts["samples"] > 1 else ""
    res = evaluate_policy(backend, rows, cap=int(cfg.budget.cap), scorer=scorer, samples=opts["samples"],
                          temperature=temperature, seed=int(cfg.seed), return_traces=True,
                          desc=f"sampling held-out traces, cap {int(cfg.budget.cap)} ({len(rows)} problems{per})")
    traces = res["traces"]
    t2 = time.perf_counter()
    mc = MCProgress(m=opts["m"], extract=cfg.extract, seed=int(cfg.seed))
    # one bar over the forced answers (the rows of the backend's one branch call; the draws are unchanged)
    bars: list[Any] = []

    def start(rows: int) -> None:
        bars.append(progress_bar(total=rows, desc=f"estimating Ĵ ({opts['m']} forced answers per prefix)",
                                 unit="answer"))

    try:
        mc.success_rates(traces, Engine(CountingBackend(backend, lambda k: bars[-1].update(k), start, method="branch"),
                                        scorer.prover), scorer.grader, scorer.extract_answer)
    finally:
        for bar in bars:
            bar.close()
    t3 = time.perf_counter()
    if hasattr(backend, "close"):
        backend.close()
    info = {"problems": len(rows), "samples": opts["samples"] if temperature > 0 else 1, "cap": int(cfg.budget.cap),
            "temperature": temperature, "extract": cfg.extract, "accuracy": res["accuracy"],
            "episodes_per_trace": res["episodes_per_trace"], "tokens": res["tokens"],
            "seconds": {"load": round(t1 - t0, 2), "sample": round(t2 - t1, 2), "estimate_J": round(t3 - t2, 2)}}
    return traces, grader_correctness(scorer.grader, scorer.extract_answer), info


# --------------------------------------------------------------------------- outputs

def write_outputs(cal: Calibration, traces: list[Any], correct: EpisodeCorrect, out: Path,
                  report: dict[str, Any], title: str) -> list[str]:
    """calibration.json / .csv / _bins.csv / .png under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rows = episode_rows(traces, correct, cal.m)
    steps = [(t.get("step") if isinstance(t, dict) else None) for t in traces]
    header = ["trace", "step", "episode", "kind", "J_prev", "J", "delta_J", "se_delta", "outcome", "attempt_correct"]
    with open(out / "calibration.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r["trace"], "" if steps[r["trace"]] is None else steps[r["trace"]], r["episode"], r["kind"],
                        r["J_prev"], r["J"], r["delta_J"], r["se_delta"], r["outcome"],
                        "" if r["attempt_correct"] is None else int(r["attempt_correct"])])
    with open(out / "calibration_bins.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["lo", "hi", "n", "mean_J", "success_rate"])
        w.writeheader()
        w.writerows(bins_rows(cal))
    plot_calibration(cal, out / "calibration.png", title)
    (out / "calibration.json").write_text(json.dumps(json_safe({**report, "calibration": cal.to_dict()}), indent=2,
                                                     ensure_ascii=False) + "\n", encoding="utf-8")
    return [str(out / f) for f in FILES]


def run(cfg: DictConfig) -> dict[str, Any]:
    """The whole command; returns what calibration.json holds."""
    from metarl.utils import set_threads

    opts = check(cfg)
    set_threads(opts["threads"])
    t0 = time.perf_counter()
    out = Path(str(cfg.out or cfg.run_dir))
    if cfg.get("input"):
        traces, correct, m, info = from_input(cfg)
        m = m or None
        title = f"μ calibration: {Path(info['input']).parent.name}/{Path(info['input']).name}"
    else:
        traces, correct, info = sample(cfg, opts)
        m = opts["m"]
        title = f"μ calibration: model={cfg.model.name_or_path}, m={m}, cap {cfg.budget.cap}"
    cal = calibrate(traces, opts["thresholds"], correct, bins=opts["bins"], m=m)
    if cal.n_traces == 0:
        raise ConfigError(f"no trace carries Ĵ on every prefix and an outcome ({len(traces)} read): score the traces "
                          f"with rewards=[mc_progress] (training with an Obj-2 recipe logs them), or omit input= to "
                          f"sample and estimate Ĵ here")
    report = {"command": "metarl-calibrate " + " ".join(sys.argv[1:]), **info,
              "m": m, "seconds_total": round(time.perf_counter() - t0, 2)}
    files = write_outputs(cal, traces, correct, out, report, title)
    report["seconds_total"] = round(time.perf_counter() - t0, 2)
    print("metarl-calibrate: " + cal.summary().replace("\n", "\nmetarl-calibrate: "))
    print(f"metarl-calibrate: {report['seconds_total']:.1f} s; wrote {', '.join(files)}")
    return {**report, "calibration": cal, "files": files}


@hydra.main(version_base=None, config_path=conf_dir(), config_name="calibrate")
def _main(cfg: DictConfig) -> None:
    apply_verbosity(cfg)  # verbose=false: one bar per phase, no library chatter
    try:
        result = run(cfg)
    except ConfigError as e:
        print(f"metarl-calibrate: error: {e}", file=sys.stderr)
        sys.exit(2)
    if cfg.get("strict") and not result["calibration"].informative:
        sys.exit(1)


def main() -> None:
    prepare_command_line("calibrate")  # plug-ins in the current directory; run_dir= is Hydra's output directory
    _main()


if __name__ == "__main__":
    main()
