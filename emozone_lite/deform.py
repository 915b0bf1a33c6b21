"""The deformation field: per-Gaussian offsets of position, rotation and scale.

Given a feature ``f_i`` for every canonical Gaussian ``i`` (from SZ-PAB, from a teacher
rig, or anything else) and its canonical centre ``μ_i``, a small MLP predicts

    (Δμ_i, Δq_i, Δs_i) = MLP([f_i, PE(μ_i)])

and :func:`apply_deformation` turns them into the deformed Gaussians
``(μ + Δμ, normalise(q ⊗ Δq), s · exp(Δs))``.

The three output heads are **zero-initialised** (as in gsplat's
``contrib/dynamic/deformation.py``): a freshly built field returns ``Δμ = 0``,
``Δq = (1, 0, 0, 0)`` and ``Δs = 0``, so it is exactly the identity until it learns.

Memory note: the first layer acts on ``[f_i, PE(μ_i)]``. Instead of copying
``PE(μ) [N, P]`` into every batch element to concatenate it, the first layer is split
into a feature part and a position part, ``W·[f, p] = W_f·f + W_p·p``; the position part
is computed once per call (``[N, hidden]``) and broadcast over the batch. The result is
the same MLP on the concatenation, with one ``[B, N, F + P]`` tensor fewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_finite, check_shape
from .encoding import encoding_dim, positional_encoding
from .geometry import normalize_quat, quat_multiply

__all__ = ["Deformation", "DeformationField", "apply_deformation", "quat_multiply"]

# ``quat_multiply`` (the Hamilton product q ⊗ r, wxyz) lives in ``emozone_lite.geometry``
# with the other rotation maths; it is re-exported here (``deform.quat_multiply``).


@dataclass
class Deformation:
    """Per-Gaussian offsets predicted by :class:`DeformationField`.

    Attributes:
        dmeans: ``[B, N, 3]`` (or ``[N, 3]``) position offsets Δμ, world units.
        dquats: ``[B, N, 4]`` (or ``[N, 4]``) unit rotation offsets Δq (w, x, y, z);
            identity is ``(1, 0, 0, 0)``.
        dlog_scales: ``[B, N, 3]`` (or ``[N, 3]``) log-scale offsets Δs; scales become
            ``s · exp(Δs)``.
    """

    dmeans: Tensor
    dquats: Tensor
    dlog_scales: Tensor

    @property
    def batched(self) -> bool:
        return self.dmeans.ndim == 3


_FINITE_HINT = "check the upstream features / Gaussians"


class DeformationField(nn.Module):
    """MLP ``[f_i, PE(μ_i)] → (Δμ_i, Δq_i, Δs_i)`` with zero-initialised output heads.

    Args:
        feat_dim: width ``F`` of the per-Gaussian features (0 for a field of position only).
        pe_freqs: number of positional-encoding frequencies for ``μ`` (see
            :func:`emozone_lite.encoding.positional_encoding`).
        hidden: width of the hidden layers.
        n_layers: number of hidden layers (≥ 1), each ``Linear`` + SiLU.

    Examples:
        >>> field = DeformationField(feat_dim=8)
        >>> d = field(torch.randn(2, 100, 8), torch.randn(100, 3))
        >>> d.dmeans.shape, d.dquats.shape, d.dlog_scales.shape
        (torch.Size([2, 100, 3]), torch.Size([2, 100, 4]), torch.Size([2, 100, 3]))
        >>> bool((d.dmeans == 0).all()), d.dquats[0, 0].tolist()  # a new field is the identity
        (True, [1.0, 0.0, 0.0, 0.0])
    """

    def __init__(self, feat_dim: int, pe_freqs: int = 6, hidden: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        if int(feat_dim) < 0:
            raise ValueError(f"feat_dim must be >= 0, got {feat_dim}")
        if int(pe_freqs) < 0:
            raise ValueError(f"pe_freqs must be >= 0, got {pe_freqs}")
        if int(hidden) < 1 or int(n_layers) < 1:
            raise ValueError(f"hidden and n_layers must be >= 1, got hidden={hidden}, n_layers={n_layers}")
        self.feat_dim, self.pe_freqs, self.hidden, self.n_layers = (
            int(feat_dim),
            int(pe_freqs),
            int(hidden),
            int(n_layers),
        )
        self.pe_dim = encoding_dim(3, self.pe_freqs)
        # First layer, split: W·[f, PE(μ)] + b = W_f·f + (W_p·PE(μ) + b).
        self.in_feat = nn.Linear(self.feat_dim, self.hidden, bias=False) if self.feat_dim > 0 else None
        self.in_pos = nn.Linear(self.pe_dim, self.hidden)
        self.trunk = nn.ModuleList(nn.Linear(self.hidden, self.hidden) for _ in range(self.n_layers - 1))
        self.act = nn.SiLU()
        self.head_means = nn.Linear(self.hidden, 3)
        self.head_quats = nn.Linear(self.hidden, 4)
        self.head_scales = nn.Linear(self.hidden, 3)
        for head in (self.head_means, self.head_quats, self.head_scales):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.register_buffer("quat_identity", torch.tensor([1.0, 0.0, 0.0, 0.0]), persistent=False)

    def forward(self, features: Tensor | None, canon_means: Tensor) -> Deformation:
        """Predict the deformation of every Gaussian.

        Args:
            features: ``[B, N, F]`` or ``[N, F]`` per-Gaussian features (``None`` allowed
                when ``feat_dim == 0``).
            canon_means: ``[N, 3]`` canonical Gaussian centres μ.

        Returns:
            :class:`Deformation` with ``[B, N, ·]`` tensors for batched features and
            ``[N, ·]`` tensors for unbatched ones.
        """
        if not isinstance(canon_means, Tensor):
            raise ValueError(f"canon_means must be a torch.Tensor [N, 3], got {type(canon_means).__name__}")
        n = check_shape(canon_means, "canon_means", ("N", 3))["N"]
        if features is None:
            if self.feat_dim != 0:
                raise ValueError(f"features is None but this field expects [B, N, {self.feat_dim}] features")
            features = canon_means.new_zeros(n, 0)
        if not isinstance(features, Tensor) or features.ndim not in (2, 3):
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(f"features must have shape [B, N, F] or [N, F], got {shape}")
        if features.shape[-1] != self.feat_dim:
            raise ValueError(
                f"features must have last dimension F={self.feat_dim} (feat_dim), got {tuple(features.shape)}"
            )
        if features.shape[-2] != n:
            raise ValueError(
                f"features describe {features.shape[-2]} Gaussians but canon_means has N={n}; they must match"
            )
        check_finite(canon_means, "canon_means", _FINITE_HINT)
        check_finite(features, "features", _FINITE_HINT)

        h = self.in_pos(positional_encoding(canon_means, self.pe_freqs))  # [N, hidden], shared by the batch
        if self.in_feat is not None:
            h = self.in_feat(features) + h  # [(B,) N, hidden]
        h = self.act(h)
        for layer in self.trunk:
            h = self.act(layer(h))
        if h.ndim < features.ndim:  # feat_dim == 0 with batched (empty) features
            h = h.expand(*features.shape[:-1], self.hidden)
        dquats = normalize_quat(self.head_quats(h) + self.quat_identity)
        return Deformation(self.head_means(h), dquats, self.head_scales(h))


def _cloud_tensors(cloud_tensors) -> tuple[Tensor, Tensor, Tensor]:
    if all(hasattr(cloud_tensors, a) for a in ("means", "quats", "scales")):
        return cloud_tensors.means, cloud_tensors.quats, cloud_tensors.scales
    if isinstance(cloud_tensors, (tuple, list)) and len(cloud_tensors) == 3:
        return tuple(cloud_tensors)  # type: ignore[return-value]
    raise ValueError(
        "cloud_tensors must be (means [N, 3], quats [N, 4], scales [N, 3]) or an object with "
        f".means, .quats and .scales (e.g. a GaussianCloud), got {type(cloud_tensors).__name__}"
    )


def apply_deformation(cloud_tensors, deformation: Deformation) -> tuple[Tensor, Tensor, Tensor]:
    """Deform canonical Gaussians: ``(μ + Δμ, normalise(q ⊗ Δq), s · exp(Δs))``.

    Args:
        cloud_tensors: ``(means [N, 3], quats [N, 4] wxyz, scales [N, 3] linear)`` or a
            ``GaussianCloud`` (anything with ``.means``, ``.quats``, ``.scales``).
        deformation: a :class:`Deformation` with ``[B, N, ·]`` or ``[N, ·]`` tensors.

    Returns:
        ``(means, quats, scales)`` shaped like the deformation (``[B, N, ·]`` or ``[N, ·]``).
        With an identity deformation the means and scales are returned bit-exact and the
        quaternions equal ``normalise(quats)`` bit-exact.
    """
    means, quats, scales = _cloud_tensors(cloud_tensors)
    for name, x, d in (("means", means, 3), ("quats", quats, 4), ("scales", scales, 3)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor [N, {d}], got {type(x).__name__}")
        check_shape(x, name, ("N", d))
    n = means.shape[0]
    if quats.shape[0] != n or scales.shape[0] != n:
        raise ValueError(
            f"means, quats and scales must share N; got {means.shape[0]}, {quats.shape[0]}, {scales.shape[0]}"
        )
    if not isinstance(deformation, Deformation):
        raise ValueError(f"deformation must be a Deformation, got {type(deformation).__name__}")
    for name, x, d in (
        ("dmeans", deformation.dmeans, 3),
        ("dquats", deformation.dquats, 4),
        ("dlog_scales", deformation.dlog_scales, 3),
    ):
        if x.ndim not in (2, 3) or x.shape[-1] != d or x.shape[-2] != n:
            raise ValueError(
                f"deformation.{name} must have shape [B, {n}, {d}] or [{n}, {d}] to match N={n}, got {tuple(x.shape)}"
            )
    return (
        means + deformation.dmeans,
        normalize_quat(quat_multiply(quats, deformation.dquats)),
        scales * torch.exp(deformation.dlog_scales),
    )
