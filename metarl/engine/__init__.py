"""One generation engine for every stream metarl generates: training rollouts, held-out evaluation,
``metarl-eval``'s strategies and the meta-prover's Monte Carlo branches.

* :mod:`metarl.engine.base`: the backend contract (token ids in, token ids out);
* :mod:`metarl.engine.streams`: :class:`Engine` — streams under the compute cap (episodes, feedback,
  continuations, the forced answer) and branches, one rule for what counts against C,;
  the one meta-prover configuration is :class:`metarl.prover.ProverConfig`;
* :mod:`metarl.engine.hf`: the transformers backend (default); :mod:`metarl.engine.vllm`: vLLM.
"""
from typing import Any

from metarl.engine.base import GREEDY, Backend, Prefix, Request, Sampling
from metarl.engine.streams import Engine, Stream, StreamSpec, as_chat, prompt_ids_for, prompt_text, uses_chat
from metarl.prover import ProverConfig

__all__ = ["BACKENDS", "GREEDY", "Backend", "Engine", "Prefix", "ProverConfig", "Request", "Sampling", "Stream", "StreamSpec",
           "as_chat", "check_backend", "make_backend",
           "prompt_ids_for", "prompt_text", "uses_chat"]

BACKENDS = ("transformers", "vllm")
"""The backends ``generation.backend`` selects."""


def check_backend(name: str) -> None:
    """Raise ``ConfigError`` unless ``name`` is a backend that can run here (vLLM installed for ``vllm``)."""
    from metarl.registry import ConfigError

    if name not in BACKENDS:
        raise ConfigError(f"generation.backend={name!r} is not one of {', '.join(BACKENDS)}; "
                          f"e.g. generation.backend=transformers")
    if name == "vllm":
        from metarl.engine.vllm import require_vllm

        require_vllm()


def make_backend(generation: Any, model: Any, tokenizer: Any) -> Backend:
    """The backend ``generation.backend`` names, on a loaded policy outside training (metarl-eval, metarl-score,
    held-out evaluation); ``generation`` is the ``generation`` config block (or a mapping like it)."""
    get = generation.get if hasattr(generation, "get") else (lambda k, d=None: getattr(generation, k, d))
    name = str(get("backend", "transformers"))
    check_backend(name)
    if name == "vllm":  # a standalone engine on the policy's model directory
        from metarl.engine.vllm import VLLMBackend, model_dir_for

        kwargs = {"dtype": str(getattr(model, "dtype", "auto")).split(".")[-1], **dict(get("vllm", None) or {})}
        return VLLMBackend.standalone(model_dir_for(model, tokenizer), tokenizer, **kwargs)
    from metarl.engine.hf import HFBackend

    return HFBackend(model, tokenizer, int(get("batch_size", 64)))
