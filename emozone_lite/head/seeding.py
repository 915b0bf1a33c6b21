"""Seeding Gaussians on the face mesh, and carrying the mesh's motion to them.

- :func:`seed_gaussians` — ``N`` flat Gaussians sampled on the mesh's triangles with area
  weighting; each remembers its triangle and barycentrics (:data:`HEAD_EXTRAS`);
- :func:`carry_vertex_displacements` — displacements of the 468 mesh vertices (the teacher
  rig) → Gaussian centre offsets, by barycentric interpolation;
- :func:`carry_triangle_rotations` — each Gaussian turns with its triangle's frame
  (:func:`~emozone_lite.geometry.triangle_frames`);
- :func:`triangle_deformations` and :func:`stretch_gaussians` — each Gaussian also stretches
  with its triangle (its covariance mapped by the triangle's deformation gradient), so a
  stretched region of skin stays covered instead of tearing open between the splats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..checks import as_float_tensor
from ..gaussians import GaussianCloud
from ..geometry import rotmat_to_quat, triangle_frames
from ..landmarks import FaceMesh, load_canonical_mesh

__all__ = [
    "HEAD_EXTRAS",
    "seed_gaussians",
    "carry_vertex_displacements",
    "carry_triangle_rotations",
    "triangle_deformations",
    "stretch_gaussians",
    "polar_rotation",
]

#: Extras every head carries: triangle index ``[N]`` and barycentric coordinates ``[N, 3]``.
HEAD_EXTRAS = ("tri_index", "bary")


def _as_mesh(mesh: FaceMesh | None) -> FaceMesh:
    """``mesh``, or the canonical mesh when ``None``; anything else raises ``ValueError``."""
    if mesh is None:
        return load_canonical_mesh()
    if not isinstance(mesh, FaceMesh):
        raise ValueError(f"mesh must be a landmarks.FaceMesh (see load_canonical_mesh()), got {type(mesh).__name__}")
    return mesh


def seed_gaussians(mesh: FaceMesh | None = None, n_gaussians: int = 12000, seed: int = 0) -> GaussianCloud:
    """Sample ``n_gaussians`` flat Gaussians on the mesh surface.

    Triangles get samples in proportion to their area (systematic sampling over the
    cumulative area, so the counts never stray more than one from proportional);
    inside a triangle the barycentrics are uniform. Each Gaussian lies flat on its
    triangle: its rotation is the triangle frame (:func:`~emozone_lite.geometry.triangle_frames`),
    its two tangent scales are the mean distance to its three nearest neighbours (the
    local sample spacing) and its normal scale is a tenth of that.

    Args:
        mesh: a :class:`~emozone_lite.landmarks.FaceMesh` (default: the canonical mesh).
        n_gaussians: number of Gaussians ``N`` (≥ 4).
        seed: seed of the sampler (same seed, same cloud).

    Returns:
        A :class:`~emozone_lite.gaussians.GaussianCloud` with mid-grey colours,
        opacity 0.9 and ``extras["tri_index"] [N]`` (int64) and ``extras["bary"] [N, 3]``
        with ``means = Σ_k bary[:, k] · V[triangles[tri_index, k]]``.

    Raises:
        ValueError: ``mesh`` is not a ``FaceMesh`` (or is degenerate), or ``n_gaussians < 4``.

    Examples:
        >>> g = seed_gaussians(n_gaussians=500)
        >>> len(g), g.extras["bary"].shape, g.extras["tri_index"].dtype
        (500, torch.Size([500, 3]), torch.int64)
    """
    from scipy.spatial import cKDTree

    mesh = _as_mesh(mesh)
    n = int(n_gaussians)
    if n < 4:
        raise ValueError(f"n_gaussians must be >= 4, got {n_gaussians}")
    V = np.asarray(mesh.vertices, dtype=np.float64)
    T = np.asarray(mesh.triangles, dtype=np.int64)
    if V.ndim != 2 or V.shape[1] != 3 or T.ndim != 2 or T.shape[1] != 3:
        raise ValueError(f"mesh.vertices must be [V, 3] and mesh.triangles [T, 3], got {V.shape} and {T.shape}")
    rng = np.random.default_rng(seed)
    area = 0.5 * np.linalg.norm(np.cross(V[T[:, 1]] - V[T[:, 0]], V[T[:, 2]] - V[T[:, 0]]), axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("mesh has no area (degenerate or non-finite vertices)")
    cdf = np.cumsum(area) / area.sum()
    u = (np.arange(n) + rng.random()) / n
    tri_index = np.minimum(np.searchsorted(cdf, u, side="right"), len(T) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    means = np.einsum("nk,nkd->nd", bary, V[T[tri_index]])

    dist, _ = cKDTree(means).query(means, k=4)
    spacing = dist[:, 1:].mean(axis=1)
    typical = math.sqrt(area.sum() / n)
    spacing = np.clip(spacing, 0.3 * typical, 3.0 * typical)
    tangent = spacing  # neighbours overlap at ~1σ: no holes at opacity 0.9
    scales = np.stack([tangent, tangent, 0.1 * tangent], axis=1)

    frames = triangle_frames(torch.from_numpy(V), torch.from_numpy(T))  # [T, 3, 3]
    quats = rotmat_to_quat(frames)[torch.from_numpy(tri_index)]
    return GaussianCloud(
        means=torch.from_numpy(means).float(),
        quats=quats.float(),
        scales=torch.from_numpy(scales).float(),
        opacities=torch.full((n,), 0.9),
        colors=torch.full((n, 3), 0.5),
        extras={"tri_index": torch.from_numpy(tri_index), "bary": torch.from_numpy(bary).float()},
    )


# --------------------------------------------------------------------------- carrying the rig
def _tri_bary(cloud_or_tri_bary) -> tuple[Tensor, Tensor]:
    """``(tri_index [N] int64, bary [N, 3])`` of a head cloud or of a pair."""
    if isinstance(cloud_or_tri_bary, GaussianCloud):
        missing = [k for k in HEAD_EXTRAS if k not in cloud_or_tri_bary.extras]
        if missing:
            raise ValueError(
                f"cloud has no extras {missing}; build it with seed_gaussians() or load it with load_head()"
            )
        tri_index, bary = cloud_or_tri_bary.extras["tri_index"], cloud_or_tri_bary.extras["bary"]
    elif isinstance(cloud_or_tri_bary, (tuple, list)) and len(cloud_or_tri_bary) == 2:
        tri_index, bary = (torch.as_tensor(x) for x in cloud_or_tri_bary)
    else:
        raise ValueError("expected a GaussianCloud with tri_index/bary extras or a pair (tri_index [N], bary [N, 3])")
    if tri_index.ndim != 1 or bary.shape != (tri_index.shape[0], 3):
        raise ValueError(f"tri_index must be [N] and bary [N, 3], got {tuple(tri_index.shape)} and {tuple(bary.shape)}")
    return tri_index.long(), bary


def _triangles(triangles) -> Tensor:
    """``[T, 3]`` int64 triangles (default: the canonical mesh's)."""
    if triangles is None:
        triangles = load_canonical_mesh().triangles
    return torch.as_tensor(np.asarray(triangles), dtype=torch.long)


def carry_vertex_displacements(cloud_or_tri_bary, vertex_disp: Tensor, triangles=None) -> Tensor:
    """Carry displacements of the mesh vertices to the Gaussians by barycentric interpolation.

    ``Δμ_i = Σ_k bary_ik · ΔV[triangles[tri_index_i, k]]`` — linear, so a zero
    displacement leaves every Gaussian in place and a constant one shifts them all.

    Args:
        cloud_or_tri_bary: a head :class:`~emozone_lite.gaussians.GaussianCloud` (with
            ``tri_index`` / ``bary`` extras) or a pair ``(tri_index [N], bary [N, 3])``.
        vertex_disp: ``[..., V, 3]`` displacements of the mesh vertices (V = 468).
        triangles: ``[T, 3]`` mesh triangles (default: the canonical mesh's).

    Returns:
        ``[..., N, 3]`` Gaussian displacements (same dtype/device as ``vertex_disp``;
        differentiable in it).

    Raises:
        ValueError: no ``tri_index`` / ``bary``, ``vertex_disp`` not ``[..., V, 3]``, or
            triangle indices out of range.

    Examples:
        >>> g = seed_gaussians(n_gaussians=100)
        >>> carry_vertex_displacements(g, torch.ones(2, 468, 3)).shape
        torch.Size([2, 100, 3])
    """
    tri_index, bary = _tri_bary(cloud_or_tri_bary)
    tri = _triangles(triangles)
    vertex_disp = as_float_tensor(vertex_disp, "vertex_disp")
    nv = int(tri.max()) + 1
    if vertex_disp.ndim < 2 or vertex_disp.shape[-1] != 3 or vertex_disp.shape[-2] < nv:
        raise ValueError(
            f"vertex_disp must have shape [..., {max(nv, 468)}, 3] (one row per mesh vertex), "
            f"got {tuple(vertex_disp.shape)}"
        )
    if int(tri_index.max()) >= tri.shape[0] or int(tri_index.min()) < 0:
        raise ValueError(f"tri_index values must lie in [0, {tri.shape[0]}) for a mesh of {tri.shape[0]} triangles")
    vid = tri.to(vertex_disp.device)[tri_index.to(vertex_disp.device)]  # [N, 3]
    corners = vertex_disp[..., vid, :]  # [..., N, 3 corners, 3]
    return torch.einsum("nk,...nkd->...nd", bary.to(vertex_disp), corners)


def carry_triangle_rotations(
    cloud_or_tri_bary, rest_vertices: Tensor, deformed_vertices: Tensor, triangles=None
) -> Tensor:
    """Per-Gaussian rotations that follow their triangles as the mesh deforms.

    For each triangle the rotation ``R_t = F_def · F_restᵀ`` takes its rest frame
    (:func:`~emozone_lite.geometry.triangle_frames`) to its deformed frame; every Gaussian
    gets its triangle's rotation as a quaternion ``Δq_i``. Apply it in world space, on the
    left: ``quats_new = geometry.quat_multiply(Δq, quats)`` (stretch is ignored; only rotation).

    Args:
        cloud_or_tri_bary: a head cloud or ``(tri_index [N], bary [N, 3])``.
        rest_vertices: ``[V, 3]`` mesh vertices the cloud was seeded on.
        deformed_vertices: ``[..., V, 3]`` deformed vertices.
        triangles: ``[T, 3]`` (default: canonical).

    Returns:
        ``[..., N, 4]`` unit quaternions (w, x, y, z); identity where nothing rotates.

    Raises:
        ValueError: no ``tri_index`` / ``bary``, or vertex arrays of different ``V``.
    """
    tri_index, _ = _tri_bary(cloud_or_tri_bary)
    tri = _triangles(triangles)
    rest = as_float_tensor(rest_vertices, "rest_vertices")
    if isinstance(deformed_vertices, Tensor):
        dv = deformed_vertices
    else:
        dv = as_float_tensor(deformed_vertices, "deformed_vertices", dtype=rest.dtype)
    if rest.ndim != 2 or rest.shape[-1] != 3 or dv.shape[-2:] != rest.shape:
        raise ValueError(
            "rest_vertices must be [V, 3] and deformed_vertices [..., V, 3] with the same V; "
            f"got {tuple(rest.shape)} and {tuple(dv.shape)}"
        )
    R = triangle_frames(dv, tri) @ triangle_frames(rest.to(dv), tri).transpose(-1, -2)  # [..., T, 3, 3]
    return rotmat_to_quat(R)[..., tri_index.to(dv.device), :]


def triangle_deformations(rest_vertices: Tensor, deformed_vertices: Tensor, triangles=None) -> Tensor:
    """Deformation gradient of every triangle: the linear map ``F`` with ``F e₁ = e₁'``,
    ``F e₂ = e₂'`` (its two edges from the first corner) and ``F n = n'`` (unit normals), so
    it stretches and shears in the triangle's plane and keeps the thickness.

    Args:
        rest_vertices: ``[V, 3]``.
        deformed_vertices: ``[..., V, 3]``.
        triangles: ``[T, 3]`` (default: canonical).

    Returns:
        ``[..., T, 3, 3]``; the identity for an undeformed mesh, a rotation for a rigid motion.
    """
    tri = _triangles(triangles)
    rest = as_float_tensor(rest_vertices, "rest_vertices")
    dv = deformed_vertices if isinstance(deformed_vertices, Tensor) else as_float_tensor(deformed_vertices, "deformed")
    if rest.ndim != 2 or rest.shape[-1] != 3 or dv.shape[-2:] != rest.shape:
        raise ValueError(
            "rest_vertices must be [V, 3] and deformed_vertices [..., V, 3] with the same V; "
            f"got {tuple(rest.shape)} and {tuple(dv.shape)}"
        )

    def basis(v: Tensor) -> Tensor:  # columns e1, e2, n
        p0, p1, p2 = v[..., tri[:, 0], :], v[..., tri[:, 1], :], v[..., tri[:, 2], :]
        e1, e2 = p1 - p0, p2 - p0
        n = torch.nn.functional.normalize(torch.linalg.cross(e1, e2), dim=-1)
        return torch.stack([e1, e2, n], dim=-1)

    return basis(dv.to(rest.dtype)) @ torch.linalg.inv(basis(rest))


def polar_rotation(F: Tensor) -> Tensor:
    """The rotation of the polar decomposition ``F = R P`` (``R`` proper, ``P`` symmetric
    positive semi-definite) of ``F [..., 3, 3]``: the closest rotation to ``F``."""
    U, _, Vh = torch.linalg.svd(F)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.ones_like(F[..., 0])
    D[..., 2] = torch.where(d == 0, torch.ones_like(d), d)
    return (U * D[..., None, :]) @ Vh


def stretch_gaussians(
    quats: Tensor, scales: Tensor, F: Tensor, rotation: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Gaussians ``(quats [..., N, 4], scales [..., N, 3])`` mapped by ``F [..., N, 3, 3]``.

    The covariance ``Σ = R S Sᵀ Rᵀ`` becomes ``F Σ Fᵀ``, exactly. The Gaussian first turns by
    ``F``'s rotation (:func:`polar_rotation`, or ``rotation [..., N, 3, 3]`` when given); the
    stretch left, written in the turned Gaussian's own axes, is diagonal when ``F`` stretches
    along those axes (then the scales just change) and otherwise eigen-decomposed, its axes
    matched to the Gaussian's (order and sign). So ``F = I`` returns the inputs unchanged
    (quaternions with their sign kept) and a rotation only turns them — even for Gaussians with
    two equal scales, whose in-plane axes an eigen-decomposition alone could not pin down.

    Returns:
        ``(quats [..., N, 4], scales [..., N, 3])``.
    """
    from itertools import permutations

    from ..geometry import normalize_quat, quat_to_rotmat

    Rq = polar_rotation(F) if rotation is None else rotation
    Rb = Rq @ quat_to_rotmat(quats)  # the Gaussian's axes, turned
    M = Rb.transpose(-1, -2) @ F @ (quat_to_rotmat(quats) * scales[..., None, :])  # in those axes
    C = M @ M.transpose(-1, -2)  # symmetric [..., 3, 3]
    diag = torch.diagonal(C, dim1=-2, dim2=-1)
    off = (C - torch.diag_embed(diag)).abs().amax((-1, -2))
    aligned = off <= 64 * torch.finfo(C.dtype).eps * diag.sum(-1).clamp_min(1e-30)  # no shear left
    evals, V = torch.linalg.eigh(C)
    # match the eigenvectors to the axes (V ≈ a signed permutation when the stretch is mild)
    perms = torch.tensor(list(permutations(range(3))), device=V.device)
    A = V.abs()
    score = torch.stack([A[..., 0, p[0]] + A[..., 1, p[1]] + A[..., 2, p[2]] for p in perms], -1)
    best = perms[score.argmax(-1)]
    V = torch.gather(V, -1, best[..., None, :].expand(V.shape))
    evals = torch.gather(evals, -1, best)
    sign = torch.sign(torch.diagonal(V, dim1=-2, dim2=-1))
    V = V * torch.where(sign == 0, torch.ones_like(sign), sign)[..., None, :]
    worst = torch.diagonal(V, dim1=-2, dim2=-1).abs().argmin(-1)
    fix = torch.ones_like(evals).scatter(-1, worst[..., None], -1.0)
    V = torch.where((torch.linalg.det(V) < 0)[..., None, None], V * fix[..., None, :], V)
    eye = torch.eye(3, dtype=V.dtype, device=V.device).expand(V.shape)
    V = torch.where(aligned[..., None, None], eye, V)
    evals = torch.where(aligned[..., None], diag, evals)
    q = rotmat_to_quat(Rb @ V)
    q = torch.where((q * quats).sum(-1, keepdim=True) < 0, -q, q)
    return normalize_quat(q), evals.clamp_min(0).sqrt()
