"""Face landmarks: MediaPipe's canonical face mesh and its landmark regions.

The canonical mesh (468 vertices, 898 triangles, UVs) is bundled in
``data_samples/canonical_face_mesh.npz`` (extracted from MediaPipe's Apache-2.0
``face_landmarker.task``; see ``data_samples/README.md``). Coordinates are scaled to the
toolkit's world units (× 0.1: one unit is 10 cm), +y up, +z out of the face.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .utils import data_path

#: Scale from the canonical mesh's centimetres to world units.
MESH_SCALE = 0.1

#: Named landmark regions stored with the mesh (indices into the 468 vertices).
REGION_NAMES = ("lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow", "face_oval")


@dataclass(frozen=True)
class FaceMesh:
    """The canonical face mesh.

    Attributes:
        vertices: ``[468, 3]`` float32, world units.
        uvs: ``[468, 2]`` float32 texture coordinates in [0, 1].
        triangles: ``[898, 3]`` int64 vertex indices.
        regions: name → ``[k]`` int64 vertex indices (lips, eyes, eyebrows, face_oval).
    """

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _load_npz() -> dict[str, np.ndarray]:
    with np.load(data_path("canonical_face_mesh.npz")) as d:
        return {k: d[k] for k in d.files}


def load_canonical_mesh() -> FaceMesh:
    """The bundled MediaPipe canonical face mesh in world units (copies; safe to modify).

    Examples:
        >>> m = load_canonical_mesh()
        >>> m.vertices.shape, m.triangles.shape, sorted(m.regions)[:2]
        ((468, 3), (898, 3), ['face_oval', 'left_eye'])
    """
    d = _load_npz()
    regions = {k[len("region_"):]: d[k].copy() for k in d if k.startswith("region_")}
    return FaceMesh(
        vertices=(d["vertices"] * MESH_SCALE).astype(np.float32),
        uvs=d["uvs"].copy(),
        triangles=d["triangles"].copy(),
        regions=regions,
    )
