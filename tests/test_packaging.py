"""The install story: library ranges vs constraints pins, extras that declare every import,
a thin environment.yml, the two README commands, and no side effects at import."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _reqs(section: list[str]) -> dict[str, Requirement]:
    out = {}
    for r in section:
        req = Requirement(r)
        if _norm(req.name) != "emozone-lite":  # dev pulls the other extras in by name
            out[_norm(req.name)] = req
    return out


CORE = _reqs(PROJECT["dependencies"])
EXTRAS = {k: _reqs(v) for k, v in PROJECT["optional-dependencies"].items()}
ALL_DECLARED = {**CORE, **{n: r for e in EXTRAS.values() for n, r in e.items()}}


def _constraints() -> dict[str, Requirement]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return _reqs([ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()])


def test_library_metadata_takes_ranges_and_constraints_pin():
    for name, req in CORE.items():
        assert not any(s.operator in ("==", "===") for s in req.specifier), (
            f"{name}: pin it in constraints.txt, not pyproject"
        )
    pins = _constraints()
    assert str(pins["torch"].specifier) == "==2.13.*", "unpinned torch pulls a multi-GB CUDA build on these machines"
    assert str(pins["gsplat"].specifier) == "==1.5.3"
    for name, pin in pins.items():
        assert name in ALL_DECLARED, f"constraints.txt pins {name}, which pyproject does not declare"
        version = Version(str(pin.specifier).lstrip("=").replace(".*", ".0"))
        assert ALL_DECLARED[name].specifier.contains(version), (
            f"{name}: pin {pin.specifier} outside {ALL_DECLARED[name].specifier}"
        )


def test_extras_and_python_version():
    assert set(EXTRAS) >= {"cuda", "notebooks", "landmarks", "dev"}
    assert "gsplat" in EXTRAS["cuda"] and "gsplat" not in CORE, "gsplat is only used with CUDA"
    assert "mediapipe" in EXTRAS["landmarks"] and {"jupyterlab", "ipywidgets", "nbval"} <= set(EXTRAS["notebooks"])
    dev = PROJECT["optional-dependencies"]["dev"]
    assert any(r.startswith("emozone-lite[") for r in dev), "dev should include the other extras"
    assert SpecifierSet(PROJECT["requires-python"]).contains("3.11") and not SpecifierSet(
        PROJECT["requires-python"]
    ).contains("3.10"), "the tests use tomllib (3.11+)"


def _imports(paths) -> set[str]:
    mods = set()
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods


def _third_party(mods: set[str], local: set[str] = frozenset()) -> dict[str, str]:
    """Map each imported top-level module to its distribution; ``local`` names sibling modules (test helpers)."""
    dists = packages_distributions()
    out = {}
    for m in sorted(mods - set(sys.stdlib_module_names) - {"emozone_lite", "__future__"} - set(local)):
        assert m in dists, f"import {m!r} belongs to no installed distribution"
        out[m] = _norm(dists[m][0])
    return out


def test_every_import_is_declared():
    lib = _third_party(_imports((ROOT / "emozone_lite").rglob("*.py")))
    for mod, dist in lib.items():
        assert dist in ALL_DECLARED, f"emozone_lite imports {mod} ({dist}) but pyproject does not declare it"
    files = [*(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    tests = _third_party(_imports(files), local={p.stem for p in files})
    for mod, dist in tests.items():
        assert dist in ALL_DECLARED, f"tests import {mod} ({dist}) but no extra declares it"


def test_every_subpackage_ships():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "emozone_lite").rglob("__init__.py")}
    assert found <= listed, f"subpackages missing from [tool.setuptools] packages: {sorted(found - listed)}"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["emozone_lite.data"] == "data_samples"


def test_environment_yml_installs_the_project_with_the_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert SpecifierSet(PROJECT["requires-python"]).contains(py.split("=")[-1])
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-c constraints.txt", "-e .[dev]"], f"environment.yml should pip-install the project, got {pip}"


def test_makefile_targets_exist_and_ci_runs_lint_test_wheel():
    mk = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", mk, re.M).group(1).split()
    for target in phony:
        assert re.search(rf"^{re.escape(target)}:", mk, re.M), (
            f".PHONY lists {target!r} but the Makefile has no such rule"
        )
    for target in ("demo", "test", "lab", "lint", "wheel-check"):
        assert target in phony
    assert "--nbval" in mk, "make test must run the notebooks under nbval"
    assert "-c constraints.txt" in mk
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make lint") < ci.index("make test") < ci.index("make wheel-check")
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_ruff_is_configured():
    ruff = PYPROJECT["tool"]["ruff"]
    assert ruff["line-length"] == 120


_PROBE = r"""
import json, os, sys
env0 = dict(os.environ)
import emozone_lite
heavy = sorted(m for m in ("torch", "numba", "matplotlib", "librosa") if m in sys.modules)
import torch, numba
n0 = (torch.get_num_threads(), numba.get_num_threads())
import importlib, pkgutil
names = [m.name for m in pkgutil.iter_modules(emozone_lite.__path__, "emozone_lite.") if m.name != "emozone_lite.__main__"]
for n in names:
    importlib.import_module(n)
changed = sorted(k for k in set(env0) | set(os.environ) if env0.get(k) != os.environ.get(k))
print(json.dumps({"heavy": heavy, "changed": changed, "threads": [n0, (torch.get_num_threads(), numba.get_num_threads())],
                  "modules": names}))
"""


@pytest.mark.slow
def test_importing_changes_nothing():
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["heavy"] == [], f"`import emozone_lite` imported {r['heavy']}"
    assert r["changed"] == [], f"importing emozone_lite's modules changed environment variables {r['changed']}"
    assert r["threads"][0] == r["threads"][1], "importing emozone_lite's modules changed a thread count"
    assert "emozone_lite.widgets" in r["modules"] and "emozone_lite.render" in r["modules"]
