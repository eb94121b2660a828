"""Held-out report of the SmolLM2 reasoner (``model=smollm2-reasoner``): format, accuracy, forced answers, J curves.

Plain ``transformers`` generation (``model.generate``), independent of metarl's generation engine:

1. ``--samples`` completions per held-out subset-sum question at ``--temperature`` (default 0.7), up to
   ``--max-new-tokens``: (a) the share that follows the R1 format (``<think>`` … ``</think>`` … ``\\boxed{}``
   with an expression), (b) pass@1 (the last ``\\boxed{}`` after ``</think>`` graded by the task's
   verifier), completion lengths, the share cut by the length cap, MRT episodes per trace, the share of the
   model's stated sums that are right and of its verdicts that follow from them.
2. MRT's meta-prover on the model's own traces: the thinking is cut into episodes by
   :class:`~metarl.segmenters.MRTSegmenter` (defaults); the empty prefix and every intermediate episode
   boundary get :data:`~metarl.prover.R1_TERMINATION_SUFFIX`, the full thought gets ``"\\n</think>"`` (the
   model then answers as it would have). ``--m`` forced answers per prefix, at most ``--forced-tokens``
   tokens: (c) the share of forced answers after the suffix that reach a closed ``\\boxed{}``, their token
   lengths; (d) J per prefix (share of correct forced answers), mean ``|J_last - J_init|`` (full thought vs
   empty prefix), the share of traces whose J is not constant, mean J by prefix position.
3. The token lengths of the synthetic forced answers the reasoner was trained on, and its build time
   (``metrics.json``: wall time and CPU time of the build).

The prompt of each context is prefilled once and its cache shared by the ``m`` samples (``--no-share`` to
prefill every sample; the tests check both give the same greedy answers).

    python bench/reasoner_report.py --json runs/reasoner_report.json     # cached reasoner (built if missing)
    python bench/reasoner_report.py --set n_examples=320 --questions 24 --samples 2

Timings on a shared CPU are contended: the JSON records the load average next to them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metarl.models.reasoner import chat_prompt, load_reasoner, make_recipe, reasoner_path, sft_examples  # noqa: E402
from metarl.prover import R1_TERMINATION_SUFFIX, extract_boxed  # noqa: E402
from metarl.segmenters import MRTSegmenter, char_to_token_boundaries, segment  # noqa: E402
from metarl.tasks.subset_sum import parse_expression  # noqa: E402
from metarl.tasks.subset_sum_r1 import THINK_END, follows_r1_format  # noqa: E402

FULL_THOUGHT_SUFFIX = "\n" + THINK_END


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids, mask


def _strip(row: list[int], eos: int, pad: int) -> list[int]:
    """Generated ids up to and including the first EOS (pads dropped)."""
    if eos in row:
        return row[: row.index(eos) + 1]
    return [t for t in row if t != pad]


@torch.no_grad()
def generate(model, tok, contexts: list[list[int]], n: int, max_new_tokens: int, temperature: float,
             share_prefix: bool = True, do_sample: bool = True) -> list[list[list[int]]]:
    """``n`` continuations (ids, EOS included when emitted) per context, with ``model.generate``.

    With ``share_prefix`` every context but its last token is prefilled once and its KV cache repeated for
    the ``n`` samples; generate then starts from the last token (same distribution, ``n``-fold less prefill).
    """
    pad, eos = tok.pad_token_id, tok.eos_token_id
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, use_cache=True)
    kw.update(dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if do_sample else dict(do_sample=False))
    ids, mask = _left_pad(contexts, pad)
    if share_prefix and n > 1 and ids.shape[1] > 1:
        from transformers import DynamicCache

        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], past_key_values=cache,
              use_cache=True)
        cache.batch_repeat_interleave(n)
        full_ids, full_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        out = model.generate(input_ids=full_ids, attention_mask=full_mask, past_key_values=cache, **kw)
    else:
        out = model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n, **kw)
    rows = [_strip(r, eos, pad) for r in out[:, ids.shape[1]:].tolist()]
    return [rows[i * n:(i + 1) * n] for i in range(len(contexts))]


def batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def thought_and_episodes(tok, text: str, ids: list[int]) -> tuple[list[int], list[int]] | None:
    """For a completion that closes its thought: (ids of the thought without the newline before
    ``</think>``, token offsets of its intermediate MRT episode starts). None when there is no ``</think>``.

    The whole completion is segmented (MRT's defaults) and only episode starts inside the thought are kept:
    the answer after ``</think>`` is never an episode."""
    if THINK_END not in text:
        return None
    end = len(text[: text.index(THINK_END)].rstrip("\n"))
    eps = segment(MRTSegmenter(), text, token_ids=ids, tokenizer=tok)
    starts = [e.token_start for e in eps[1:] if e.start < end]
    (cut,) = char_to_token_boundaries(text, [end], ids, tok)
    return ids[:cut], starts


def grade(task, problem: dict, text: str) -> bool:
    return task.verify(extract_boxed(text), problem["answer"], problem["prompt"])


def check_stats(text: str, numbers: list[int], target: int) -> tuple[int, int, int, int]:
    """(stated sums that are right, stated sums, verdicts that follow from the stated sum, verdicts) of a
    thinking in the reasoner's style ("a+b=s." paragraphs, "s is the target" / "s is not t")."""
    import re

    right = total = v_ok = v_total = 0
    for m in re.finditer(r"(?:^|\n\n)(\d+(?:[+\-]\d+)*)=(-?\d+)\.", text):
        terms = parse_expression(m.group(1))
        if terms is not None:
            total += 1
            right += int(sum(terms) == int(m.group(2)))
    for m in re.finditer(r"(-?\d+) is (not \d+|the target), so", text):
        v_total += 1
        v_ok += int((int(m.group(1)) == target) == (m.group(2) == "the target"))
    return right, total, v_ok, v_total


def quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {"mean": statistics.fmean(s), "p50": s[len(s) // 2], "p90": s[min(len(s) - 1, int(0.9 * len(s)))],
            "max": s[-1], "n": len(s)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", help="a saved reasoner directory (default: the cached reasoner, built if missing)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="reasoner recipe overrides")
    ap.add_argument("--questions", type=int, default=48, help="held-out questions")
    ap.add_argument("--samples", type=int, default=4, help="completions per question")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-new-tokens", type=int, default=400)
    ap.add_argument("--m", type=int, default=8, help="forced answers per prefix")
    ap.add_argument("--forced-tokens", type=int, default=48, help="forced-answer length bound")
    ap.add_argument("--forced-traces", type=int, default=64, help="traces whose prefixes are forced")
    ap.add_argument("--batch-size", type=int, default=32, help="contexts per generate call")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="weights while generating: bfloat16 decodes ~6x faster than float32 on this project's "
                         "AMX CPUs (bf16 autocast does not help: it re-casts every weight at every step)")
    ap.add_argument("--no-share", action="store_true", help="prefill every forced sample separately")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v) if v[:1] in "-0123456789.tf[{" else v
    recipe = make_recipe(**overrides)
    path = Path(args.path) if args.path else reasoner_path(recipe=recipe)
    model, tok = load_reasoner(path)
    model = model.to(getattr(torch, args.dtype))
    build = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
    saved = json.loads((path / "recipe.json").read_text()) if (path / "recipe.json").is_file() else {}
    if saved:
        recipe = make_recipe(**{k: v for k, v in saved.items() if k != "version"})
    task = recipe.task()
    problems = task.generate("test", args.questions, seed=0, allow_fewer=True)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids = [enc(chat_prompt(tok, p["prompt"], recipe.system_prompt)) for p in problems]

    # ---- 1. sampled completions
    from tqdm import tqdm

    t0 = time.perf_counter()
    samples: list[list[list[int]]] = []
    for chunk in tqdm(list(batched(prompt_ids, max(1, args.batch_size // args.samples))), desc="completions"):
        samples += generate(model, tok, chunk, args.samples, args.max_new_tokens, args.temperature,
                            share_prefix=False)
    gen_s = time.perf_counter() - t0
    traces = []
    for p, pids, outs in zip(problems, prompt_ids, samples):
        for ids in outs:
            text = tok.decode(ids, skip_special_tokens=True)
            traces.append({"problem": p, "prompt_ids": pids, "ids": ids, "text": text,
                           "format": follows_r1_format(text), "correct": False, "truncated": tok.eos_token_id not in ids})
            if THINK_END in text:
                traces[-1]["correct"] = grade(task, p, text.split(THINK_END, 1)[1])
    per_q = [statistics.fmean(t["correct"] for t in traces[i * args.samples:(i + 1) * args.samples])
             for i in range(len(problems))]
    sums = [check_stats(t["text"].split(THINK_END)[0], t["problem"]["numbers"], t["problem"]["target"]) for t in traces]
    episodes = [len(segment(MRTSegmenter(), t["text"].split(THINK_END)[0])) for t in traces]

    # ---- 2. forced answers on the model's own traces
    closed = [t for t in traces if THINK_END in t["text"]][: args.forced_traces]
    suffix_ids, full_ids = enc(R1_TERMINATION_SUFFIX), enc(FULL_THOUGHT_SUFFIX)
    jobs: list[tuple[int, int, list[int], bool]] = []  # (trace, position, context, intermediate)
    for ti, t in enumerate(closed):
        thought_ids, starts = thought_and_episodes(tok, t["text"], t["ids"])
        t["n_prefixes"] = 2 + len(starts)
        jobs.append((ti, 0, t["prompt_ids"] + suffix_ids, True))
        for j, s in enumerate(starts, start=1):
            jobs.append((ti, j, t["prompt_ids"] + t["ids"][:s] + suffix_ids, True))
        jobs.append((ti, len(starts) + 1, t["prompt_ids"] + thought_ids + full_ids, False))
    t1 = time.perf_counter()
    answers: list[list[list[int]]] = []
    for chunk in tqdm(list(batched(jobs, max(1, args.batch_size * 2 // args.m))), desc="forced answers"):
        answers += generate(model, tok, [c for _, _, c, _ in chunk], args.m, args.forced_tokens,
                            args.temperature, share_prefix=not args.no_share)
    forced_s = time.perf_counter() - t1
    J: dict[int, dict[int, float]] = {}
    boxed_hits = boxed_total = 0
    lengths: list[int] = []
    for (ti, j, _, intermediate), outs in zip(jobs, answers):
        t = closed[ti]
        texts = [tok.decode(o, skip_special_tokens=True) for o in outs]
        J.setdefault(ti, {})[j] = statistics.fmean(grade(task, t["problem"], x) for x in texts)
        if intermediate:
            for o, x in zip(outs, texts):
                boxed_total += 1
                boxed_hits += extract_boxed(x) is not None
                lengths.append(len(o))
    curves = [[J[ti][j] for j in sorted(J[ti])] for ti in sorted(J)]
    by_pos: dict[str, list[float]] = {}
    for c in curves:
        for j, v in enumerate(c[:-1]):
            by_pos.setdefault(str(j), []).append(v)
        by_pos.setdefault("full", []).append(c[-1])

    # ---- 3. the synthetic forced answers the reasoner was trained on
    train_forced = [len(enc(e["completion"])) + 1 for e in sft_examples(recipe) if e["suffix"]]

    def rate(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else float("nan")

    n_tok = [len(t["ids"]) for t in traces]
    report = {
        "policy": str(path),
        "recipe": {k: v for k, v in saved.items()},
        "build": {k: build.get(k) for k in ("wall_time_s", "sft_time_s", "cpu_time_s", "load_average", "steps",
                                             "num_examples", "num_tokens", "threads")},
        "questions": len(problems), "samples_per_question": args.samples, "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "a_format_rate": rate(t["format"] for t in traces),
        "think_closed_rate": rate(THINK_END in t["text"] for t in traces),
        "b_pass@1": statistics.fmean(per_q),
        "b_pass@1_se": statistics.stdev(per_q) / len(per_q) ** 0.5 if len(per_q) > 1 else float("nan"),
        "completion_tokens": quantiles(n_tok),
        "truncated_rate": rate(t["truncated"] for t in traces),
        "episodes_per_trace": quantiles(episodes),
        "stated_sum_accuracy": rate([]) if not sum(s[1] for s in sums) else sum(s[0] for s in sums) / sum(s[1] for s in sums),
        "verdict_consistency": sum(s[2] for s in sums) / max(1, sum(s[3] for s in sums)),
        "forced": {
            "traces": len(curves), "prefixes": len(jobs), "m": args.m, "max_tokens": args.forced_tokens,
            "c_boxed_rate_after_suffix": boxed_hits / max(1, boxed_total),
            "answer_tokens_after_suffix": quantiles(lengths),
            "d_mean_abs_J_last_minus_J_init": statistics.fmean(abs(c[-1] - c[0]) for c in curves) if curves else None,
            "d_nonconstant_J_rate": rate(max(c) > min(c) for c in curves),
            "mean_J_init": statistics.fmean(c[0] for c in curves) if curves else None,
            "mean_J_last": statistics.fmean(c[-1] for c in curves) if curves else None,
            "mean_J_by_position": {k: statistics.fmean(v) for k, v in by_pos.items()},
            "prefixes_by_position": {k: len(v) for k, v in by_pos.items()},
            "example_curves": curves[:8],
        },
        "train_forced_answer_tokens": quantiles(train_forced),
        "generation_s": gen_s, "forced_s": forced_s,
        "load_average": os.getloadavg(), "threads": args.threads, "generation_dtype": args.dtype,
        "example": traces[0]["text"] if traces else None,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "example"}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
