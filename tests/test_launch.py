"""One-click launch: each lesson's launch cell, the README's Colab / Binder badges and the Binder set-up."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
URL = PYPROJECT["project"]["urls"]["Repository"]
SLUG = URL.removeprefix("https://github.com/")


def _launch_cell(path: Path) -> str:
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    assert "launch" in cells[0]["metadata"].get("tags", []), f"{path.name}: first code cell is not the launch check"
    return "".join(cells[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_launch_cell_installs_from_the_repository_only_when_missing(path, monkeypatch, capsys):
    src = _launch_cell(path)
    assert f"git+{URL}" in src, f"{path.name}: the launch cell does not install from {URL} (pyproject's Repository)"
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: calls.append(a))
    exec(compile(src, path.name, "exec"), {})  # installed here: nothing to install, no network
    assert calls == []
    assert "emozone-lite" in capsys.readouterr().out

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "emozone_lite" else real(n, *a))
    exec(compile(src, path.name, "exec"), {})  # a fresh Colab kernel: one pip install from the repository
    assert len(calls) == 1 and calls[0][0][-1].endswith(f"@ git+{URL}"), calls
    extras = re.search(r"emozone-lite\[([\w,]+)\]", calls[0][0][-1]).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"]), extras


def test_readme_has_colab_and_binder_badges_for_this_repository():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"https://colab.research.google.com/github/{SLUG}/blob/main/notebooks/" in readme
    assert f"https://mybinder.org/v2/gh/{SLUG}/main" in readme
    for target in re.findall(rf"colab\.research\.google\.com/github/{re.escape(SLUG)}/blob/main/([^)\s]+)", readme):
        assert (REPO / target).exists(), f"README's Colab badge points at {target}, which does not exist"


def test_binder_builds_python_311_then_installs_the_project_pinned():
    env = yaml.safe_load((REPO / "binder" / "environment.yml").read_text(encoding="utf-8"))
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    post = REPO / "binder" / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable (repo2docker runs it directly)"
    text = post.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    install = [line for line in text.splitlines() if "-e " in line]
    assert install and "-c constraints.txt" in install[0] and '".[notebooks,landmarks]"' in install[0]
    # the conda file for a checkout: the same pins, every extra it names exists
    conda = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-c constraints.txt" in pip
    extras = re.search(r"-e \.\[([\w,]+)\]", " ".join(pip)).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
