"""Benchmarks of the generation engine on SmolLM2-135M-Instruct, both backends, ratios measured in one run
(issue #11 item 4). Writes ``DIR/bench_engine.json`` and ``DIR/bench_engine.csv``; ``--page`` writes the results
page (``docs/results_engine.md``) from the JSON.

    .venv-vllm/bin/python bench/bench_engine.py --out runs/bench_engine --page docs/results_engine.md   # full
    .venv/bin/python bench/bench_engine.py --out /tmp/bench-engine --quick      # smoke run, numbers meaningless
    python bench/bench_engine.py --page-from runs/bench_engine/bench_engine.json --page docs/results_engine.md

Without vLLM installed the vLLM parts are skipped (the JSON says why); the transformers parts still run.
Three parts, on the built-in subset-sum task (difficulty 2) with the chat system prompt of
``recipes/smollm2_obj1.yaml``:

1. ``rollout``: an ``episodes`` rollout (``Engine.run``, one backend call per episode step for the whole batch):
   ``--prompts`` problems, episodes end at a paragraph break ``"\\n\\n"`` (SmolLM2 does not write the task's
   tags but does write paragraphs), at most ``--max-episodes`` episodes, compute cap ``--cap``, temperature 0.8,
   a forced answer (``prover=tags``) for streams cut by the cap or the episode limit, as a training rollout
   with ``rollout=episodes`` does. Tokens/s = tokens the backend generated (policy tokens and forced answers)
   / wall seconds of the ``Engine.run`` call. vLLM's prefix cache is reset before each timed call.
2. ``mc``: Monte Carlo progress, ``MCProgress(m=4).score_batch`` through ``Engine.branch`` on the traces of the
   first transformers rollout (thinking tokens only), segmented at the same paragraph breaks (at most
   ``--max-episodes`` episodes, so at most ``max_episodes + 1`` prefixes per trace, the prompt alone included).
   transformers: ``HFBackend`` (one prefill per trace, its KV cache shared by every prefix and branch) against
   ``HFBackend(prefix_sharing=False)`` (every branch row prefilled on its own); vLLM: a standalone engine with
   prefix caching, the cache reset before the call (``cold``), and with the full traces prefilled into the cache
   first (``traces cached``: in training the engine has just generated them), against an engine without prefix
   caching. Target: prefix reuse >= 4x faster than no reuse.
3. ``train``: ``metarl-train`` step time of ``obj2_mc_progress`` (m=4) and ``outcome_grpo`` on each backend, same
   model, data, seed and batch, ``rollout=single`` (TRL generates: HF ``generate`` or TRL's colocated vLLM
   engine), ``segmenter=paragraphs`` with ``max_episodes_per_trace`` = ``--max-episodes``; TRL's ``step_time``,
   median over steps 2..N (``bench_train_step.step_times``, each run in its own process). Also timed per step:
   TRL's generation (``_generate``) and the reward computation (``_calculate_rewards``, where Monte Carlo
   progress samples its branches). Target: MC step <= 1.5x an outcome step on the vLLM backend.

Timed calls of parts 1 and 2 are interleaved (``--repeats`` rounds, the order reversed every other round) and
the median is reported, so a change in machine load hits both sides of a ratio alike. vLLM's CPU worker runs in
this process and binds its threads: the transformers calls run under the same binding (recorded).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import bench_train_step  # noqa: E402

CHILD_MARK = "BENCH_ENGINE_CHILD_RESULT "
EPISODE_STOP = ("\n\n",)
TARGET_REUSE = 4.0
TARGET_TRAIN = 1.5
TRAIN_RECIPES = ("outcome_grpo", "obj2_mc_progress")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (``QUICK``: a smoke run whose numbers mean nothing)."""

    prompts: int = 8
    cap: int = 384
    max_episodes: int = 6
    temperature: float = 0.8
    m: int = 4
    repeats: int = 2
    gen_batch: int = 64
    train_cap: int = 128
    train_batch: int = 8
    train_group: int = 4
    train_steps: int = 4
    threads: int = 1
    kv_cache_gib: float = 2.0
    seed: int = 0
    warmup: bool = True


QUICK = Settings(prompts=2, cap=24, max_episodes=3, repeats=1, train_cap=16, train_batch=2, train_group=2,
                 train_steps=2, kv_cache_gib=1.0, warmup=False)

