"""Positional encoding of 3D points (NeRF-style sin/cos features), shared by the
SZ-PAB queries (``attention``) and the deformation field (``deform``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .checks import check_shape


def positional_encoding(x: Tensor, n_freqs: int = 6, include_input: bool = True) -> Tensor:
    """Sin/cos features of ``x [..., D]`` at frequencies ``2^k · π``, k = 0..n_freqs-1.

    Returns:
        ``[..., D * (2 * n_freqs + include_input)]``.

    Examples:
        >>> positional_encoding(torch.zeros(5, 3), n_freqs=4).shape
        torch.Size([5, 27])
    """
    if n_freqs < 0:
        raise ValueError(f"n_freqs must be >= 0, got {n_freqs}")
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating point tensor, got {x.dtype}")
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    xf = x[..., None, :] * freqs[:, None]  # [..., F, D]
    parts = [torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)]
    if include_input:
        parts.insert(0, x)
    return torch.cat(parts, dim=-1)


def encoding_dim(in_dim: int, n_freqs: int, include_input: bool = True) -> int:
    """Output width of :func:`positional_encoding`."""
    return in_dim * (2 * n_freqs + int(include_input))


class PositionalEncoding(nn.Module):
    """Module wrapper of :func:`positional_encoding` (no parameters)."""

    def __init__(self, in_dim: int = 3, n_freqs: int = 6, include_input: bool = True) -> None:
        super().__init__()
        self.in_dim, self.n_freqs, self.include_input = in_dim, n_freqs, include_input
        self.out_dim = encoding_dim(in_dim, n_freqs, include_input)

    def forward(self, x: Tensor) -> Tensor:
        check_shape(x, "x", ("*", self.in_dim))
        return positional_encoding(x, self.n_freqs, self.include_input)
