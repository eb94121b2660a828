"""The plug-in guide (docs/plugins.md) works as written: its module and its command, run verbatim."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, flags=re.S)


def _module(tmp_path: Path, name: str = "my_plugins") -> None:
    (tmp_path / f"{name}.py").write_text("\n\n".join(_blocks("python")))


def _score(tmp_path: Path, command: str, traces: list[dict]) -> list[dict]:
    """Run one of the guide's commands verbatim (plus its output paths) in ``tmp_path``; the scored rows."""
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "metarl-score"
    exe = Path(sys.executable).with_name("metarl-score")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the console script finds my_plugins.py in cwd
    out = tmp_path / "scored.jsonl"
    r = subprocess.run([str(exe), *argv[1:], f"output={out}", f"run_dir={tmp_path / 'run'}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_guide_starts_with_a_trl_reward_function_by_dotted_path(tmp_path):
    _module(tmp_path)
    first = _blocks("python")[0]
    assert first.startswith("# my_plugins.py\ndef says_answer(completions, answer, **kwargs):")
    traces = [{"prompt": "2+2?", "completion": "It is 4.", "answer": "4"},
              {"prompt": "1+1?", "completion": "It is 3.", "answer": "2"},
              {"prompt": "hi", "completion": "hello"}]
    rows = _score(tmp_path, _blocks("bash")[0], traces)
    assert [r["rewards"].get("mine") for r in rows] == [1.0 - 8 / 1000, 0.0 - 8 / 1000, None]  # None: skipped
    assert [r["rewards"]["total"] for r in rows] == [1.0 - 8 / 1000, -8 / 1000, 0.0]  # the outcome term


def test_guide_segmenter_and_episode_reward(tmp_path):
    _module(tmp_path)
    traces = [
        {"prompt": "2+2?", "completion": "The answer is 4.\nCheck: 2+2=4 yes.\nCheck: ok.", "answer": "4"},
        {"prompt": "1+1?", "completion": "no checks here", "answer": "2"},
    ]
    rows = _score(tmp_path, _blocks("bash")[1], traces)
    assert [len(r["episodes"]) for r in rows] == [3, 1]
    eps = rows[0]["episodes"]
    assert [e["kind"] for e in eps] == ["attempt", "verify", "verify"]
    assert "".join(e["text"] for e in eps) == traces[0]["completion"]
    assert "brevity" not in eps[0]["rewards"]
    assert eps[2]["rewards"]["brevity"] == 5.0 / len("Check: ok.")
    assert rows[0]["rewards"]["dense"] == 5.0 / len("Check: 2+2=4 yes.\n") + 0.5
    assert rows[0]["outcome"] == 1.0 and rows[1]["outcome"] == 0.0


def test_guide_options_and_batched_estimator(tmp_path, monkeypatch, tiny):
    from metarl.engine.hf import HFBackend
    from metarl.rewards import build_reward, build_rewards
    from metarl.scoring import Scorer
    from metarl.segmenters import TagSegmenter
    from metarl.types import Trace

    _module(tmp_path, "my_plugins")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "'+rewards.b={_target_: my_plugins.brevity, _partial_: true, scale: 2}'" in GUIDE
    b = build_reward({"_target_": "my_plugins.brevity", "_partial_": True, "scale": 2, "name": "b"})
    assert b.level == "episode" and b.fn.keywords == {"scale": 2}
    assert "+rewards.v='{_target_: my_plugins.Sampler, m: 4}'" in GUIDE
    (sampler,) = build_rewards([{"_target_": "my_plugins.Sampler", "m": 2, "name": "v"}])
    assert sampler.needs == ("engine",) and sampler.batched
    model, tok = tiny
    s = Scorer(TagSegmenter(), [sampler], lambda p, a, prompt="": p == a, lambda t: None, lambda t: None)
    traces = s.score([Trace(prompt="ab", completion="c", answer="a"), Trace(prompt="ba", completion="c", answer="")],
                     backend=HFBackend(model, tok, 8))
    assert traces[0].rewards["v"] in (0.0, 0.5, 1.0) and traces[1].rewards["v"] == 1.0  # "" is in every sample


def test_guide_doctest(tmp_path, monkeypatch):
    import doctest
    import importlib

    _module(tmp_path, "my_plugins_doc")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("my_plugins_doc")
    result = doctest.testmod(mod)
    assert result.attempted >= 1 and result.failed == 0


def test_readme_plugin_example_trains_as_written(tmp_path):
    """The README's plug-in: its module and its metarl-train command (a step on a random model added) train, and
    every logged trace carries the function's own value as ``rewards.mine``, the objective's outcome term."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Plug in your own reward", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (command,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert code == _blocks("python")[0]  # the guide's first example
    (tmp_path / "my_plugins.py").write_text(code)
    argv = shlex.split(command.strip())
    assert argv[0] == ".venv/bin/metarl-train"
    exe = Path(sys.executable).with_name("metarl-train")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = tmp_path / "run"
    r = subprocess.run([str(exe), *argv[1:], "model=random-tiny", "trainer.max_steps=1", "evaluate.enabled=false",
                        "threads=1", f"run_dir={run}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_plugin", tmp_path / "my_plugins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()]
    assert rows
    want = mod.says_answer([t["completion"] for t in rows], [t["answer"] for t in rows])
    assert [t["rewards"]["mine"] for t in rows] == want
    assert [t["rewards"]["total"] for t in rows] == want  # rewards=[outcome] swapped for it as the outcome term