T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[bench_engine {time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def system_prompt() -> str:
    """The chat system prompt of ``recipes/smollm2_obj1.yaml``."""
    from omegaconf import OmegaConf

    return str(OmegaConf.load(ROOT / "recipes" / "smollm2_obj1.yaml").task.system_prompt)


def vllm_reason() -> str | None:
    """Why the vLLM parts cannot run here (None: they can)."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed in this environment (run in .venv-vllm: `make test-vllm` builds it, "
                "then `.venv-vllm/bin/python bench/bench_engine.py ...`)")
    return None


# ---------------------------------------------------------------------- a backend that counts its work
class Counted:
    """A backend wrapper counting calls, requests, generated tokens and seconds inside the backend."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name, self.tokenizer, self.eos_ids = inner.name, inner.tokenizer, inner.eos_ids
        self.reset()

    def reset(self) -> None:
        self.calls = self.requests = self.tokens = 0
        self.seconds = 0.0

    def generate(self, requests, sampling, seed=None):
        t = time.perf_counter()
        out = self.inner.generate(requests, sampling, seed)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        self.requests += len(requests)
        self.tokens += sum(len(c) for r in out for c in r)
        return out

    def branch(self, sequences, prefixes, n, max_tokens, stop, sampling, seed=None):
        t = time.perf_counter()
        out = self.inner.branch(sequences, prefixes, n, max_tokens, stop, sampling, seed)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        self.requests += sum(len(ps) for ps in prefixes)
        self.tokens += sum(len(c) for per in out for cs in per for c in cs)
        return out


# ---------------------------------------------------------------------- parts 1 and 2 (one process)
def interleaved(fns: dict[str, Callable[[], dict[str, Any]]], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Run every function once per round, the order reversed every other round; each returns its record,
    to which the round and wall seconds are added."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            rec = fns[name]()
            rec.update(round=r, seconds=time.perf_counter() - t, load=load())
            runs[name].append(rec)
            say(f"  {name} round {r}: {rec['seconds']:.1f} s")
    return runs


def summary(runs: list[dict[str, Any]], tokens_key: str = "tokens") -> dict[str, Any]:
    secs = [r["seconds"] for r in runs]
    med = statistics.median(secs)
    toks = statistics.median(r[tokens_key] for r in runs)
    return {"seconds": med, "seconds_all": secs, tokens_key: toks, "tok_s": toks / med if med else None}


def prompts_for(tok: Any, n: int, seed: int) -> tuple[list[dict[str, Any]], list[list[int]]]:
    from metarl.engine import prompt_ids_for
    from metarl.tasks import build_task

    rows = build_task({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 2}).generate("train", n=n, seed=seed)
    sys_msg = {"role": "system", "content": system_prompt()}
    return rows, [prompt_ids_for(tok, [sys_msg, {"role": "user", "content": r["prompt"]}]) for r in rows]


def rollout_fn(backend: Counted, prompt_ids: list[list[int]], s: Settings, keep: list | None = None,
               before: Callable[[], None] | None = None) -> Callable[[], dict[str, Any]]:
    from metarl.engine import Engine, Sampling, StreamSpec
    from metarl.prover import ProverConfig

    spec = StreamSpec(cap=s.cap, episode_stop=EPISODE_STOP, max_episodes=s.max_episodes, force_answer=True)
    engine = Engine(backend, ProverConfig())

    def run() -> dict[str, Any]:
        if before is not None:
            before()
        backend.reset()
        streams = engine.run(prompt_ids, spec, Sampling(s.temperature), seed=s.seed)
        if keep is not None and not keep:
            keep.extend(streams)
        n = len(streams)
        return {"tokens": backend.tokens, "calls": backend.calls, "backend_seconds": backend.seconds, "streams": n,
                "episodes_mean": sum(x.episodes for x in streams) / n,
                "thinking_mean": sum(x.thinking for x in streams) / n,
                "thinking_max": max(x.thinking for x in streams),
                "ended": sum(x.ended for x in streams), "forced": sum(x.forced for x in streams),
                "at_cap": sum(x.thinking >= s.cap for x in streams),
                "at_max_episodes": sum(x.episodes >= s.max_episodes and not x.ended for x in streams)}

    return run


def traces_from(streams: Sequence[Any], rows: Sequence[dict[str, Any]], tok: Any, max_episodes: int) -> list[Any]:
    """Segmented traces (thinking tokens only, paragraph episodes, at most ``max_episodes``) for MCProgress."""
    from metarl.scoring import EpisodeLimit
    from metarl.segmenters import ParagraphSegmenter, segment
    from metarl.types import Trace

    seg = EpisodeLimit(ParagraphSegmenter("\n\n"), max_episodes)
    out = []
    for st, row in zip(streams, rows, strict=True):
        ids = list(st.ids[:st.thinking])
        text = tok.decode(ids, skip_special_tokens=True)
        t = Trace(prompt=row["prompt"], completion=text, answer=str(row["answer"]), completion_ids=ids,
                  prompt_ids=list(st.prompt_ids))
        t.episodes = segment(seg, text, token_ids=ids, tokenizer=tok)
        out.append(t)
    return out


def mc_fn(backend: Counted, traces: list[Any], grader: Callable, s: Settings,
          before: Callable[[], None] | None = None) -> Callable[[], dict[str, Any]]:
    from metarl.engine import Engine
    from metarl.prover import ProverConfig
    from metarl.rewards.progress import MCProgress

    engine = Engine(backend, ProverConfig())
    mc = MCProgress(m=s.m, extract="auto", seed=s.seed)

    def run() -> dict[str, Any]:
        if before is not None:
            before()
        backend.reset()
        t = time.perf_counter()
        deltas = mc.score_batch(traces, engine, grader)
        secs = time.perf_counter() - t
        prefixes = sum(len(d) + 1 for d in deltas)
        return {"tokens": backend.tokens, "calls": backend.calls, "contexts": backend.requests,
                "samples": backend.requests * s.m, "prefixes": prefixes, "score_seconds": secs,
                "backend_seconds": backend.seconds}

    return run


def parts_rollout_mc(s: Settings, backends: Sequence[str], skip: dict[str, str]) -> dict[str, Any]:
    """Parts 1 and 2 in this process: both backends loaded once, calls interleaved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metarl.engine.hf import HFBackend
    from metarl.models.smollm2 import smollm2_hf_dir
    from metarl.tasks import build_task

    torch.set_num_threads(s.threads)
    d = smollm2_hf_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    info: dict[str, Any] = {"model_dir": d, "threads_before_vllm": torch.get_num_threads()}
    rows, prompt_ids = prompts_for(tok, s.prompts, s.seed)
    info["prompt_tokens"] = [len(p) for p in prompt_ids]
    hf = Counted(HFBackend(model, tok, s.gen_batch))
    hf_plain = Counted(HFBackend(model, tok, s.gen_batch, prefix_sharing=False))
    vl = vl_off = None
    if "vllm" in backends and "vllm" not in skip:
        from metarl.engine.vllm import VLLMBackend

        say("starting two vLLM engines (prefix caching on / off)")
        t = time.perf_counter()
        kw = dict(dtype="float32", max_model_len=2048, kv_cache_gib=s.kv_cache_gib)
        vl = Counted(VLLMBackend.standalone(d, **kw))
        vl_off = Counted(VLLMBackend.standalone(d, enable_prefix_caching=False, **kw))
        info["vllm_start_seconds"] = time.perf_counter() - t
        info["threads_after_vllm"] = torch.get_num_threads()
        info["block_size"] = vl.inner.llm.llm_engine.vllm_config.cache_config.block_size

    def reset(b: Counted) -> Callable[[], None]:
        return lambda: b.inner.llm.reset_prefix_cache()

    # ---- part 1: episodes rollout
    say(f"part 1: episodes rollout, {s.prompts} prompts, cap {s.cap}, <= {s.max_episodes} episodes at '\\n\\n'")
    t_part = time.perf_counter()
    load_start = load()
    warm = prompt_ids[:2]
    small = replace(s, cap=8, max_episodes=2)
    for b in (hf, vl, vl_off) if s.warmup else ():
        if b is not None:
            rollout_fn(b, warm, small)()
    first: list[Any] = []
    fns = {"transformers": rollout_fn(hf, prompt_ids, s, keep=first)}
    if vl is not None:
        fns["vllm"] = rollout_fn(vl, prompt_ids, s, before=reset(vl))
    runs = interleaved(fns, s.repeats)
    rollout = {"settings": {"prompts": s.prompts, "cap": s.cap, "max_episodes": s.max_episodes,
                            "episode_stop": list(EPISODE_STOP), "temperature": s.temperature, "force_answer": True,
                            "prover": "tags (suffix <answer>, 16 answer tokens)"},
               "runs": runs, "summary": {k: summary(v) for k, v in runs.items()},
               "wall_seconds": time.perf_counter() - t_part, "load_start": load_start, "load_end": load()}
    for k, v in runs.items():
        rollout["summary"][k].update({f: v[0][f] for f in ("calls", "episodes_mean", "thinking_mean", "thinking_max",
                                                            "ended", "forced", "at_cap", "at_max_episodes")})
    if vl is not None:
        rollout["ratio_vllm_over_transformers_tok_s"] = (rollout["summary"]["vllm"]["tok_s"]
                                                         / rollout["summary"]["transformers"]["tok_s"])

    # ---- part 2: Monte Carlo progress
    task = build_task({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 2})
    traces = traces_from(first, rows, tok, s.max_episodes)
    lengths = [len(t.prompt_ids) + len(t.completion_ids) for t in traces]
    eps = [len(t.episodes) for t in traces]
    say(f"part 2: MC progress m={s.m} on {len(traces)} traces of {min(lengths)}..{max(lengths)} tokens, "
        f"{min(eps)}..{max(eps)} episodes")
    t_part = time.perf_counter()
    load_start = load()
    warm_traces = traces_from(first[:1], rows[:1], tok, s.max_episodes)
    for b in (hf, hf_plain, vl, vl_off) if s.warmup else ():
        if b is not None:
            mc_fn(b, warm_traces, task.verify, replace(s, m=2))()

    def prefill(b: Counted) -> Callable[[], None]:
        from metarl.engine.base import GREEDY, Request

        def go() -> None:
            b.inner.llm.reset_prefix_cache()
            b.inner.generate([Request(tuple(t.prompt_ids + t.completion_ids), 1) for t in traces], GREEDY)

        return go

    fns = {"transformers reuse": mc_fn(hf, traces, task.verify, s),
           "transformers no reuse": mc_fn(hf_plain, traces, task.verify, s)}
    if vl is not None:
        fns["vllm prefix cache (cold)"] = mc_fn(vl, traces, task.verify, s, before=reset(vl))
        fns["vllm no prefix cache"] = mc_fn(vl_off, traces, task.verify, s)
        fns["vllm prefix cache (traces cached)"] = mc_fn(vl, traces, task.verify, s, before=prefill(vl))
    runs = interleaved(fns, s.repeats)
    summ = {k: summary(v) for k, v in runs.items()}
    for k, v in runs.items():
        summ[k].update({f: v[0][f] for f in ("calls", "contexts", "samples", "prefixes")})
    ratios = [{"backend": "transformers", "reuse": "transformers reuse", "baseline": "transformers no reuse"}]
    if vl is not None:
        ratios += [{"backend": "vllm", "reuse": "vllm prefix cache (cold)", "baseline": "vllm no prefix cache"},
                   {"backend": "vllm", "reuse": "vllm prefix cache (traces cached)",
                    "baseline": "vllm no prefix cache"}]
    for r in ratios:
        r["speedup"] = summ[r["baseline"]]["seconds"] / summ[r["reuse"]]["seconds"]
        r["target"] = TARGET_REUSE
        r["met"] = r["speedup"] >= TARGET_REUSE
    mc = {"settings": {"m": s.m, "traces": len(traces), "trace_tokens": lengths, "episodes": eps,
                       "prefixes": sum(e + 1 for e in eps), "answer_tokens": 16, "answer_temperature": 0.7,
                       "segmenter": "paragraphs (\\n\\n)", "max_episodes": s.max_episodes,
                       "context_tokens": sum(len(t.prompt_ids) * (len(t.episodes) + 1) + sum(
                           e.token_end for e in t.episodes) for t in traces)},
          "runs": runs, "summary": summ, "ratios": ratios,
          "wall_seconds": time.perf_counter() - t_part, "load_start": load_start, "load_end": load()}
    for b in (vl, vl_off):
        if b is not None:
            b.inner.close()
    return {"info": info, "rollout": rollout, "mc": mc}


# ---------------------------------------------------------------------- part 3 (a process per run)
def train_overrides(s: Settings, backend: str, recipe: str) -> list[str]:
    sp = system_prompt().replace("\\", "\\\\").replace("'", "\\'")
    extra = ["segmenter=paragraphs", f"max_episodes_per_trace={s.max_episodes}", "rollout=single",
             f"task.system_prompt='{sp}'", "trainer.learning_rate=1e-5",
             f"trainer.temperature={s.temperature}", "task.n_train=64", f"generation.backend={backend}"]
    if recipe == "obj2_mc_progress":
        extra.append(f"rewards.mc_progress.m={s.m}")
    return bench_train_step.common_overrides(s.threads, s.train_cap, s.train_batch, s.train_group, extra,
                                             target_tokens=None)


def train_child(spec: dict[str, Any]) -> dict[str, Any]:
    """(In a child process.) One training run: ``bench_train_step.step_times`` plus per-step seconds of TRL's
    generation and of the reward computation."""
    import metarl.trainer.grpo as grpo

    phases: dict[str, list[float]] = {"generate": [], "rewards": []}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                phases[name].append(time.perf_counter() - t)
        return wrapper

    cls = grpo.MetaRLTrainer
    cls._generate = timed("generate", cls._generate)
    cls._calculate_rewards = timed("rewards", cls._calculate_rewards)
    out = Path(spec["out"])
    t = time.perf_counter()
    median, info = bench_train_step.step_times(spec["recipe"], spec["overrides"], spec["steps"], "smollm2", out)
    wall = time.perf_counter() - t
    (metrics,) = out.glob(f"{spec['recipe']}-*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    later = slice(1, None) if len(rows) > 1 else slice(None)
    return {"step_seconds": median, "step_times": [r["step_time"] for r in rows], "wall_seconds": wall,
            "episodes_per_trace": info["episodes"], "tokens_mean": info["tokens"],
            "generate_seconds": phases["generate"], "rewards_seconds": phases["rewards"],
            "generate_median": statistics.median(phases["generate"][later]) if phases["generate"] else None,
            "rewards_median": statistics.median(phases["rewards"][later]) if phases["rewards"] else None}


def part_train(s: Settings, backends: Sequence[str], skip: dict[str, str], out: Path) -> dict[str, Any]:
    t_part = time.perf_counter()
    load_start = load()
    order = []  # ABBA: transformers outcome, mc, then vllm mc, outcome
    for i, b in enumerate(b for b in backends if b not in skip):
        order += [(b, r) for r in (TRAIN_RECIPES if i % 2 == 0 else TRAIN_RECIPES[::-1])]
    runs: dict[str, dict[str, Any]] = {}
    for backend, recipe in order:
        child_out = out / "train" / f"{backend}-{recipe}"
        child_out.mkdir(parents=True, exist_ok=True)
        spec = {"recipe": recipe, "overrides": train_overrides(s, backend, recipe), "steps": s.train_steps,
                "out": str(child_out)}
        say(f"part 3: metarl-train recipe={recipe} generation.backend={backend}, {s.train_steps} steps")
        t = time.perf_counter()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--train-child", json.dumps(spec)],
                              capture_output=True, text=True, env=env, cwd=str(ROOT))
        (child_out / "child.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARK)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"training run {backend}/{recipe} failed (exit {proc.returncode}); see "
                               f"{child_out / 'child.log'}:\n{proc.stderr[-3000:]}")
        rec = json.loads(lines[-1][len(CHILD_MARK):])
        rec.update(process_seconds=time.perf_counter() - t, load=load(), overrides=spec["overrides"])
        runs[f"{backend}/{recipe}"] = rec
        say(f"  step {rec['step_seconds']:.1f} s (steps {', '.join(f'{x:.1f}' for x in rec['step_times'])})")
    ratios = []
    for b in backends:
        if b in skip:
            continue
        o, m = runs[f"{b}/outcome_grpo"], runs[f"{b}/obj2_mc_progress"]
        r = {"backend": b, "ratio": m["step_seconds"] / o["step_seconds"], "target": TARGET_TRAIN if b == "vllm" else None}
        r["met"] = None if r["target"] is None else r["ratio"] <= TARGET_TRAIN
        if m.get("rewards_median") is not None and o.get("rewards_median") is not None:
            r["mc_rewards_minus_outcome_rewards_s"] = m["rewards_median"] - o["rewards_median"]
        ratios.append(r)
    return {"settings": {"recipes": list(TRAIN_RECIPES), "model": "smollm2", "cap": s.train_cap,
                         "batch": s.train_batch, "group": s.train_group, "steps": s.train_steps, "m": s.m,
                         "rollout": "single (TRL generates)", "segmenter": "paragraphs",
                         "max_episodes_per_trace": s.max_episodes, "threads": s.threads},
            "runs": runs, "ratios": ratios, "wall_seconds": time.perf_counter() - t_part,
            "load_start": load_start, "load_end": load()}


# ---------------------------------------------------------------------- outputs
def machine(s: Settings) -> dict[str, Any]:
    import compare_learning

    m = {**compare_learning.machine(), "threads": s.threads, "gpu": False}
    if importlib.util.find_spec("vllm") is not None:
        import vllm

        m["vllm"] = vllm.__version__
    return m


def write_csv(result: dict[str, Any], path: Path) -> None:
    rows = []
    for part in ("rollout", "mc"):
        for variant, runs in (result.get(part) or {}).get("runs", {}).items():
            for r in runs:
                rows.append({"part": part, "variant": variant, **{k: v for k, v in r.items() if k != "load"}})
    for variant, r in (result.get("train") or {}).get("runs", {}).items():
        rows.append({"part": "train", "variant": variant, "seconds": r["step_seconds"], "tokens": r["tokens_mean"],
                     "step_times": " ".join(f"{x:.3f}" for x in r["step_times"]),
                     "generate_median": r["generate_median"], "rewards_median": r["rewards_median"]})
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _f(x: Any, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _met(x: bool | None) -> str:
    return "-" if x is None else "**yes**" if x else "**no**"


def page(result: dict[str, Any]) -> str:
    """The results page (markdown) from the JSON of a run."""
    m, s = result["machine"], result["settings"]
    L = ["# Generation engine benchmarks: transformers vs vLLM on SmolLM2-135M-Instruct", "",
         "Generated by `bench/bench_engine.py` from its JSON output; do not edit by hand (issue #11 item 4).", "",
         "**No GPU run was made**: every number below is from a CPU machine; no GPU machine was available.", "",
         "## How it was produced", "", "```", result["command"], "```", "",
         f"- machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs; Python {m['python']}, "
         f"torch {m['torch']}, transformers {m['transformers']}, TRL {m['trl']}, vLLM {m.get('vllm', 'not installed')}; "
         f"{s['threads']} torch threads (vLLM's in-process CPU worker binds them once it starts)",
         f"- finished {result['finished']}; total wall time {result['wall_seconds'] / 60:.1f} min"
         + "".join(f"; {p} {result[p]['wall_seconds'] / 60:.1f} min" for p in ("rollout", "mc", "train")
                   if result.get(p)),
         f"- **load caveat**: the machine is shared with other jobs (load average {result['load_start']} at the "
         f"start, {result['load_end']} at the end, 1/5/15 min). Absolute seconds move with that load; ratios are "
         "measured in one run with the timed calls interleaved (parts 1-2) or the runs back to back (part 3).",
         "- model SmolLM2-135M-Instruct (float32 on both backends; vLLM: standalone in-process engines, eager, "
         f"KV blocks of {result.get('info', {}).get('block_size', '-')} tokens; training: TRL's colocated engine), "
         "built-in subset-sum task (difficulty 2) with the chat system prompt of `recipes/smollm2_obj1.yaml`",
         ]
    for part, why in result.get("skipped", {}).items():
        L.append(f"- skipped: {part}: {why}")
    if result.get("quick"):
        L.append("- **quick run**: smoke sizes, the numbers mean nothing")
    ro = result.get("rollout")
    if ro:
        st = ro["settings"]
        L += ["", "## 1. `episodes` rollout (tokens/s)", "",
              f"{st['prompts']} prompts, `Engine.run` with episodes ending at a paragraph break `\"\\n\\n\"` (SmolLM2 "
              f"does not write the task's tags; it does write paragraphs), at most {st['max_episodes']} episodes, cap "
              f"C={st['cap']}, temperature {st['temperature']}, a forced answer for streams cut by the cap or the "
              "episode limit; one engine call per episode step for the whole batch. Tokens = what the backend "
              f"generated (policy tokens and forced answers); median of {s['repeats']} interleaved rounds.", "",
              "| backend | seconds | tokens | tokens/s | engine calls | episodes / stream | thinking tokens (mean, max) "
              "| ended on their own | cut at C | stopped at the episode limit |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for b, r in ro["summary"].items():
            L.append(f"| {b} | {_f(r['seconds'], 1)} | {r['tokens']:.0f} | {_f(r['tok_s'], 1)} | {r['calls']} | "
                     f"{_f(r['episodes_mean'])} | {_f(r['thinking_mean'], 0)}, {r['thinking_max']} | "
                     f"{r['ended']}/{st['prompts']} | {r['at_cap']} | {r['at_max_episodes']} |")
        if "ratio_vllm_over_transformers_tok_s" in ro:
            L += ["", f"vLLM / transformers tokens/s: **{ro['ratio_vllm_over_transformers_tok_s']:.2f}x** "
                      "(no target). The vLLM run's streams are sampled by vLLM, so their lengths differ from the "
                      "transformers run's; tokens/s normalises for that."]
    mc = result.get("mc")
    if mc:
        st = mc["settings"]
        tl = st["trace_tokens"]
        L += ["", "## 2. Monte Carlo progress, m=4, up to 6 episodes per trace", "",
              f"`MCProgress(m={st['m']}).score_batch` through `Engine.branch` on the {st['traces']} traces of the "
              f"first transformers rollout: prompt + thinking of {min(tl)}..{max(tl)} tokens (mean "
              f"{sum(tl) / len(tl):.0f}), {min(st['episodes'])}..{max(st['episodes'])} paragraph episodes "
              f"(at most {st['max_episodes']}), {st['prefixes']} prefixes (the prompt alone included), "
              f"{st['context_tokens']} context tokens over all prefixes; {st['answer_tokens']}-token forced answers "
              f"after `<answer>` at temperature {st['answer_temperature']}. Median of {s['repeats']} interleaved "
              "rounds.", "",
              "| variant | seconds | contexts | samples | tokens generated |", "|---|---|---|---|---|"]
        for k, r in mc["summary"].items():
            L.append(f"| {k} | {_f(r['seconds'], 1)} | {r['contexts']} | {r['samples']} | {r['tokens']:.0f} |")
        L += ["", "| backend | reuse | no reuse | speedup (no reuse s / reuse s) | target | met? |",
              "|---|---|---|---|---|---|"]
        for r in mc["ratios"]:
            L.append(f"| {r['backend']} | {r['reuse']} | {r['baseline']} | **{r['speedup']:.2f}x** | "
                     f">= {r['target']:.0f}x | {_met(r['met'])} |")
    tr = result.get("train")
    if tr:
        st = tr["settings"]
        L += ["", "## 3. Train-step ratio `obj2_mc_progress` / `outcome_grpo`", "",
              f"`metarl-train model=smollm2`, {st['steps']} steps per run, median step time of steps 2..{st['steps']} "
              f"(TRL's `step_time`); batch {st['batch']} completions in groups of {st['group']}, cap C={st['cap']}, "
              f"seed 0, the same data; `rollout=single` (TRL generates: transformers `generate`, or TRL's colocated "
              f"vLLM engine with `generation.backend=vllm`); `segmenter=paragraphs`, at most "
              f"{st['max_episodes_per_trace']} episodes per trace; Monte Carlo m={st['m']} through the run's backend. "
              "Each run in its own process, back to back. Per-step phases (median of steps 2..N): TRL's generation "
              "(`_generate`) and the reward computation (`_calculate_rewards`, where the Monte Carlo branches are "
              "sampled).", "",
              "| backend | recipe | step s (median) | step times | generation s | rewards s | episodes / trace "
              "| tokens (mean) |", "|---|---|---|---|---|---|---|---|"]
        for k, r in tr["runs"].items():
            b, rec = k.split("/")
            L.append(f"| {b} | {rec} | {_f(r['step_seconds'], 1)} | {', '.join(f'{x:.1f}' for x in r['step_times'])} "
                     f"| {_f(r['generate_median'], 1)} | {_f(r['rewards_median'], 1)} | "
                     f"{_f(r['episodes_per_trace'])} | {_f(r['tokens_mean'], 1)} |")
        L += ["", "| backend | MC step / outcome step | target | met? |", "|---|---|---|---|"]
        for r in tr["ratios"]:
            L.append(f"| {r['backend']} | **{r['ratio']:.2f}x** | "
                     f"{'<= %.1fx' % r['target'] if r['target'] else '- (target is for vLLM)'} | {_met(r['met'])} |")
    L += ["", "## Targets", ""]
    for line in result.get("verdicts", []):
        L.append(f"- {line}")
    L += ["", "## What limited the measurements", ""] + [f"- {x}" for x in result.get("limits", [])]
    return "\n".join(L) + "\n"


def verdicts(result: dict[str, Any]) -> list[str]:
    out = []
    for r in (result.get("mc") or {}).get("ratios", []):
        out.append(f"prefix reuse >= {r['target']:.0f}x faster than no reuse, {r['backend']} ({r['reuse']}): "
                   f"{r['speedup']:.2f}x, {'met' if r['met'] else 'NOT met'}")
    for r in (result.get("train") or {}).get("ratios", []):
        if r["target"] is not None:
            why = ""
            if not r["met"]:
                run = result["train"]["runs"]
                o, m = run[f"{r['backend']}/outcome_grpo"], run[f"{r['backend']}/obj2_mc_progress"]
                if m["rewards_median"] is not None and o["rewards_median"] is not None:
                    why = (f" (measured: the reward computation with the Monte Carlo branches takes "
                           f"{m['rewards_median']:.1f} s of the MC step's {m['step_seconds']:.1f} s, against "
                           f"{o['rewards_median']:.1f} s in the outcome step; generation {m['generate_median']:.1f} s "
                           f"vs {o['generate_median']:.1f} s)")
            out.append(f"MC progress step <= {r['target']:.1f}x an outcome step on {r['backend']}: {r['ratio']:.2f}x, "
                       f"{'met' if r['met'] else 'NOT met'}{why}")
        else:
            out.append(f"MC progress step / outcome step on {r['backend']} (no target): {r['ratio']:.2f}x")
    for part, why in result.get("skipped", {}).items():
        out.append(f"{part}: not measured ({why})")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="output directory (bench_engine.json, bench_engine.csv, train/ runs)")
    ap.add_argument("--quick", action="store_true", help="smoke sizes (numbers meaningless)")
    ap.add_argument("--backends", default="transformers,vllm", help="comma-separated (default transformers,vllm)")
    ap.add_argument("--parts", default="rollout,mc,train", help="comma-separated: rollout,mc,train (mc needs rollout)")
    ap.add_argument("--page", help="write the results page here (e.g. docs/results_engine.md)")
    ap.add_argument("--page-from", help="only regenerate --page from this bench_engine.json")
    ap.add_argument("--limit", action="append", default=[], help="a line for the page's 'what limited' section")
    for f in ("prompts", "cap", "max_episodes", "repeats", "train_cap", "train_steps", "train_batch", "threads"):
        ap.add_argument(f"--{f.replace('_', '-')}", type=int, default=None)
    ap.add_argument("--train-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global T0
    T0 = time.perf_counter()
    if args.train_child:
        with contextlib.redirect_stdout(sys.stderr):
            res = train_child(json.loads(args.train_child))
        print(CHILD_MARK + json.dumps(res), flush=True)
        return res
    if args.page_from:
        result = json.loads(Path(args.page_from).read_text())
        if args.limit:
            result["limits"] = result.get("limits", []) + args.limit
        Path(args.page or ROOT / "docs" / "results_engine.md").write_text(page(result))
        return result
    if not args.out:
        ap.error("--out is required")
    s = QUICK if args.quick else Settings()
    s = replace(s, **{f: getattr(args, f) for f in ("prompts", "cap", "max_episodes", "repeats", "train_cap",
                                                     "train_steps", "train_batch", "threads")
                      if getattr(args, f) is not None})
    # before torch loads: OpenMP threads for this process and the training children; vLLM's CPU worker unbound
    # (it would pin its threads to cores that other jobs on a shared machine also use)
    os.environ.setdefault("OMP_NUM_THREADS", str(s.threads))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    skip = {}
    if "vllm" in backends and (why := vllm_reason()):
        skip["vllm"] = why
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python bench/bench_engine.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result: dict[str, Any] = {"command": cmd, "quick": args.quick, "settings": asdict(s), "backends": backends,
                              "machine": machine(s), "load_start": load(),
                              "skipped": dict(skip)}
    say(f"settings {asdict(s)}; backends {backends}; skipped {skip or 'nothing'}; load {result['load_start']}")
    if "rollout" in parts or "mc" in parts:
        result.update(parts_rollout_mc(s, backends, skip))
    if "train" in parts:
        result["train"] = part_train(s, backends, skip, out)
    result["load_end"] = load()
    result["wall_seconds"] = time.perf_counter() - T0
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    result["verdicts"] = verdicts(result)
    result["limits"] = args.limit
    (out / "bench_engine.json").write_text(json.dumps(result, indent=2) + "\n")
    write_csv(result, out / "bench_engine.csv")
    if args.page:
        Path(args.page).write_text(page(result))
    for line in result["verdicts"]:
        say(line)
    say(f"wrote {out / 'bench_engine.json'}, {out / 'bench_engine.csv'}" + (f", {args.page}" if args.page else ""))
    return result


if __name__ == "__main__":
    main()
