"""Benchmark: transformers ``generate`` against the vLLM backend on SmolLM2-135M-Instruct (CPU or GPU).

Run in the vLLM environment (``make test-vllm`` builds it)::

    .venv-vllm/bin/python bench/bench_vllm.py                  # the sizes below, float32 on both sides
    .venv-vllm/bin/python bench/bench_vllm.py --vllm-dtype bfloat16 --out runs/bench_vllm.json

Two workloads, each timed once after a warm-up (the machine may be shared: read ratios, not absolutes):

* ``plain``: ``--batch`` chat prompts, one sampled continuation each of up to ``--plain-tokens`` tokens;
  transformers: one left-padded ``generate`` call; vLLM: one ``generate`` call of ``--batch`` requests.
* ``branches`` (Monte Carlo progress): ``--traces`` traces of ``--trace-tokens`` sampled tokens, cut at
  ``--prefixes`` evenly spaced boundaries (the last one the whole trace), each prefix + a termination suffix
  answered ``--m`` times (``--answer-tokens`` tokens, T=0.7).
  transformers: ``generate(num_return_sequences=m)`` over ``--hf-batch`` contexts a call (every sample row
  prefilled on its own, no reuse); vLLM: one ``branch`` call (one request per prefix, ``n=m``) on an engine
  without prefix caching, with prefix caching from a cold cache, with the traces already cached (as after the
  engine generated them, the Monte Carlo case in training), and once more on the same contexts (all cached).

Tokens/s counts generated tokens (up to and including EOS).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metarl.engine.base import Prefix, Request, Sampling  # noqa: E402

SUFFIX = "\n\nTime is up. Given the time I've spent, my final answer is: "


def chat_prompts(tok, n: int) -> list[list[int]]:
    qs = [f"What is {a} * {b} + {a + b}? Think step by step, then give the answer." for a, b in
          ((7 + 3 * i, 11 + 5 * i) for i in range(n))]
    return [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False) for q in qs]


def hf_generate(model, tok, contexts: list[list[int]], max_new: int, eos: list[int], temperature: float,
                num_return: int = 1) -> list[list[int]]:
    width = max(len(c) for c in contexts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, c in enumerate(contexts):
        ids[i, width - len(c):] = torch.tensor(c)
        att[i, width - len(c):] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=max_new, do_sample=True,
                             temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=num_return,
                             eos_token_id=eos, pad_token_id=pad)
    res = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        res.append(row[:cut])
    return res


T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--plain-tokens", type=int, default=64)
    ap.add_argument("--traces", type=int, default=16)
    ap.add_argument("--trace-tokens", type=int, default=128)
    ap.add_argument("--prefixes", type=int, default=6)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--hf-batch", type=int, default=16, help="contexts per transformers generate call (x m rows)")
    ap.add_argument("--vllm-dtype", default="float32")
    ap.add_argument("--block-size", type=int, default=None,
                    help="vLLM KV block size (VLLMBackend.standalone uses 32 on CPU; vLLM alone 128)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for transformers (default: all)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="cold-cache branch runs (the fastest counts)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metarl.engine.vllm import VLLMBackend
    from metarl.models.smollm2 import smollm2_hf_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    d = smollm2_hf_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    eos = [tok.eos_token_id]
    res: dict = {"model": "SmolLM2-135M-Instruct", "device": "cuda" if torch.cuda.is_available() else "cpu",
                 "threads_before_vllm_start": torch.get_num_threads(), "load_average": os.getloadavg(),
                 "args": vars(args)}
    extra = {"block_size": args.block_size} if args.block_size else {}
    say("models loaded; starting vLLM")
    eng = VLLMBackend.standalone(d, dtype=args.vllm_dtype, max_model_len=2048, **extra)
    res["threads_after_vllm_start"] = torch.get_num_threads()  # vLLM sets (and then pins) torch's threads
    prompts = chat_prompts(tok, args.batch)
    sample = Sampling(temperature=1.0)

    # ---------------- (a) plain generation
    if not args.skip_plain:
        say("vLLM up")
        eng.generate([Request(tuple(p), 8) for p in prompts[:4]], sample, seed=0)  # warm-up
        out, t_v = timed(lambda: eng.generate([Request(tuple(p), args.plain_tokens) for p in prompts], sample, seed=1))
        n_v = sum(len(c[0]) for c in out)
        res["plain_vllm"] = {"tokens": n_v, "s": t_v, "tok_s": n_v / t_v}
        say(f"plain vLLM {t_v:.1f}s")
        if not args.skip_hf:
            hf_generate(model, tok, prompts[:4], 8, eos, 1.0)
            out, t_h = timed(lambda: hf_generate(model, tok, prompts, args.plain_tokens, eos, 1.0))
            n_h = sum(len(c) for c in out)
            res["plain_hf"] = {"tokens": n_h, "s": t_h, "tok_s": n_h / t_h}
        print(json.dumps({k: v for k, v in res.items() if k.startswith("plain")}), flush=True)

    # ---------------- (b) branches at episode boundaries
    from vllm import SamplingParams

    tprompts = chat_prompts(tok, args.traces)
    ro = eng.llm.generate([{"prompt_token_ids": p} for p in tprompts],
                          SamplingParams(max_tokens=args.trace_tokens, min_tokens=args.trace_tokens, temperature=1.0,
                                         seed=3), use_tqdm=False)
    traces = [p + list(r.outputs[0].token_ids) for p, r in zip(tprompts, ro, strict=True)]
    say("traces generated")
    suffix = tuple(tok(SUFFIX, add_special_tokens=False)["input_ids"])
    step = args.trace_tokens / args.prefixes
    prefixes = [[Prefix(len(p) + round(step * (k + 1)), suffix) for k in range(args.prefixes)] for p in tprompts]
    n_ctx = sum(len(ps) for ps in prefixes)
    ctx_tokens = sum(p.length + len(p.suffix) for ps in prefixes for p in ps)
    res["branches_setup"] = {"contexts": n_ctx, "context_tokens": ctx_tokens, "samples": n_ctx * args.m}
    mc = Sampling(temperature=0.7)

    def run_branch(backend, seed):
        out = backend.branch(traces, prefixes, args.m, args.answer_tokens, (), mc, seed=seed)
        return sum(len(c) for per in out for cs in per for c in cs)

    # warm-up of the n=m path on other contexts (the plain prompts), so the traces stay as they are in the cache
    eng.branch(prompts[:4], [[Prefix(len(p))] for p in prompts[:4]], args.m, 4, (), mc, seed=0)
    out, t_warm = timed(lambda: run_branch(eng, 5))  # traces in the cache: the engine just generated them
    res["branches_vllm_cached"] = {"tokens": out, "s": t_warm, "tok_s": out / t_warm}
    out, t_again = timed(lambda: run_branch(eng, 8))  # the same contexts again: prefixes + suffix cached too
    res["branches_vllm_contexts_cached"] = {"tokens": out, "s": t_again, "tok_s": out / t_again}
    t_cold, out = float("inf"), 0
    for rep in range(args.repeats):  # prefix caching on, nothing cached at the start
        eng.llm.reset_prefix_cache()
        o, t = timed(lambda: run_branch(eng, 6 + 10 * rep))
        if t < t_cold:
            t_cold, out = t, o
    res["branches_vllm_prefix_cache"] = {"tokens": out, "s": t_cold, "tok_s": out / t_cold}
    say(f"branches: traces cached {t_warm:.1f}s, contexts cached {t_again:.1f}s, cold cache {t_cold:.1f}s")
    print(json.dumps({k: v for k, v in res.items() if k.startswith("branches")}), flush=True)
    eng.close()
    nocache = VLLMBackend.standalone(d, dtype=args.vllm_dtype, max_model_len=2048, enable_prefix_caching=False,
                                     **extra)
    nocache.generate([Request(tuple(p), 8) for p in prompts[:4]], sample, seed=0)
    nocache.branch(prompts[:4], [[Prefix(len(p))] for p in prompts[:4]], args.m, 4, (), mc, seed=0)
    out, t_nc = timed(lambda: run_branch(nocache, 7))
    res["branches_vllm_no_prefix_cache"] = {"tokens": out, "s": t_nc, "tok_s": out / t_nc}
    say(f"branches: no prefix caching {t_nc:.1f}s")
    nocache.close()
    print(json.dumps(res["branches_vllm_no_prefix_cache"]), flush=True)
    if not args.skip_hf:
        contexts = [tr[:p.length] + list(p.suffix) for tr, ps in zip(traces, prefixes, strict=True) for p in ps]

        def hf_branches():
            n = 0
            for b in range(0, len(contexts), args.hf_batch):
                n += sum(len(c) for c in hf_generate(model, tok, contexts[b:b + args.hf_batch], args.answer_tokens,
                                                     eos, 0.7, num_return=args.m))
            return n

        out, t_hf = timed(hf_branches)
        res["branches_hf_no_reuse"] = {"tokens": out, "s": t_hf, "tok_s": out / t_hf}
        say(f"branches: transformers {t_hf:.1f}s")
    # ---------------- ratios
    r = {}
    if "plain_hf" in res and "plain_vllm" in res:
        r["plain vllm/hf tok/s"] = res["plain_vllm"]["tok_s"] / res["plain_hf"]["tok_s"]
    for k in ("branches_vllm_no_prefix_cache", "branches_vllm_prefix_cache", "branches_vllm_cached",
              "branches_vllm_contexts_cached"):
        if "branches_hf_no_reuse" in res:
            r[f"{k} / hf tok/s"] = res[k]["tok_s"] / res["branches_hf_no_reuse"]["tok_s"]
    off = res["branches_vllm_no_prefix_cache"]["tok_s"]
    r["prefix cache cold / off"] = res["branches_vllm_prefix_cache"]["tok_s"] / off
    r["traces cached / off"] = res["branches_vllm_cached"]["tok_s"] / res["branches_vllm_no_prefix_cache"]["tok_s"]
    r["contexts cached / off"] = (res["branches_vllm_contexts_cached"]["tok_s"]
                                  / res["branches_vllm_no_prefix_cache"]["tok_s"])
    res["ratios"] = r
    res["load_average_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
