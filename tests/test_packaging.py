"""An installed wheel is a working metarl: configs and recipes ship inside it, the console scripts run from a
directory that is not the checkout, and they find plug-ins in the current directory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv*", "runs", "multirun", "outputs", "build", "dist", "*.egg-info",
                              "__pycache__", ".pytest_cache", "_conf")


def run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "METARL_CONF")}
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, env=env, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, bin dir, site-packages) of a fresh venv holding the wheel built from a copy of the checkout;
    its dependencies are the test environment's site-packages (a .pth line: no network, and not the
    checkout's editable metarl, whose own .pth is not read from there)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheels"],
        cwd=tmp)
    (wheel,) = (tmp / "wheels").glob("metarl-*.whl")
    env = tmp / "env"
    run([sys.executable, "-m", "venv", "--without-pip", env])
    (site,) = env.glob("lib/python*/site-packages")
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "test-deps.pth").write_text("".join(p + "\n" for p in deps))
    run([sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "--no-deps", "-q", wheel])
    return env / "bin" / "python", env / "bin", site, wheel


def test_wheel_holds_configs_recipes_and_the_analysis_api(installed):
    *_, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert conf and {f"metarl/_conf/{c}" for c in conf} <= names  # recipes too (conf/recipe -> recipes/)
    assert "metarl/_conf/recipe/obj1_verify.yaml" in names and "metarl/data/sample_traces.jsonl" in names
    assert "metarl/analysis/__init__.py" in names and not any(n.startswith("analysis/") for n in names)


def test_installed_console_scripts_run_outside_the_checkout(installed, tmp_path):
    python, bindir, site, _ = installed
    where = run([python, "-c", "import metarl, metarl.analysis; from metarl.config import conf_dir; "
                 "print(metarl.__file__); print(conf_dir())"], cwd=tmp_path).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where  # the wheel's code and configs, not the checkout's
    job = run([bindir / "metarl-train", "--cfg", "job", "recipe=obj1_verify"], cwd=tmp_path).stdout
    assert "verification_correctness" in job and "normalize: per_kind" in job
    sample = site / "metarl" / "data" / "sample_traces.jsonl"
    out = tmp_path / "scored.jsonl"
    run([bindir / "metarl-score", f"input={sample}", f"output={out}", f"run_dir={tmp_path / 'run'}"], cwd=tmp_path)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all("episodes" in r and "outcome" in r for r in rows)


def test_installed_console_script_finds_a_plugin_in_the_working_directory(installed, tmp_path):
    _, bindir, _, _ = installed
    (tmp_path / "my_seg.py").write_text("def halves(text):\n    h = len(text) // 2\n    return [(0, h), (h, len(text))]\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"prompt": "q", "completion": "abcdef", "answer": "x"}) + "\n")
    run([bindir / "metarl-score", "input=t.jsonl", "output=o.jsonl", "segmenter=custom",
         "segmenter._target_=my_seg.halves", "rewards=[]", f"run_dir={tmp_path / 'run'}"], cwd=tmp_path)
    (row,) = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [e["text"] for e in row["episodes"]] == ["abc", "def"]


def test_nothing_in_the_library_or_analysis_imports_the_cli():
    """Layering: ``metarl.cli`` depends on everything, nothing depends on it (config handling: metarl.config)."""
    import ast

    offenders = []
    for path in [*(ROOT / "metarl").rglob("*.py"), *(ROOT / "analysis").rglob("*.py")]:
        if "cli" in path.relative_to(ROOT).parts[1:2]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "metarl.cli" or n.startswith("metarl.cli.")]
    assert not offenders, offenders
