"""Head files: a head cloud as a compact 3DGS PLY with its ``tri_index`` / ``bary`` extras."""

from __future__ import annotations

from pathlib import Path

from ..gaussians import GaussianCloud, load_ply, save_ply
from ..landmarks import load_canonical_mesh
from ..utils import data_path
from .seeding import HEAD_EXTRAS

__all__ = ["DEFAULT_HEAD", "save_head", "load_head"]

#: Default head file (in the bundled data, :func:`emozone_lite.utils.data_path`).
DEFAULT_HEAD = "head.ply"


def save_head(cloud: GaussianCloud, path) -> Path:
    """Write a head cloud as a compact 3DGS PLY (no ``f_rest_*``: the head has SH degree 0).

    Args:
        cloud: ``N`` Gaussians with the :data:`~emozone_lite.head.HEAD_EXTRAS`
            (``tri_index [N]``, ``bary [N, 3]``).
        path: where to write.

    Returns:
        The path written.

    Raises:
        ValueError: the cloud lacks the head extras.
    """
    missing = [k for k in HEAD_EXTRAS if k not in cloud.extras]
    if missing:
        raise ValueError(f"cloud lacks the head extras {missing}; build it with seed_gaussians()/build_head()")
    compact = GaussianCloud(
        cloud.means, cloud.quats, cloud.scales, cloud.opacities, cloud.colors,
        extras={**cloud.extras, "sh_rest": cloud.means.new_zeros(len(cloud), 0, 3)},
    )  # fmt: skip
    return save_ply(compact, path)


def _missing_head_error(where: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"head file {where} not found; build one with emozone_lite.head.build_head(out_path=...) "
        "or run data_samples/scripts/build_head.py"
    )


def load_head(path=None) -> GaussianCloud:
    """Load a head PLY (default: the bundled ``head.ply``, ``data_path(DEFAULT_HEAD)``) and check its extras.

    The head is the face the teacher poses and the student deforms; the whole portrait around it
    (hair, neck, shoulders, background) is :func:`emozone_lite.head.portrait.load_portrait`, whose
    first ``n_face`` Gaussians are this head (README: "Decided: head.load_head() stays the face head").

    Args:
        path: a head PLY (default: the bundled one, looked up when called, so
            ``EMOZONE_DATA`` set later is honoured).

    Returns:
        The head :class:`~emozone_lite.gaussians.GaussianCloud`, ``extras["tri_index"] [N]``
        int64 and ``extras["bary"] [N, 3]``.

    Raises:
        FileNotFoundError: when the file does not exist (says how to build it).
        ValueError: when the PLY is not a 3DGS file or lacks ``tri_index`` / ``bary``
            (or they are out of range).
    """
    if path is None:
        try:
            p = data_path(DEFAULT_HEAD)
        except FileNotFoundError as e:
            raise _missing_head_error(f"{DEFAULT_HEAD!r} (the bundled default)") from e
    else:
        p = Path(path)
        if not p.exists():
            raise _missing_head_error(repr(str(p)))
    cloud = load_ply(p)
    missing = [k for k in HEAD_EXTRAS if k not in cloud.extras]
    if missing:
        raise ValueError(
            f"{p}: PLY lacks the head properties {missing} (tri_index [N], bary_0..2 [N, 3]) needed to carry mesh "
            "displacements; it is not a head built by emozone_lite.head.build_head"
        )
    tri_index, bary = cloud.extras["tri_index"], cloud.extras["bary"]
    if tri_index.shape != (len(cloud),) or bary.shape != (len(cloud), 3):
        raise ValueError(
            f"{p}: tri_index must be [N] and bary [N, 3], got {list(tri_index.shape)} and {list(bary.shape)}"
        )
    n_tri = load_canonical_mesh().triangles.shape[0]
    ti = tri_index.double()
    if bool((ti != ti.round()).any() | (ti < 0).any() | (ti >= n_tri).any()):
        raise ValueError(f"{p}: tri_index must hold integers in [0, {n_tri})")
    if bool(((bary.sum(1) - 1).abs() > 1e-3).any() | (bary < -1e-4).any()):
        raise ValueError(f"{p}: bary rows must be non-negative and sum to 1")
    cloud.extras["tri_index"] = tri_index.long()
    return cloud
