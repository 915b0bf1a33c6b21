"""Extract MediaPipe's canonical face mesh from a ``face_landmarker.task`` bundle.

Provenance script (run once; its outputs are committed in data_samples/):

    python data_samples/scripts/extract_canonical_mesh.py path/to/face_landmarker.task

The bundle (Apache-2.0, Google) is a zip; its ``geometry_pipeline_metadata_landmarks.binarypb``
is a ``FaceGeometry.GeometryPipelineMetadata`` protobuf whose field 1 is the canonical
``Mesh3d`` (vertex_type VERTEX_PT: x, y, z, u, v per vertex; primitive_type TRIANGLE).
We decode the protobuf wire format by hand so that no protobuf package is needed.

Landmark regions (lips, brows, eyes, face oval) come from the connection lists in
``mediapipe.tasks.python.vision.face_landmarker.FaceLandmarksConnections`` when mediapipe
is installed; they are stored in the .npz so the library never needs mediapipe for zones.
"""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _parse(b: bytes) -> list[tuple[int, int, object]]:
    i, out = 0, []
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i : i + 8], i + 8
        elif wire == 5:
            v, i = b[i : i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, v))
    return out


def _floats(items, field):
    vals = []
    for f, w, v in items:
        if f != field:
            continue
        if w == 5:
            vals.append(struct.unpack("<f", v)[0])
        elif w == 2:  # packed
            vals.extend(struct.unpack(f"<{len(v) // 4}f", v))
    return np.array(vals, np.float32)


def _uints(items, field):
    vals = []
    for f, w, v in items:
        if f != field:
            continue
        if w == 0:
            vals.append(v)
        elif w == 2:  # packed varints
            j = 0
            while j < len(v):
                x, j = _varint(v, j)
                vals.append(x)
    return np.array(vals, np.int64)


def regions_from_mediapipe() -> dict[str, np.ndarray]:
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as C

    names = {
        "lips": C.FACE_LANDMARKS_LIPS,
        "left_eye": C.FACE_LANDMARKS_LEFT_EYE,
        "right_eye": C.FACE_LANDMARKS_RIGHT_EYE,
        "left_eyebrow": C.FACE_LANDMARKS_LEFT_EYEBROW,
        "right_eyebrow": C.FACE_LANDMARKS_RIGHT_EYEBROW,
        "face_oval": C.FACE_LANDMARKS_FACE_OVAL,
    }
    out = {}
    for k, conns in names.items():
        idx = sorted({c.start for c in conns} | {c.end for c in conns})
        out[f"region_{k}"] = np.array(idx, np.int64)
    return out


def main(task_path: str) -> None:
    with zipfile.ZipFile(task_path) as z:
        meta = z.read("geometry_pipeline_metadata_landmarks.binarypb")
    top = _parse(meta)
    mesh = _parse(next(v for f, w, v in top if f == 1))
    vb = _floats(mesh, 3).reshape(-1, 5)
    ib = _uints(mesh, 4).reshape(-1, 3)
    # procrustes landmark basis: (landmark_id, weight) pairs used by MediaPipe's pose solver
    basis = []
    for f, _w, v in top:
        if f == 2:
            sub = _parse(v)
            lid = next(x for ff, ww, x in sub if ff == 1)
            wt = struct.unpack("<f", next(x for ff, ww, x in sub if ff == 2))[0]
            basis.append((lid, wt))
    assert vb.shape == (468, 5), vb.shape
    assert ib.shape == (898, 3), ib.shape
    arrays = dict(
        vertices=vb[:, :3].astype(np.float32),  # centimetres, +y up, +z towards the viewer
        uvs=vb[:, 3:].astype(np.float32),
        triangles=ib.astype(np.int64),
        procrustes_ids=np.array([b[0] for b in basis], np.int64),
        procrustes_weights=np.array([b[1] for b in basis], np.float32),
    )
    arrays.update(regions_from_mediapipe())
    np.savez_compressed(OUT / "canonical_face_mesh.npz", **arrays)
    with open(OUT / "canonical_face_mesh.obj", "w") as f:
        f.write("# MediaPipe canonical face mesh (Apache-2.0), 468 vertices, 898 triangles\n")
        for x, y, z in arrays["vertices"]:
            f.write(f"v {x:.6f} {y:.6f} {z:.6f}\n")
        for u, v in arrays["uvs"]:
            f.write(f"vt {u:.6f} {v:.6f}\n")
        for a, b, c in arrays["triangles"] + 1:
            f.write(f"f {a}/{a} {b}/{b} {c}/{c}\n")
    print("wrote", OUT / "canonical_face_mesh.npz", {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
