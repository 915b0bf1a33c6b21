"""The auto-graded exercises: the grader itself, the notebooks' stubs (they must fail unchanged)
and the worked solutions in solutions/ (they must pass)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from emozone_lite import grading
from emozone_lite.grading import EXERCISES, ExerciseFailed, check

REPO = Path(__file__).resolve().parent.parent
CHECK_CALL = re.compile(r"""check\(\s*["'](\w+)["']""")


def _graded_cells(folder: str) -> dict[str, tuple[str, str]]:
    """``{exercise: (notebook file, cell source)}`` for the code cells that call ``check("…", …)``."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted((REPO / folder).glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code":
                for name in CHECK_CALL.findall(src):
                    assert name not in found, f"{name} is graded twice: {found[name][0]} and {path.name}"
                    found[name] = (path.name, src)
    return found


def _run_cell(src: str) -> None:
    # a notebook cell, run as a kernel would (IPython magics have no place in a graded cell)
    exec(compile(src, "<cell>", "exec"), {"__name__": "__cell__"})


# --------------------------------------------------------------------------- the grader
def test_at_least_eight_exercises_over_the_course():
    assert len(EXERCISES) >= 8
    notebooks = {e.notebook for e in EXERCISES.values()}
    assert len(notebooks) >= 8, notebooks
    for e in EXERCISES.values():
        assert (REPO / "notebooks" / f"{e.notebook}.ipynb").exists(), e.notebook
        assert e.tier in ("★", "★★", "★★★") and e.task and e.hint


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_wrong_answer_fails_every_exercise(name):
    """Zeros of the right shape (the laziest wrong answer) never pass: the cases discriminate."""
    ex = EXERCISES[name]
    cases = ex.cases(np.random.default_rng(0))
    assert cases

    def zeros_like_reference(*args):
        want = ex.reference(*args)
        if isinstance(want, tuple):
            return tuple(np.zeros_like(np.asarray(w, dtype=float)) for w in want)
        return np.zeros_like(np.asarray(want, dtype=float))

    result = check(name, zeros_like_reference, quiet=True)
    assert not result and result.failures
    with pytest.raises(ExerciseFailed, match=name):
        check(name, zeros_like_reference, strict=True, quiet=True)


def test_the_report_names_the_case_shape_and_hint(capsys):
    result = check("jitter", lambda x: np.zeros(3))
    out = capsys.readouterr().out
    assert not result
    assert "✗ jitter" in out and "expected shape ()" in out and "Hint:" in out


def test_a_crashing_or_nan_answer_is_reported_not_raised():
    def crash(*_):
        raise KeyError("oops")

    assert "KeyError" in check("revin", crash, quiet=True).failures[0]
    nan = check("zone_membership", lambda d2, tau: torch.full_like(d2, float("nan")), quiet=True)
    assert "NaN" in nan.failures[0]
    stub = check("revin", lambda *_: (_ for _ in ()).throw(NotImplementedError()), quiet=True)
    assert stub.failures == ["not implemented yet: the stub still raises NotImplementedError"]


def test_inputs_changed_in_place_do_not_change_the_reference():
    def inplace_jitter(track):
        x = np.asarray(track)
        d2 = x[2:] - 2 * x[1:-1] + x[:-2]
        value = float((d2**2).mean())
        x *= 0  # vandalise the input after use
        return value

    assert check("jitter", inplace_jitter, quiet=True)


def test_strict_from_the_environment(monkeypatch):
    monkeypatch.setenv("EMOZONE_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed):
        check("lip_sync", lambda p, g: 0.0, quiet=True)
    monkeypatch.setenv("EMOZONE_STRICT_CHECKS", "0")
    assert not check("lip_sync", lambda p, g: 0.0, quiet=True)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown exercise 'nope'.*covariance"):
        check("nope", lambda: None)
    with pytest.raises(ValueError, match="fn must be your function, got int"):
        check("jitter", 3)
    with pytest.raises(ValueError, match="unknown exercise"):
        grading.describe("nope")
    assert grading.exercises("03") == ["zone_membership"]
    assert "Hint:" in grading.describe("covariance")


# --------------------------------------------------------------------------- notebooks and solutions
STUBS = _graded_cells("notebooks")
SOLUTIONS = _graded_cells("solutions")


def test_every_exercise_has_a_stub_and_a_solution():
    assert set(STUBS) == set(EXERCISES), f"stubs: {sorted(STUBS)}"
    assert set(SOLUTIONS) == set(EXERCISES), f"solutions: {sorted(SOLUTIONS)}"
    for name, (nb, _) in STUBS.items():
        assert nb.startswith(EXERCISES[name].notebook), (name, nb)
        assert SOLUTIONS[name][0].startswith(EXERCISES[name].notebook[:2]), (name, SOLUTIONS[name][0])


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_unchanged_stub_fails(name, monkeypatch):
    monkeypatch.setenv("EMOZONE_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        _run_cell(STUBS[name][1])


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_worked_solution_passes(name, monkeypatch):
    monkeypatch.setenv("EMOZONE_STRICT_CHECKS", "1")
    _run_cell(SOLUTIONS[name][1])  # raises ExerciseFailed if it does not reproduce the library
