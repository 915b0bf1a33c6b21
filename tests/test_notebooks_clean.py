"""Committed notebooks carry no outputs and follow the tutorial shape (goals, summary, exercises)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NB_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((REPO / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NB_DIR}"


def test_every_lesson_has_a_solutions_notebook():
    assert [p.name.replace("_solutions", "") for p in SOLUTIONS] == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs; clear them before committing (jupyter nbconvert --clear-output --inplace)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "In this notebook you will" in text, f"{path.name}: no goals at the top"
    assert "Summary" in text, f"{path.name}: no Summary section"
    assert "Exercise" in text, f"{path.name}: no Exercises"
    cells = [c for c in nb.cells if c.cell_type == "code"]
    # the launch check and the auto-graded stubs are not lesson cells: they are not counted
    code = [c for c in cells if not {"launch", "exercise"} & set(c.metadata.get("tags", []))]
    assert 8 <= len(code) <= 30, f"{path.name}: {len(code)} code cells; aim for 10-25 short cells"
    assert any("assert" in c.source for c in code), f"{path.name}: no scratch-vs-library assert"
    assert "launch" in cells[0].metadata.get("tags", []), f"{path.name}: the first code cell must be the launch check"
    assert "environment_report()" in cells[0].source and "find_spec" in cells[0].source
    assert "seed_everything" in code[0].source, f"{path.name}: first lesson code cell must seed"
    assert any("NBVAL_IGNORE_OUTPUT" in c.source for c in code), f"{path.name}: no widget cell"
