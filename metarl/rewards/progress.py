"""Obj-2 progress rewards: ΔI_j, how much episode j raised the meta-prover's chance of being right.

Two estimators of the information gain of each episode of a trace (docs/method.md §2, §3):

* `MCProgress` (MRT): Ĵ_j is the fraction of ``m`` sampled forced answers of μ after the prefix
  z_{0:j} that the grader accepts; ΔI_j = Ĵ_j − Ĵ_{j−1}, with Ĵ_{-1} the forced answer after the
  prompt alone. Unbiased, noisy (standard error sqrt(J(1−J)/m)), costs ``m`` short generations per
  prefix.
* `LikelihoodProgress`: L_j = log p_θ(a* | x, z_{0:j}, suffix), the teacher-forced log-probability of
  the gold answer after the prefix and the termination suffix; ΔI_j = L_j − L_{j−1} (log scale) or
  exp(L_j) − exp(L_{j−1}) (probability scale). No sampling: in ``one_pass`` mode every prefix of a
  trace is scored in one forward pass (`pack_prefix_blocks`: shared context, one suffix+answer block
  per prefix, block attention mask); ``cached`` runs the context once with plain causal attention
  and a KV cache, then all blocks in one call against the cache (less mask memory on long traces);
  ``naive`` runs one sequence per prefix.

Prefix j = −1 is the prompt alone, prefix j ≥ 0 ends at the last token of episode j. Episode token
spans come from ``episode.token_start/token_end`` (indices into ``trace.completion_ids``); traces
without ids are tokenized here (prompt with special tokens unless it already starts with BOS,
completion without), and the token spans are derived from the episodes' character spans.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metarl.credit import stop_token_ids, trailing_stop_tokens
from metarl.engine.hf import CACHE_KEY, accepts_logits_to_keep, base_model, inference_mode, model_device, pad_token_id
from metarl.prover import Extractor, ProverConfig, as_prover, resolve_extractor
from metarl.rewards import reward
from metarl.types import Trace, check_partition

Grader = Callable[[str, str, str], bool]
"""``grader(prediction, answer, prompt) -> bool``: a safe, time-bounded correctness check."""


# --------------------------------------------------------------------------- traces -> prefix token ends

@dataclass
class TraceTokens:
    """A trace as token ids: prompt ids, completion ids and ``ends[j]`` = token end of episode j."""

    prompt_ids: list[int]
    completion_ids: list[int]
    ends: list[int]

    def prefix_lengths(self) -> list[int]:
        """Completion tokens in prefix j for j = −1 .. n−1 (starts with 0)."""
        return [0, *self.ends]

    def context(self, k: int) -> list[int]:
        """Prompt ids + the first ``k`` completion ids."""
        return self.prompt_ids + self.completion_ids[:k]


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def trace_tokens(trace: Trace, tokenizer: Any) -> TraceTokens:
    """Token ids and episode token ends of ``trace`` (validated; tokenized here when missing)."""
    if not trace.episodes:
        raise ValueError("trace has no episodes: segment it first (a completion has at least one episode)")
    if trace.prompt_ids is not None:
        prompt_ids = list(trace.prompt_ids)
    else:
        bos = getattr(tokenizer, "bos_token", None)
        prompt_ids = _encode(tokenizer, trace.prompt, add_special_tokens=not (bos and trace.prompt.startswith(bos)))
    if all(e.token_start is not None and e.token_end is not None for e in trace.episodes):
        if trace.completion_ids is None:
            completion_ids = _encode(tokenizer, trace.completion, add_special_tokens=False)
        else:
            completion_ids = list(trace.completion_ids)
        thinking = len(completion_ids) if trace.answer_token_start is None else trace.answer_token_start
        check_partition(trace.thinking, trace.episodes, thinking)
        ends = [int(e.token_end) for e in trace.episodes]  # type: ignore[arg-type]
        return TraceTokens(prompt_ids, completion_ids, _before_stop_tokens(ends, completion_ids, tokenizer))
    return TraceTokens(prompt_ids, *_token_ends_from_chars(trace, tokenizer))


def _before_stop_tokens(ends: list[int], completion_ids: Sequence[int], tokenizer: Any) -> list[int]:
    """The last prefix ends before trailing EOS / pad tokens: μ answers after the text, as it would at a
    cap, not after an end-of-sequence token (the trainer's stop step, ``metarl.credit.split_stop_tokens``).

    >>> class T: eos_token_id, pad_token_id = 2, 0
    >>> _before_stop_tokens([3, 7], [5, 6, 7, 8, 9, 2, 0], T())
    [3, 5]
    """
    n = len(completion_ids)
    if not ends or ends[-1] != n:
        return ends
    k = trailing_stop_tokens(completion_ids, stop_token_ids(tokenizer))
    floor = ends[-2] if len(ends) > 1 else 0
    return [*ends[:-1], max(floor, n - k)]


def _token_ends_from_chars(trace: Trace, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Completion ids and episode token ends from character spans (needs a fast tokenizer's offsets); with
    an answer region the last episode ends at the first token that starts in it."""
    check_partition(trace.thinking, trace.episodes)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("episodes have no token spans and the tokenizer gives no offsets: segment the trace with "
                         "the tokenizer (token_start/token_end) or use a fast tokenizer")
    enc = tokenizer(trace.completion, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    if trace.completion_ids is not None and list(trace.completion_ids) != ids:
        raise ValueError("episodes have no token spans and trace.completion_ids differ from tokenizing the completion "
                         "text: segment the trace with the tokenizer so token_start/token_end are set")
    starts = [s for s, _ in offsets]
    last = len(ids) if trace.answer_start is None else sum(1 for s in starts if s < trace.answer_start)
    ends = [sum(1 for s in starts if s < e.end) for e in trace.episodes[:-1]] + [last]
    return ids, ends


def _answer_text(trace: Trace, template: str) -> str:
    if trace.answer is None:
        raise ValueError("trace.answer is None: progress estimators need the gold answer a*")
    try:
        return template.format(answer=trace.answer)
    except (KeyError, IndexError) as e:
        raise ValueError(f"answer_template {template!r} may only use the field {{answer}} (got {e})") from None


def _differences(values: Sequence[float]) -> list[float]:
    return [values[i + 1] - values[i] for i in range(len(values) - 1)]


# --------------------------------------------------------------------------- Monte Carlo progress (MRT)

class MCProgress:
    """Monte Carlo progress: ΔI_j = Ĵ_j − Ĵ_{j−1}, Ĵ from ``m`` forced answers of μ per prefix.

    The meta-prover μ (suffix, forced-answer length, stop strings, temperature) is the engine's
    (``engine.prover``: the run's one ``prover`` configuration).

    Args:
        m: forced answers sampled per prefix (MRT used m = 8).
        extract: maps a forced answer text to the prediction given to the grader: "auto", "raw",
            "boxed" or a callable ``text -> str | None`` applied to the forced text; "context": the
            ``extract_answer`` passed to `score_batch` (the scorer's, made for whole completions) applied
            to suffix + forced text, i.e. the answer as it would read in a completion
            (``"<answer>" + "42</answer>"``); "full" (MRT's ``grader.py`` use in its regret notebook): the
            scorer's extractor on prompt + prefix + suffix + forced text, so an answer the prefix already
            stated (its last ``\\boxed{}``) counts when the forced text states none.
        seed: makes the draw reproducible: call ``k`` of `score_batch` uses seed ``seed + k``; without
            it the backend's own randomness is used.

    The forced answers come from the generation engine (:meth:`metarl.engine.Engine.branch`): every
    prefix of a trace is a branch point of one sequence, so a backend shares the trace's prefill (the
    transformers backend reuses one KV cache, vLLM its prefix cache); contexts shared by several traces
    (the prompt of a GRPO group) are sampled once.

    Prefixes: j = −1 (the prompt alone) and the end of every episode, all followed by ``prover.suffix``,
    except the full thought of an R1-style trace that closed it (``prover.think_end``), which is followed
    by ``think_end`` itself so the model answers as it would have (MRT's ``pass_at_k_given_prefix.py``).

    Side outputs: ``episode.info["J"]``, ``episode.info["J_se"]`` (sqrt(J(1−J)/m)) after episode j, and
    for MRT's regret axis ``info["context_tokens"]`` (prompt + prefix + suffix tokens) and
    ``info["forced_tokens"]`` (tokens of the m forced answers, summed), ``info["final"]``;
    ``trace.meta["J_init"]`` / ``["J_init_se"]`` / ``["J_init_info"]`` for the empty prefix.
    """

    name = "mc_progress"
    level = "episode"
    needs_engine = True
    #: Writes Ĵ where the termination baseline and the calibration watch read it.
    records_J = True

    def __init__(self, m: int = 8, extract: str | Extractor = "auto", seed: int | None = None):
        if isinstance(m, bool) or int(m) < 1:
            raise ValueError(f"m={m}: the meta-prover needs at least one sample per prefix (MRT used m=8)")
        self.m = int(m)
        self.extract_mode = extract if extract in ("context", "full") else "answer"
        self.extract = None if self.extract_mode != "answer" else resolve_extractor(extract)
        self.seed = seed
        self._calls = 0

    def success_rates(self, traces: Sequence[Trace], engine: Any, grader: Grader,
                      extract_answer: Extractor | None = None) -> list[list[float]]:
        """Ĵ_j for j = −1 .. n−1 of every trace (and the side outputs on the records)."""
        if grader is None or not callable(grader):
            raise ValueError("MCProgress needs grader(prediction, answer, prompt) -> bool to grade forced answers")
        if engine is None:
            raise ValueError("MCProgress needs the generation engine (forced answers are sampled from the policy)")
        if self.extract is None and extract_answer is None:
            raise ValueError(f"MCProgress(extract={self.extract_mode!r}) needs the scorer's extract_answer; pass "
                             "extract_answer=... or choose extract='auto' / 'raw' / 'boxed' / a callable")
        prover = engine.prover
        tokenizer = engine.tokenizer
        tokens = [_with_index(i, trace_tokens, t, tokenizer) for i, t in enumerate(traces)]
        for i, t in enumerate(traces):
            _with_index(i, _answer_text, t, "{answer}")
        # branch points j = -1 .. n-1; the last is the full thought when the trace closed it (think_end)
        points = [[(k, prover.closes_thought(t.completion) and j == len(tt.ends) and t.answer_start is not None)
                   for j, k in enumerate(tt.prefix_lengths())] for t, tt in zip(traces, tokens)]
        owner: dict[tuple, tuple[int, int]] = {}  # (context, final) -> (trace, index) of the prefix sampled
        branch_points: list[list[tuple[int, bool]]] = [[] for _ in tokens]
        for t, (tt, pts) in enumerate(zip(tokens, points)):
            for k, final in pts:
                key = (tuple(tt.context(k)), final)
                if key not in owner:
                    owner[key] = (t, len(branch_points[t]))
                    branch_points[t].append((len(tt.prompt_ids) + k, final))
        seed = None if self.seed is None else self.seed + self._calls
        self._calls += 1
        drawn = engine.branch_answers([tt.context(len(tt.completion_ids)) for tt in tokens], branch_points, self.m,
                                      seed=seed)
        samples = {key: drawn[t][i] for key, (t, i) in owner.items()}
        suffix_tokens = {final: len(engine.encode(prover.suffix_for(final))) for final in (False, True)}
        verdicts: dict[tuple[str, str, str], bool] = {}

        def correct(text: str, trace: Trace, context: str, suffix: str) -> bool:
            if self.extract_mode == "context":
                pred = extract_answer(suffix + text)
            elif self.extract_mode == "full":  # MRT: the last answer in prompt + prefix + suffix + forced answer
                pred = extract_answer(trace.prompt + context + suffix + text)
            else:
                pred = self.extract(text)
            if pred is None:
                return False
            key = (pred, str(trace.answer), trace.prompt)
            if key not in verdicts:
                verdicts[key] = bool(grader(pred, str(trace.answer), trace.prompt))
            return verdicts[key]

        m = self.m
        rates: list[list[float]] = []
        for trace, tt, pts in zip(traces, tokens, points):
            char_ends = [0, *(e.end for e in trace.episodes)]
            js, info = [], []
            for (k, final), c in zip(pts, char_ends):
                answers = samples[(tuple(tt.context(k)), final)]
                suffix = prover.suffix_for(final)
                js.append(sum(correct(a, trace, trace.completion[:c], suffix) for a, _ in answers) / m)
                # MRT's regret axis: prompt + prefix + suffix tokens, plus the forced-answer tokens / 16
                info.append({"context_tokens": len(tt.prompt_ids) + k + suffix_tokens[final],
                             "forced_tokens": sum(n for _, n in answers), "final": final})
            ses = [math.sqrt(j * (1 - j) / m) for j in js]
            trace.meta["J_init"], trace.meta["J_init_se"] = js[0], ses[0]
            trace.meta["J_init_info"] = info[0]
            for ep, j, se, extra in zip(trace.episodes, js[1:], ses[1:], info[1:]):
                ep.info.update(J=j, J_se=se, **extra)
            rates.append(js)
        return rates

    def score_batch(self, traces: Sequence[Trace], engine: Any, grader: Grader,
                    extract_answer: Extractor | None = None) -> list[list[float]]:
        """ΔI_j = Ĵ_j − Ĵ_{j−1} for every episode of every trace."""
        return [_differences(js) for js in self.success_rates(traces, engine, grader, extract_answer)]


def _with_index(i: int, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueError as e:
        raise ValueError(f"trace {i}: {e}") from None


# --------------------------------------------------------------------------- likelihood progress

@dataclass
class PackedRow:
    """One packed sequence for `score_rows`: ids, position ids and per-position visibility.

    Position q sees keys k with ``lo[q] <= k < hi[q]`` (a span of the shared context) or
    ``start[q] <= k <= q`` (its own block, causally); the first ``context_len`` positions are plain
    causal. ``scores`` lists (score index, predictor positions, target ids).
    """

    ids: list[int] = field(default_factory=list)
    context_len: int = 0  # the leading plain-causal part (the shared context)
    positions: list[int] = field(default_factory=list)
    lo: list[int] = field(default_factory=list)
    hi: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    # (score index, predictor row indices, target ids): log p(target_i | row up to predictor_i)
    scores: list[tuple[int, list[int], list[int]]] = field(default_factory=list)

    def extend(self, ids: Sequence[int], first_position: int, lo: int, hi: int, start: int) -> None:
        self.ids.extend(ids)
        self.positions.extend(range(first_position, first_position + len(ids)))
        self.lo.extend([lo] * len(ids))
        self.hi.extend([hi] * len(ids))
        self.start.extend([start] * len(ids))


def pack_prefix_blocks(context: Sequence[int], prefix_lengths: Sequence[int], block: Sequence[int],
                       answer_len: int, score_ids: Sequence[int]) -> PackedRow:
    """Pack ``context`` then, for each prefix length P_j, one block (suffix + answer ids).

    Block j attends to the context tokens ``[0, P_j)`` and to itself causally; its position ids
    continue from P_j, so every block sees exactly what a plain forward of
    ``context[:P_j] + block`` would. The answer (the last ``answer_len`` ids of ``block``) is scored
    from the row index that predicts each of its tokens.
    """
    row = PackedRow(context_len=len(context))
    row.extend(context, 0, 0, 0, 0)  # plain causal
    s = len(block) - answer_len
    for score, p in zip(score_ids, prefix_lengths):
        b = len(row.ids)
        row.extend(block, p, 0, p, b)
        predictors = [b + s + i - 1 if s + i > 0 else p - 1 for i in range(answer_len)]
        if predictors[0] < 0:
            raise ValueError("an empty prompt, empty prefix and empty suffix leave nothing to predict the answer from")
        row.scores.append((score, predictors, list(block[s:])))
    return row


def _naive_row(context: Sequence[int], block: Sequence[int], answer_len: int, score: int) -> PackedRow:
    row = PackedRow(context_len=len(context) + len(block))
    row.extend(list(context) + list(block), 0, 0, 0, 0)
    first = len(row.ids) - answer_len
    if first == 0:
        raise ValueError("an empty prompt, empty prefix and empty suffix leave nothing to predict the answer from")
    row.scores.append((score, list(range(first - 1, len(row.ids) - 1)), list(block[-answer_len:])))
    return row


BLOCK_MASK_ATTENTION = ("eager", "sdpa", "flex_attention")
"""Attention implementations that take a custom float 4-D mask as-is (transformers' masking_utils)."""


@contextlib.contextmanager
def block_mask_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run with an attention implementation that accepts a custom 4-D mask.

    eager / sdpa / flex_attention are used as they are. Others (flash_attention_2/3, paged, kernels)
    ignore 4-D masks: the model is switched to sdpa for the duration when it supports
    ``set_attn_implementation``; otherwise a ``ValueError`` says to use ``mode="naive"``.
    """
    base = base_model(model)
    config = getattr(base, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    if impl is None or impl in BLOCK_MASK_ATTENTION:
        yield
        return
    setter = getattr(base, "set_attn_implementation", None)
    if not callable(setter):
        raise ValueError(f"one_pass / cached likelihood scoring needs a 4-D attention mask, which "
                         f"attn_implementation={impl!r} does not take; load the model with one of "
                         f"{BLOCK_MASK_ATTENTION} or use mode='naive'")
    setter("sdpa")
    try:
        yield
    finally:
        setter(impl)


def _check_sliding_window(model: torch.nn.Module, length: int) -> None:
    config = getattr(base_model(model), "config", None)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        sliding = "sliding_attention" in layer_types
    else:  # e.g. Mistral: a set sliding_window applies unless use_sliding_window says otherwise
        sliding = getattr(config, "use_sliding_window", True) is not False
    if window and sliding and length > window:
        raise ValueError(f"packed length {length} exceeds the model's sliding window {window}: the block mask would "
                         "ignore the window; set max_length <= sliding_window or use mode='naive'")


def _float_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _logits(model: torch.nn.Module, keep_ok: bool, keep: int, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """Logits of the last ``keep`` positions (all when the model takes no ``logits_to_keep``), and the cache."""
    out = model(**inputs, **({"logits_to_keep": keep} if keep_ok else {}))
    return out.logits, getattr(out, CACHE_KEY, None)


def score_rows(model: torch.nn.Module, rows: Sequence[PackedRow], num_scores: int, batch_size: int, pad_id: int,
               attention: str) -> torch.Tensor:
    """Sum of answer-token log-probs for every score in ``rows`` (float64, on CPU).

    Rows are sorted by length and batched ``batch_size`` at a time. ``attention``:

    * ``"causal"``: rows left-padded, 2-D padding mask, the model's plain causal attention;
    * ``"block"``: rows left-padded, one call with a float 4-D mask ``(B, 1, Q, Q)`` (0 visible,
      dtype-min hidden) carrying each row's block visibility;
    * ``"cached"``: two calls: each row's context (``row.context_len`` tokens, left-padded) with plain
      causal attention and a KV cache, then all blocks (right-padded) with a 4-D mask
      ``(B, 1, Q_blocks, Q_context + Q_blocks)`` against that cache.

    Only logits from the earliest predictor on are computed when the model takes ``logits_to_keep``.
    """
    device = model_device(model)
    keep_ok = accepts_logits_to_keep(model)
    dtype = _float_dtype(model)
    sums = torch.zeros(num_scores, dtype=torch.float64)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    for b0 in range(0, len(order), batch_size):
        batch = [rows[i] for i in order[b0:b0 + batch_size]]
        ctx_lens = [r.context_len if attention == "cached" else len(r.ids) for r in batch]
        q_ctx = max(ctx_lens)
        width = q_ctx + max(len(r.ids) - c for r, c in zip(batch, ctx_lens))
        if attention != "causal":
            _check_sliding_window(model, width)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        valid = torch.zeros((len(batch), width), dtype=torch.long)
        lo = torch.zeros((len(batch), width), dtype=torch.long)
        hi = torch.zeros((len(batch), width), dtype=torch.long)
        start = torch.arange(width).repeat(len(batch), 1)  # padding attends to itself only
        entries: list[tuple[int, int, int, int]] = []  # (batch row, key column, target, score)
        for r, (row, c) in enumerate(zip(batch, ctx_lens)):
            off = q_ctx - c  # context left-padded to q_ctx, blocks right after it
            col = torch.tensor([off + x if x < c else q_ctx + x - c for x in range(len(row.ids))], dtype=torch.long)
            ids[r, col] = torch.tensor(row.ids)
            pos[r, col] = torch.tensor(row.positions)
            valid[r, col] = 1
            lo[r, col] = torch.tensor(row.lo) + off  # the shared span [lo, hi) lies inside the context
            hi[r, col] = torch.tensor(row.hi) + off
            start[r, col] = col[torch.tensor(row.start)]
            for score, predictors, targets in row.scores:
                entries.extend((r, int(col[q]), t, score) for q, t in zip(predictors, targets))
        k = torch.arange(width)
        selfcol = k[None, :, None]
        e = torch.tensor(entries, dtype=torch.long)
        logp = torch.empty(len(entries), dtype=torch.float64)

        def visible_mask(q0: int) -> torch.Tensor:
            """Float 4-D mask for the queries from column ``q0`` on."""
            lo_, hi_, st_ = lo[:, q0:, None], hi[:, q0:, None], start[:, q0:, None]
            vis = ((k >= lo_) & (k < hi_)) | ((k >= st_) & (k <= selfcol[:, q0:]))
            return torch.zeros(vis.shape, dtype=dtype).masked_fill_(~vis, torch.finfo(dtype).min)[:, None].to(device)

        def gather(logits: torch.Tensor, sel: torch.Tensor, first_col: int) -> None:
            if sel.any():
                rows_, cols = e[sel, 0], e[sel, 1] - first_col
                picked = logits[rows_.to(device), cols.to(device)].float().log_softmax(-1)
                logp[sel] = picked.gather(1, e[sel, 2, None].to(device)).squeeze(1).double().cpu()

        def keep_from(sel: torch.Tensor, first_col: int, last_col: int) -> int:
            return last_col - int(e[sel, 1].min()) if sel.any() else 1

        common = {"use_cache": attention == "cached"}
        if attention == "cached":
            in_ctx = e[:, 1] < q_ctx
            keep = keep_from(in_ctx, 0, q_ctx)
            logits, cache = _logits(model, keep_ok, keep, input_ids=ids[:, :q_ctx].to(device),
                                    attention_mask=valid[:, :q_ctx].to(device),
                                    position_ids=pos[:, :q_ctx].to(device), **common)
            gather(logits, in_ctx, q_ctx - logits.shape[1])
            if width > q_ctx:
                keep = keep_from(~in_ctx, q_ctx, width)
                logits, _ = _logits(model, keep_ok, keep, input_ids=ids[:, q_ctx:].to(device),
                                    attention_mask=visible_mask(q_ctx), position_ids=pos[:, q_ctx:].to(device),
                                    **{CACHE_KEY: cache}, **common)
                gather(logits, ~in_ctx, width - logits.shape[1])
        else:
            every = torch.ones(len(entries), dtype=torch.bool)
            mask = visible_mask(0) if attention == "block" else valid.to(device)
            logits, _ = _logits(model, keep_ok, keep_from(every, 0, width), input_ids=ids.to(device),
                                attention_mask=mask, position_ids=pos.to(device), **common)
            gather(logits, every, width - logits.shape[1])
        sums.index_add_(0, e[:, 3], logp)
    return sums


MODES = {"one_pass": "block", "cached": "cached", "naive": "causal"}
"""LikelihoodProgress mode -> `score_rows` attention strategy."""


class LikelihoodProgress:
    """Likelihood progress: L_j = log p_θ(a* | x, z_{0:j}, suffix), ΔI_j = L_j − L_{j−1} (or on exp scale).

    The termination suffix between prefix and answer is the meta-prover's (``prover.suffix``, the
    run's one ``prover`` configuration), tokenized once and appended as ids; the full thought of an
    R1-style trace that closed it is followed by ``prover.think_end`` instead (as Monte Carlo progress
    does), scored in a row of its own, unless ``full_thought="suffix"``.

    Args:
        answer_template: how a* is written after the suffix, e.g. ``"{answer}</answer>"``.
        scale: ``"log"`` (ΔI = L_j − L_{j−1}) or ``"prob"`` (ΔI = exp L_j − exp L_{j−1}).
        mode: ``"one_pass"`` (all prefixes of a trace in one packed sequence with a block attention
            mask, mask memory O(Q²) per trace), ``"cached"`` (context once with causal attention and
            a KV cache, then every block in one call with a mask of O(Q·n·|block|); needs a standard
            KV cache) or ``"naive"`` (one sequence per prefix, plain causal attention). The block
            masks need an attention implementation in `BLOCK_MASK_ATTENTION`; others (flash
            attention) are switched to sdpa for the call where the model allows it.
        batch_size: packed sequences (one_pass / cached: traces; naive: prefixes) per forward pass.
        max_length: cap on a packed sequence; a trace whose pack is longer is split into several
            packs (each holds the context up to its last prefix). None: no cap.
        full_thought: what follows the full thought of a closed R1-style trace: ``"think_end"`` (its own
            ``</think>``, as MRT's meta-prover) or ``"suffix"`` (the same suffix as every other prefix, so one
            answer template is scored after the same text everywhere: a model that answers differently
            after its own ``</think>`` than after "Time is up." would otherwise make the last ΔI a change
            of format, not of knowledge).

    Side outputs: ``episode.info["logp"]`` = L_j, ``trace.meta["logp_init"]`` = L_{-1}.
    """

    name = "likelihood_progress"
    level = "episode"
    needs_model = True

    def __init__(self, answer_template: str = "{answer}", scale: str = "log", mode: str = "one_pass",
                 batch_size: int = 8, max_length: int | None = None, full_thought: str = "think_end"):
        if full_thought not in ("think_end", "suffix"):
            raise ValueError(f"full_thought={full_thought!r}: use 'think_end' (the trace's own </think>, as MRT) or "
                             "'suffix' (the termination suffix, as every other prefix)")
        self.full_thought = full_thought
        if scale not in ("log", "prob"):
            raise ValueError(f"scale={scale!r}: use 'log' (L_j - L_j-1) or 'prob' (exp L_j - exp L_j-1)")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use 'one_pass' (one forward per trace), 'cached' (context, then "
                             "blocks against its KV cache) or 'naive' (one forward per prefix)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length={max_length} must be >= 1 or None")
        _answer_text(Trace("", "", answer="a*"), answer_template)
        self.answer_template = answer_template
        self.scale = scale
        self.mode = mode
        self.batch_size = int(batch_size)
        self.max_length = max_length

    def _rows(self, tokens: Sequence[TraceTokens], blocks: Sequence[list[int]], answer_lens: Sequence[int],
              finals: Sequence[list[int] | None]) -> list[PackedRow]:
        rows: list[PackedRow] = []
        first = 0
        for i, (tt, block, a, final) in enumerate(zip(tokens, blocks, answer_lens, finals)):
            lengths = tt.prefix_lengths()
            scores = list(range(first, first + len(lengths)))
            first += len(lengths)
            if final is not None:  # the full thought of a closed trace: its own block (think_end + answer)
                rows.append(_naive_row(tt.context(lengths[-1]), final, a, scores[-1]))
                lengths, scores = lengths[:-1], scores[:-1]
            if self.mode == "naive":
                rows.extend(_naive_row(tt.context(k), block, a, s) for k, s in zip(lengths, scores))
                continue
            groups: list[list[int]] = [[]]
            for j, k in enumerate(lengths):
                size = len(tt.prompt_ids) + k + len(block) * (len(groups[-1]) + 1)
                if self.max_length is not None and size > self.max_length:
                    if not groups[-1] or len(tt.prompt_ids) + k + len(block) > self.max_length:
                        raise ValueError(f"trace {i}: prefix {j - 1} plus suffix and answer is "
                                         f"{len(tt.prompt_ids) + k + len(block)} tokens > max_length={self.max_length}")
                    groups.append([])
                groups[-1].append(j)
            for g in groups:
                context = tt.context(lengths[g[-1]])
                rows.append(pack_prefix_blocks(context, [len(tt.prompt_ids) + lengths[j] for j in g], block, a,
                                               [scores[j] for j in g]))
        return rows

    def log_likelihoods(self, traces: Sequence[Trace], model: torch.nn.Module, tokenizer: Any,
                        prover: ProverConfig | Mapping[str, Any] | None = None) -> list[list[float]]:
        """L_j for j = −1 .. n−1 of every trace (and the side outputs on the records); ``prover`` gives the
        termination suffix (None: the default μ, :data:`metarl.prover.TAG_PROVER`)."""
        prover = as_prover(prover)
        if not traces:
            return []
        tokens = [_with_index(i, trace_tokens, t, tokenizer) for i, t in enumerate(traces)]
        suffix = prover.suffix
        suffix_ids = _encode(tokenizer, suffix, add_special_tokens=False) if suffix else []
        end_ids = _encode(tokenizer, prover.think_end, add_special_tokens=False) if prover.think_end else []
        blocks, answer_lens, finals = [], [], []
        for i, t in enumerate(traces):
            answer_ids = _encode(tokenizer, _with_index(i, _answer_text, t, self.answer_template), False)
            if not answer_ids:
                raise ValueError(f"trace {i}: the answer {t.answer!r} tokenizes to no tokens; nothing to score")
            blocks.append(suffix_ids + answer_ids)
            answer_lens.append(len(answer_ids))
            closed = t.answer_start is not None and prover.closes_thought(t.completion)
            finals.append(end_ids + answer_ids if closed and self.full_thought == "think_end" else None)
        rows = self._rows(tokens, blocks, answer_lens, finals)
        num_scores = sum(len(tt.ends) + 1 for tt in tokens)
        attention = MODES[self.mode]
        blocks_ctx = block_mask_attention(model) if attention != "causal" else contextlib.nullcontext()
        with inference_mode(model), blocks_ctx:
            sums = score_rows(model, rows, num_scores, self.batch_size, pad_token_id(tokenizer, model), attention)
        out: list[list[float]] = []
        first = 0
        for trace, tt in zip(traces, tokens):
            ls = sums[first:first + len(tt.ends) + 1].tolist()
            first += len(ls)
            trace.meta["logp_init"] = ls[0]
            for ep, value in zip(trace.episodes, ls[1:]):
                ep.info["logp"] = value
            out.append(ls)
        return out

    def score_batch(self, traces: Sequence[Trace], model: torch.nn.Module, tokenizer: Any,
                    prover: ProverConfig | Mapping[str, Any] | None = None) -> list[list[float]]:
        """ΔI_j for every episode of every trace (a* is scored directly: no grader)."""
        values = self.log_likelihoods(traces, model, tokenizer, prover)
        if self.scale == "prob":
            values = [[math.exp(v) for v in ls] for ls in values]
        return [_differences(ls) for ls in values]


@reward("trace")
def mrt_prefix_outcome(trace: Trace, outcome: float | None, bonus: float = 1.0) -> float | None:
    """MRT's progress bonus as its paper applies it, on a prefix-branching rollout (``rollout.mode=
    prefix_branching``; docs/method.md §4): one end-of-trace scalar, the 0/1 outcome plus ``bonus`` × (Ĵ after
    the stream's first episode − Ĵ at the prefix) for a continuing stream; a terminating stream (or one with no
    prefix) gets the outcome alone. Ĵ is Monte Carlo progress's (``mc_progress``, weight 0, among the rewards: μ's
    forced answers after the prompt and prefix, then after each episode). Used as the objective's outcome term.

    >>> from metarl.types import Branch, Episode
    >>> t = Trace(prompt="", completion="ab", meta={"J_init": 0.25},
    ...           episodes=[Episode("other", 0, 1, "a", info={"J": 0.75}), Episode("other", 1, 2, "b", info={"J": 1.0})],
    ...           branch=Branch(2, 10, "...", terminating=False))
    >>> mrt_prefix_outcome(t, 1.0, bonus=0.5)
    1.25
    """
    from metarl.calibration import j_values

    if outcome is None or trace.branch is None or trace.branch.terminating:
        return outcome
    js = j_values(trace)
    if js is None or len(js) < 2:
        raise ValueError("mrt_prefix_outcome needs μ's Ĵ at the prefix and after the first episode: add "
                         "rewards.mc_progress (weight 0) to the rewards")
    return outcome + bonus * (js[1] - js[0])
