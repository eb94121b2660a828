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


def test_guide_module_and_command(tmp_path):
    (module,) = _blocks("python")
    (tmp_path / "my_plugins.py").write_text(module)
    (command,) = _blocks("bash")
    traces = [
        {"prompt": "2+2?", "completion": "The answer is 4.\nCheck: 2+2=4 yes.\nCheck: ok.", "answer": "4"},
        {"prompt": "1+1?", "completion": "no checks here", "answer": "2"},
    ]
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "metarl-score"
    exe = Path(sys.executable).with_name("metarl-score")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the console script finds my_plugins.py in cwd
    out = tmp_path / "scored.jsonl"
    r = subprocess.run([str(exe), *argv[1:], f"output={out}", f"run_dir={tmp_path / 'run'}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["episodes"]) for r in rows] == [3, 1]
    eps = rows[0]["episodes"]
    assert [e["kind"] for e in eps] == ["attempt", "verify", "verify"]
    assert "".join(e["text"] for e in eps) == traces[0]["completion"]
    assert "brevity" not in eps[0]["rewards"]
    assert eps[2]["rewards"]["brevity"] == 5.0 / len("Check: ok.")
    assert rows[0]["outcome"] == 1.0 and rows[1]["outcome"] == 0.0


def test_guide_doctest(tmp_path, monkeypatch):
    import doctest
    import importlib

    (module,) = _blocks("python")
    (tmp_path / "my_plugins_doc.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("my_plugins_doc")
    result = doctest.testmod(mod)
    assert result.attempted >= 1 and result.failed == 0
