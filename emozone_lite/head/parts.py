"""The parts of a head and how each one moves.

Every Gaussian of a head has a part (``extras["part"]``, an int; heads without the extra are
all :data:`FACE`):

========================= ===== ===========================================================
part                      code  moves with
========================= ===== ===========================================================
:data:`FACE`              0     the face mesh: its triangle's barycentric carry + rotation
:data:`UPPER_TEETH`       1     the skull (still: the head does not turn in this toolkit)
:data:`LOWER_TEETH`       2     the jaw: the jaw rotation of the rig (``J · F_jaw``) only
:data:`TONGUE`            3     the jaw (the tongue's floor rides on the mandible)
:data:`CAVITY_UPPER`      4     the skull: roof and back wall of the oral cavity
:data:`CAVITY_LOWER`      5     the jaw: the floor of the oral cavity
:data:`EYES`              6     the skull: the eyeballs, behind the lids
:data:`SKULL`             7     portrait: hair, ears, back of the head — rigid with the skull
:data:`NECK`              8     portrait: the neck — its share ``head_weight`` of a head turn
:data:`TORSO`             9     portrait: shoulders — static
:data:`BACKGROUND`        10    portrait: the photo's background — static
========================= ===== ===========================================================

The portrait's parts (:mod:`~emozone_lite.head.portrait`) get no deformation from AUs or
speech (:func:`carry_parts` leaves them where they are); only a head-pose change moves them
(:func:`~emozone_lite.head.portrait.pose_portrait`).

Mouth-interior and eyeball Gaussians also carry a ``tri_index`` / ``bary`` attachment, to a triangle of
the lip they sit behind (the eye they belong to): it gives them a place on the canonical surface (so zones,
:func:`emozone_lite.zones.cloud_membership`, put them in the lower face) and, for the jaw
parts, the jaw motion of that triangle (:func:`carry_parts`). They are never used to read
mesh vertices back from Gaussians (:func:`follows_mesh`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..gaussians import GaussianCloud
from ..geometry import normalize_quat, quat_multiply

__all__ = [
    "FACE",
    "UPPER_TEETH",
    "LOWER_TEETH",
    "TONGUE",
    "CAVITY_UPPER",
    "CAVITY_LOWER",
    "EYES",
    "SKULL",
    "NECK",
    "TORSO",
    "BACKGROUND",
    "PART_NAMES",
    "SCENERY_PARTS",
    "JAW_PARTS",
    "SKULL_PARTS",
    "parts_of",
    "follows_mesh",
    "carry_parts",
]

FACE, UPPER_TEETH, LOWER_TEETH, TONGUE, CAVITY_UPPER, CAVITY_LOWER, EYES, SKULL, NECK, TORSO, BACKGROUND = range(11)
#: Name of each part code.
PART_NAMES: dict[int, str] = {
    FACE: "face",
    UPPER_TEETH: "upper teeth",
    LOWER_TEETH: "lower teeth",
    TONGUE: "tongue",
    CAVITY_UPPER: "cavity (roof, back)",
    CAVITY_LOWER: "cavity (floor)",
    EYES: "eyeballs",
    SKULL: "skull (hair, ears)",
    NECK: "neck",
    TORSO: "torso",
    BACKGROUND: "background",
}
#: Parts that ride on the jaw.
JAW_PARTS: tuple[int, ...] = (LOWER_TEETH, TONGUE, CAVITY_LOWER)
#: Parts that stay with the skull.
SKULL_PARTS: tuple[int, ...] = (UPPER_TEETH, CAVITY_UPPER, EYES)
#: The portrait's parts around the face head (no deformation).
SCENERY_PARTS: tuple[int, ...] = (SKULL, NECK, TORSO, BACKGROUND)


def parts_of(cloud: GaussianCloud) -> Tensor:
    """``[N]`` int64 part codes (all :data:`FACE` when the cloud has no ``part`` extra)."""
    part = cloud.extras.get("part")
    if part is None:
        return torch.full((len(cloud),), FACE, dtype=torch.long)
    part = torch.as_tensor(part).long().reshape(-1)
    if part.shape[0] != len(cloud):
        raise ValueError(f"extras['part'] must have shape [N] with N = {len(cloud)}, got {tuple(part.shape)}")
    bad = ~torch.isin(part, torch.tensor(list(PART_NAMES)))
    if bool(bad.any()):
        raise ValueError(
            f"extras['part'] holds unknown part codes {sorted(set(part[bad].tolist()))}; expected {PART_NAMES}"
        )
    return part


def follows_mesh(cloud: GaussianCloud) -> Tensor:
    """``[N]`` bool: the Gaussians of the face surface (those that follow the mesh)."""
    return parts_of(cloud) == FACE


def carry_parts(
    cloud: GaussianCloud,
    rest_vertices: Tensor,
    vertex_disp: Tensor,
    jaw_disp: Tensor,
    jaw_angle: Tensor,
    triangles=None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Centres, rotations and scales of every Gaussian of a head, each part moving its own way.

    Face Gaussians carry ``vertex_disp`` through their triangles and are mapped by their
    triangle's deformation gradient (they turn *and stretch* with the skin:
    :func:`~emozone_lite.head.seeding.stretch_gaussians`); jaw parts carry only the jaw's share
    ``jaw_disp`` through their attachment triangles and turn by ``jaw_angle`` about the x axis
    (the jaw's hinge), rigidly; skull parts stay.

    Args:
        cloud: the head, ``N`` Gaussians (``tri_index`` / ``bary``, optionally ``part``).
        rest_vertices: ``[V, 3]`` mesh the displacements are measured from.
        vertex_disp: ``[T, V, 3]`` full displacement of the mesh (AUs + speech + jaw).
        jaw_disp: ``[T, V, 3]`` the jaw's part of it (``J · F_jaw``).
        jaw_angle: ``[T]`` the jaw's rotation, radians (``J · JAW_ANGLE``).
        triangles: ``[F, 3]`` mesh triangles (default: the canonical mesh's).

    Returns:
        ``means [T, N, 3]``, ``quats [T, N, 4]`` (unit, wxyz) and ``scales [T, N, 3]``.
    """
    from .seeding import (
        _triangles,
        carry_vertex_displacements,
        polar_rotation,
        stretch_gaussians,
        triangle_deformations,
    )

    part = parts_of(cloud)
    T = vertex_disp.shape[0]
    dt = vertex_disp.dtype
    means0 = cloud.means.detach().to(dt)
    quats0 = normalize_quat(cloud.quats.detach().to(dt))
    scales0 = cloud.scales.detach().to(dt)
    means = means0[None].repeat(T, 1, 1)
    quats = quats0[None].repeat(T, 1, 1)
    scales = scales0[None].repeat(T, 1, 1)
    face = part == FACE
    if bool(face.any()):
        idx = torch.nonzero(face).squeeze(1)
        sub = cloud.subset(idx)
        means[:, face] += carry_vertex_displacements(sub, vertex_disp, triangles)
        rest = torch.as_tensor(rest_vertices, dtype=dt)
        F = triangle_deformations(rest, rest[None] + vertex_disp, _triangles(triangles))  # [T, F, 3, 3]
        tri = sub.extras["tri_index"].long()
        Fi, Ri = F[:, tri], polar_rotation(F)[:, tri]  # per Gaussian; the polar rotation per triangle
        q, sc = stretch_gaussians(quats0[face][None].expand(T, -1, -1), scales0[face][None].expand(T, -1, -1), Fi, Ri)
        quats[:, face], scales[:, face] = q, sc
    jaw = torch.isin(part, torch.tensor(JAW_PARTS))
    if bool(jaw.any()):
        sub = cloud.subset(torch.nonzero(jaw).squeeze(1))
        means[:, jaw] += carry_vertex_displacements(sub, jaw_disp, triangles)
        half = 0.5 * torch.as_tensor(jaw_angle, dtype=dt).reshape(T)
        dq = torch.stack([half.cos(), half.sin(), torch.zeros_like(half), torch.zeros_like(half)], -1)  # about +x
        quats[:, jaw] = normalize_quat(quat_multiply(dq[:, None], quats0[jaw][None]))
    return means, quats, scales
