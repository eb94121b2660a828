"""Ship the Hydra configs and recipes inside the wheel (``metarl/_conf``), so an installed metarl has them.

The checkout keeps them at the top level (``conf/``, ``recipes/``, linked as ``conf/recipe``); an editable
install reads them there (:func:`metarl.config.conf_dir`). Everything else is in ``pyproject.toml``.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``conf/`` (the ``recipe`` link followed: ``recipes/`` as ``recipe/``)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "metarl" / "_conf"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(Path(__file__).parent / "conf", dest, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
