"""CIT-AE: the Channel-Independent Temporal AU Encoder (PatchTST-style).

EmoZone-Talker separates expression from speech *in time* by encoding every
Action-Unit intensity series on its own. Each of the 17 AU channels is a
univariate time series; for every video frame ``t`` the encoder looks at a window
of that channel's recent (or surrounding) frames and turns it into one
``d``-dimensional token. All channels share the same weights, and no layer ever
mixes two channels, so **changing AU k's series changes only token k**.

Pipeline for one frame (per channel, all channels and frames batched)::

    track [T, 17] ─ sliding_windows ─► [T, 17, W]          one window per frame
                  ─ RevIN (norm)    ─► zero-mean, unit-std windows (+ their mean / std)
                  ─ make_patches    ─► [T, 17, P, patch_len]   P = (W - patch_len) // stride + 1
                  ─ patch embedding (shared Linear + positional embedding) ─► [T·17, P, d]
                  ─ temporal encoder (shared 1–2 layer Transformer over the P patches)
                  ─ flatten head    ─► [T, 17, d]
                  + level embedding of the window's (mean, std)   (shared; RevIN removed them)
                  + AU identity embedding [17, d]   (added *after* the shared encoder)
                  ─► tokens [T, 17, d]

The per-AU identity embedding is a constant vector per channel added at the very
end, so token ``k`` still depends only on channel ``k``'s series — it only tells
the downstream attention *which* AU the token belongs to.

The baseline, :class:`PerFrameAUEncoder`, is a per-frame MLP over the 17 values:
same output shape, no temporal context, and every token mixes every AU.

Windows and anchors (``sliding_windows``):

* ``anchor="centred"`` (default; natural for offline rendering where the whole
  track is known): the token at frame ``t`` sees frames ``t - W//2 … t + W//2 - 1``
  (``t-16 … t+15`` for ``W = 32``).
* ``anchor="causal"`` (streaming / live use): the token at frame ``t`` sees
  frames ``t - W + 1 … t`` (``t-31 … t``); future frames never change it.

Frames outside the track are filled by edge padding (the first / last frame is
repeated), so a window longer than the track is fine.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .aus import AU_NAMES
from .checks import as_float_tensor, check_shape

__all__ = [
    "RevIN",
    "make_patches",
    "n_patches",
    "sliding_windows",
    "window_offsets",
    "CITAE",
    "PerFrameAUEncoder",
    "fit_reconstruction",
]

Anchor = Literal["causal", "centred"]


def _as_track(x, name: str) -> Tensor:
    """An AU track (tensor, array, list or ``aus.AUTrack``) as a float tensor.

    ``checks.as_float_tensor``, except that floating NumPy arrays (and lists of floats)
    keep their precision, as floating tensors do: a float64 track gives float64 windows.
    """
    if not isinstance(x, Tensor) and not hasattr(x, "values"):
        try:
            arr = np.asarray(x)
        except ValueError:  # ragged: let as_float_tensor say so
            arr = None
        if arr is not None and arr.dtype.kind == "f":
            x = torch.from_numpy(np.ascontiguousarray(arr))  # a copy only for reversed / strided views
    return as_float_tensor(x, name)


def _au_label(channel: int, n_channels: int) -> str:
    """``" (AU12)"`` when the channels are the 17 AUs, else ``""``."""
    return f" ({AU_NAMES[channel]})" if n_channels == len(AU_NAMES) else ""


def _check_finite_track(track: Tensor, name: str) -> None:
    """``checks.check_finite`` for ``track [..., T, C]``, naming the first bad frame and channel.

    Which AU of which frame is missing is the useful part of this message (a detector
    dropped a frame), so it is worth its own function.
    """
    bad = ~torch.isfinite(track.detach())
    if bool(bad.any()):
        idx = bad.nonzero()[0].tolist()
        frame, ch = idx[-2], idx[-1]
        where = f"batch {idx[0]}, " if track.ndim == 3 else ""
        raise ValueError(
            f"{name} contains NaN/inf at {where}frame {frame}, channel {ch}{_au_label(ch, track.shape[-1])}; "
            "fill or interpolate missing detections first"
        )


# --------------------------------------------------------------------------- RevIN
class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022), per channel over time.

    ``mode="norm"`` subtracts each channel's mean over the window and divides by its
    standard deviation (``sqrt(var + eps)``, population variance), then applies an
    optional per-channel affine ``γ·x + β``; the statistics are stored on the module.
    ``mode="denorm"`` undoes exactly that with the stored statistics, so
    ``denorm(norm(x)) == x`` up to float error.

    Args:
        num_channels: ``C``, number of channels (17 AUs).
        eps: added to the variance; also keeps the affine inverse stable.
        affine: learn per-channel ``γ [C]`` (init 1) and ``β [C]`` (init 0).

    Shapes:
        ``x: [..., C, L]`` — channels second-to-last, time last (the layout of
        :func:`sliding_windows`' windows). Statistics are ``[..., C, 1]``.

    Examples:
        >>> r = RevIN(3)
        >>> x = torch.randn(2, 3, 16) * 4 + 7
        >>> y = r(x, "norm")
        >>> bool(y.mean(-1).abs().max() < 1e-5)
        True
        >>> bool(torch.allclose(r(y, "denorm"), x, atol=1e-4))
        True
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if num_channels <= 0:
            raise ValueError(f"num_channels must be positive, got {num_channels}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.num_channels, self.eps, self.affine = int(num_channels), float(eps), bool(affine)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))
        self.mean: Tensor | None = None
        self.stdev: Tensor | None = None

    def _check(self, x: Tensor) -> None:
        if x.ndim < 2 or x.shape[-2] != self.num_channels:
            raise ValueError(
                f"RevIN expects x of shape [..., {self.num_channels}, L] (channels, then time), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, mode: str = "norm") -> Tensor:
        """Normalise (``"norm"``) or restore (``"denorm"``) ``x [..., C, L]``."""
        self._check(x)
        if mode == "norm":
            self.mean = x.mean(dim=-1, keepdim=True).detach()
            self.stdev = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + self.eps).detach()
            y = (x - self.mean) / self.stdev
            if self.affine:
                y = y * self.weight[:, None] + self.bias[:, None]
            return y
        if mode == "denorm":
            if self.mean is None or self.stdev is None:
                raise RuntimeError("RevIN.denorm called before norm; call forward(x, 'norm') first")
            if self.affine:
                x = (x - self.bias[:, None]) / (self.weight[:, None] + self.eps * self.eps)
            # broadcast the statistics over whatever length x has (a window, or one value)
            return x * self.stdev + self.mean
        raise ValueError(f"mode must be 'norm' or 'denorm', got {mode!r}")


# --------------------------------------------------------------------------- patching
def n_patches(window: int, patch_len: int = 8, stride: int = 4) -> int:
    """Number of patches of length ``patch_len`` taken every ``stride`` frames from ``window``.

    Examples:
        >>> n_patches(32, 8, 4)
        7
    """
    _check_patching(window, patch_len, stride)
    return (window - patch_len) // stride + 1


def _check_patching(window: int, patch_len: int, stride: int) -> None:
    if int(window) <= 0:
        raise ValueError(f"window must be a positive number of frames, got {window}")
    if int(patch_len) <= 0:
        raise ValueError(f"patch_len must be positive, got {patch_len}")
    if int(stride) <= 0:
        raise ValueError(f"stride must be positive (frames between patch starts), got {stride}")
    if patch_len > window:
        raise ValueError(
            f"patch_len ({patch_len}) is longer than the window ({window}); use a shorter patch or a longer window"
        )


def make_patches(x: Tensor, patch_len: int = 8, stride: int = 4) -> Tensor:
    """Cut the last (time) axis of ``x [B, C, L]`` into overlapping patches.

    Patch ``p`` covers frames ``p·stride … p·stride + patch_len - 1``; trailing
    frames that do not fill a patch are dropped (PatchTST pads the end instead;
    with ``L = 32, patch_len = 8, stride = 4`` nothing is dropped).

    Returns:
        ``[B, C, n_patches, patch_len]`` with ``n_patches = (L - patch_len) // stride + 1``.

    Examples:
        >>> make_patches(torch.arange(12.).reshape(1, 1, 12), 4, 4)[0, 0]
        tensor([[ 0.,  1.,  2.,  3.],
                [ 4.,  5.,  6.,  7.],
                [ 8.,  9., 10., 11.]])
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape [B, C, L], got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must have shape [B, C, L], got {tuple(x.shape)}")
    _check_patching(x.shape[-1], patch_len, stride)
    return x.unfold(-1, patch_len, stride)


# --------------------------------------------------------------------------- windows
def window_offsets(window: int, anchor: Anchor = "centred") -> Tensor:
    """Frame offsets ``[W]`` (relative to the anchor frame ``t``) that a window covers.

    Examples:
        >>> window_offsets(4, "causal").tolist(), window_offsets(4, "centred").tolist()
        ([-3, -2, -1, 0], [-2, -1, 0, 1])
    """
    if int(window) <= 0:
        raise ValueError(f"window must be a positive number of frames, got {window}")
    if anchor == "causal":
        return torch.arange(-window + 1, 1)
    if anchor in ("centred", "centered"):
        return torch.arange(window) - window // 2
    raise ValueError(f"anchor must be 'causal' or 'centred', got {anchor!r}")


def sliding_windows(
    track,
    window: int = 32,
    anchor: Anchor = "centred",
    pad: Literal["edge", "zeros"] = "edge",
) -> Tensor:
    """One window of ``window`` frames per frame of ``track``.

    The window of frame ``t`` covers (see :func:`window_offsets`):

    * ``anchor="centred"`` (default): frames ``t - window//2 … t + window//2 - 1``
      (``t-16 … t+15`` for 32 frames) — uses the future, good for offline rendering;
    * ``anchor="causal"``: frames ``t - window + 1 … t`` (``t-31 … t``) — never
      looks ahead, good for streaming.

    Frames before 0 or after ``T-1`` are filled with ``pad="edge"`` (repeat the
    first / last frame; default) or ``pad="zeros"`` (AU intensity 0 = neutral).
    A window longer than the track is therefore allowed.

    Args:
        track: ``[T, C]`` or batched ``[B, T, C]`` (tensor, array, or an object
            with ``.values`` such as ``aus.AUTrack``).
        window: ``W`` frames per window.

    Returns:
        ``[T, C, W]`` (or ``[B, T, C, W]``) float tensor; ``out[t, c, W//2]`` (centred)
        or ``out[t, c, -1]`` (causal) is ``track[t, c]``.

    Raises:
        ValueError: wrong shape, empty track, bad window/anchor/pad, or NaN/inf
            (naming the frame and channel).

    Examples:
        >>> tr = torch.arange(5.).reshape(5, 1)
        >>> sliding_windows(tr, 4, "causal")[:, 0].tolist()[:2]
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
        >>> sliding_windows(tr, 4, "centred")[2, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    t = _as_track(track, "track")
    if t.ndim not in (2, 3):
        raise ValueError(f"track must have shape [T, C] or [B, T, C], got {tuple(t.shape)}")
    if t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"track is empty (shape {tuple(t.shape)}); need at least one frame and channel")
    if pad not in ("edge", "zeros"):
        raise ValueError(f"pad must be 'edge' or 'zeros', got {pad!r}")
    offsets = window_offsets(window, anchor).to(t.device)
    _check_finite_track(t, "track")
    T = t.shape[-2]
    idx = torch.arange(T, device=t.device)[:, None] + offsets[None, :]  # [T, W]
    inside = (idx >= 0) & (idx < T)
    g = t[..., idx.clamp(0, T - 1), :]  # [..., T, W, C]
    if pad == "zeros":
        g = g * inside[..., None].to(g.dtype)
    return g.transpose(-1, -2).contiguous()  # [..., T, C, W]


# --------------------------------------------------------------------------- models
class _Pretext:
    """Shared pretext-task helpers of the two encoders (see :func:`fit_reconstruction`)."""

    window: int
    anchor: Anchor

    @property
    def anchor_index(self) -> int:
        """Position of the anchor frame inside a window (``W//2`` centred, ``W-1`` causal)."""
        return int((window_offsets(self.window, self.anchor) == 0).nonzero()[0, 0])

    def denoise(self, au_track) -> Tensor:
        """The pretext output at the anchor frame: a denoised ``[B, T, C]`` (or ``[T, C]``) track."""
        return self.reconstruct(au_track)[..., self.anchor_index]  # type: ignore[attr-defined]


def _require_pretext(model: nn.Module) -> None:
    if getattr(model, "recon", None) is None:
        raise RuntimeError(
            f"{type(model).__name__} was built with pretext=False: it has no decoder for "
            "reconstruct / denoise / fit_reconstruction"
        )


def _track_and_frames(au_track, n_aus: int, frames) -> tuple[Tensor, Tensor | None, bool]:
    t = _as_track(au_track, "au_track")
    if t.ndim not in (2, 3) or t.shape[-1] != n_aus:
        raise ValueError(f"au_track must have shape [T, {n_aus}] or [B, T, {n_aus}], got {tuple(t.shape)}")
    if t.shape[-2] == 0:
        raise ValueError("au_track has no frames; need at least one")
    _check_finite_track(t, "au_track")
    unbatched = t.ndim == 2
    if unbatched:
        t = t[None]
    if frames is not None:
        frames = torch.as_tensor(frames, dtype=torch.long, device=t.device).reshape(-1)
        T = t.shape[1]
        if frames.numel() and (int(frames.min()) < -T or int(frames.max()) >= T):
            raise ValueError(
                f"frames must index the track's {T} frames, got range [{int(frames.min())}, {int(frames.max())}]"
            )
    return t, frames, unbatched


class PerChannelLinear(nn.Module):
    """``C`` independent linear maps ``[..., C, i] → [..., C, o]``, one per channel (as
    ``nn.Linear`` each, initialised like it): CIT-AE's per-AU level embedding."""

    def __init__(self, channels: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(channels, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("...ci,cio->...co", x, self.weight) + self.bias


class CITAE(_Pretext, nn.Module):
    """Channel-Independent Temporal AU Encoder: one token per AU per frame.

    Args:
        n_aus: number of AU channels ``C`` (17).
        window: frames per window ``W``.
        patch_len, stride: patching of each window (``P = (W - patch_len)//stride + 1``).
        d_model: token width ``d``.
        n_layers: Transformer encoder layers over the ``P`` patches (1–2 is plenty).
        n_heads: attention heads (must divide ``d_model``).
        anchor: ``"centred"`` (default, offline) or ``"causal"`` (streaming), see
            :func:`sliding_windows`.
        revin: normalise each window per channel (RevIN) before patching.
        revin_eps: RevIN's variance floor, in AU intensity² units. 0.5 (a std floor of
            ≈ 0.7, under one FACS intensity grade) rather than RevIN's usual 1e-5: a
            window that barely moves is mostly detector noise, and a tiny eps would blow
            that noise up to unit variance (an inactive AU's token would then jitter as
            much as an active one's). Real motion of a grade or more is still normalised.
        level_embedding: add a linear embedding of each window's RevIN mean and log-std
            back to its token; without it the token would only see the *shape* of the
            window and not how strong the AU is. ``True`` / ``"shared"``: one embedding for
            every channel, so every AU's intensity moves its token along the *same*
            direction; ``"per_au"``: each AU has its own (token ``k`` still depends on AU
            ``k``'s series only: channel independence holds). ``False``: none.
            ``benchmarks/au_path.py`` measures how fast each learns AU → face motion.
        dropout: dropout in the Transformer (0 keeps training deterministic).
        pretext: build the pretext decoder ``recon`` used by :meth:`reconstruct` and
            :func:`fit_reconstruction`. Pass False inside a larger model that never calls
            them (an unused parameter upsets DistributedDataParallel).

    Channel independence: every layer works on one channel's window at a time
    (channels are folded into the batch), RevIN's statistics and affine are per
    channel, and the AU identity embedding is a per-channel constant added after
    the encoder — so token ``k`` is a function of AU ``k``'s series only.

    Shapes:
        ``forward(au_track [B, T, C]) -> [B, T, C, d]``; an unbatched ``[T, C]`` gives
        ``[T, C, d]`` (torch's convention for unbatched inputs).
        ``encode_windows(windows [N, C, W]) -> [N, C, d]``.

    Examples:
        >>> enc = CITAE(d_model=16)
        >>> enc(torch.rand(2, 50, 17)).shape
        torch.Size([2, 50, 17, 16])
    """

    def __init__(
        self,
        n_aus: int = 17,
        window: int = 32,
        patch_len: int = 8,
        stride: int = 4,
        d_model: int = 32,
        n_layers: int = 1,
        n_heads: int = 4,
        anchor: Anchor = "centred",
        revin: bool = True,
        revin_eps: float = 0.5,
        level_embedding: bool | str = True,
        dropout: float = 0.0,
        pretext: bool = True,
    ) -> None:
        super().__init__()
        if n_aus <= 0:
            raise ValueError(f"n_aus must be positive, got {n_aus}")
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be positive and divisible by n_heads ({n_heads})")
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_patches = n_patches(window, patch_len, stride)  # validates window / patch_len / stride
        window_offsets(window, anchor)  # validates anchor
        self.n_aus, self.window, self.patch_len, self.stride = int(n_aus), int(window), int(patch_len), int(stride)
        self.d_model, self.anchor = int(d_model), anchor

        self.revin = RevIN(n_aus, eps=revin_eps, affine=True) if revin else None
        # shared across channels: patch embedding + learnable positional embedding over patches
        self.patch_embed = nn.Linear(patch_len, d_model)
        self.pos_embed = nn.Parameter(torch.randn(self.n_patches, d_model) * 0.02)
        # shared temporal encoder over the patches of one channel's window
        if n_layers > 0:
            layer = nn.TransformerEncoderLayer(
                d_model,
                n_heads,
                dim_feedforward=2 * d_model,
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )
            self.encoder: nn.Module = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.Identity()
        self.norm = nn.LayerNorm(d_model)
        # flatten head (PatchTST): all patch features of a window -> one d-dim token
        self.head = nn.Linear(self.n_patches * d_model, d_model)
        if level_embedding not in (True, False, None, "shared", "per_au"):
            raise ValueError(f"level_embedding must be True/'shared', 'per_au' or False, got {level_embedding!r}")
        self.level: nn.Module | None = None
        if level_embedding == "per_au":
            self.level = PerChannelLinear(n_aus, 2, d_model)
        elif level_embedding:
            self.level = nn.Linear(2, d_model)
        # which-AU identity, added after the shared encoder (a constant per channel)
        self.au_embed = nn.Parameter(torch.randn(n_aus, d_model) * 0.02)
        # pretext decoder (fit_reconstruction): token -> its window, in RevIN-normalised units
        self.recon = nn.Linear(d_model, window) if pretext else None

    def _check_windows(self, windows: Tensor) -> None:
        if not isinstance(windows, Tensor):
            raise ValueError(f"windows must be a tensor [N, {self.n_aus}, {self.window}], got {type(windows).__name__}")
        check_shape(windows, "windows", ("N", self.n_aus, self.window), "; axes are (batch, AU, frames)")
        bad = ~torch.isfinite(windows.detach())
        if bool(bad.any()):
            n, c, w = bad.nonzero()[0].tolist()
            raise ValueError(
                f"windows contain NaN/inf at window {n}, channel {c}{_au_label(c, self.n_aus)}, position {w}"
            )

    def _encode(self, windows: Tensor) -> Tensor:
        """Tokens ``[N, C, d]`` before the AU embedding (RevIN stats left on ``self.revin``)."""
        self._check_windows(windows)
        N, C, W = windows.shape
        windows = windows.to(self.pos_embed.dtype)
        if self.revin is not None:
            x = self.revin(windows, "norm")
            mean, std = self.revin.mean, self.revin.stdev
        else:
            x = windows
            mean = windows.mean(-1, keepdim=True)
            std = torch.sqrt(windows.var(-1, keepdim=True, unbiased=False) + 0.1)
        p = make_patches(x, self.patch_len, self.stride)  # [N, C, P, patch_len]
        z = self.patch_embed(p) + self.pos_embed  # [N, C, P, d]
        z = z.reshape(N * C, self.n_patches, self.d_model)  # channels folded into the batch
        z = self.norm(self.encoder(z))
        tok = self.head(z.reshape(N, C, self.n_patches * self.d_model))  # [N, C, d]
        if self.level is not None:
            tok = tok + self.level(torch.cat([mean, torch.log(std)], dim=-1))
        return tok

    def encode_windows(self, windows: Tensor) -> Tensor:
        """Tokens ``[N, C, d]`` of windows ``[N, C, W]`` (one window per AU channel)."""
        return self._encode(windows) + self.au_embed

    def windows(self, au_track) -> Tensor:
        """The model's windows of ``au_track [B, T, C]`` → ``[B, T, C, W]`` (edge padded)."""
        t, _, _ = _track_and_frames(au_track, self.n_aus, None)
        return sliding_windows(t, self.window, self.anchor, "edge")

    def forward(self, au_track, frames=None) -> Tensor:
        """Tokens ``[B, T, C, d]`` of ``au_track [B, T, C]`` (``[T, C] -> [T, C, d]``).

        All ``B · T`` windows of all channels go through the encoder in one batch. With
        ``frames`` (``[F]`` indices), only those frames' windows are encoded → ``[B, F, C, d]``
        (the same values: each token reads its own window only).
        """
        t, frames, unbatched = _track_and_frames(au_track, self.n_aus, frames)
        w = sliding_windows(t, self.window, self.anchor, "edge")  # [B, T, C, W]
        if frames is not None:
            w = w[:, frames]
        B, T = w.shape[:2]
        tok = self.encode_windows(w.reshape(B * T, self.n_aus, self.window))
        tok = tok.reshape(B, T, self.n_aus, self.d_model)
        return tok[0] if unbatched else tok

    def reconstruct(self, au_track, frames=None) -> Tensor:
        """Pretext output: each token decoded back to its (clean) window.

        The shared ``recon`` head maps a token to ``W`` RevIN-normalised values, which
        are denormalised with that window's own statistics.

        Args:
            au_track: ``[B, T, C]`` or ``[T, C]``.
            frames: optional ``[F]`` frame indices to decode (default: all ``T``).

        Returns:
            ``[B, F, C, W]`` (``[F, C, W]`` unbatched): the reconstructed window of
            every selected frame; ``[..., anchor_index]`` is the frame itself.
        """
        _require_pretext(self)
        t, frames, unbatched = _track_and_frames(au_track, self.n_aus, frames)
        w = sliding_windows(t, self.window, self.anchor, "edge")
        if frames is not None:
            w = w[:, frames]
        B, F = w.shape[:2]
        tok = self.encode_windows(w.reshape(B * F, self.n_aus, self.window))
        y = self.recon(tok)  # [B*F, C, W]
        if self.revin is not None:
            y = self.revin(y, "denorm")  # statistics of the windows just encoded
        y = y.reshape(B, F, self.n_aus, self.window)
        return y[0] if unbatched else y


class PerFrameAUEncoder(_Pretext, nn.Module):
    """Baseline: a per-frame MLP over the 17 AU values (no temporal context).

    ``tokens[t] = reshape(MLP(au[t]), [17, d])`` — every token sees every AU of the
    same frame and nothing of the neighbouring frames.

    Args:
        n_aus, d_model: as :class:`CITAE`.
        hidden: MLP width.
        window, anchor: only used by the pretext decoder, which (like CIT-AE's)
            predicts the clean window around each frame — from that frame alone.
        pretext: build that decoder (see :class:`CITAE`).

    Shapes:
        ``forward(au_track [B, T, C]) -> [B, T, C, d]`` (``[T, C] -> [T, C, d]``).

    Examples:
        >>> PerFrameAUEncoder(d_model=8)(torch.rand(30, 17)).shape
        torch.Size([30, 17, 8])
    """

    def __init__(
        self,
        n_aus: int = 17,
        d_model: int = 32,
        hidden: int = 128,
        window: int = 32,
        anchor: Anchor = "centred",
        pretext: bool = True,
    ) -> None:
        super().__init__()
        if n_aus <= 0 or d_model <= 0 or hidden <= 0:
            raise ValueError(f"n_aus, d_model and hidden must be positive, got {n_aus}, {d_model}, {hidden}")
        window_offsets(window, anchor)  # validates
        self.n_aus, self.d_model, self.window, self.anchor = int(n_aus), int(d_model), int(window), anchor
        self.mlp = nn.Sequential(
            nn.Linear(n_aus, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_aus * d_model),
        )
        self.recon = nn.Linear(d_model, window) if pretext else None

    def forward(self, au_track, frames=None) -> Tensor:
        """Tokens ``[B, T, C, d]`` of ``au_track [B, T, C]`` (``[T, C] -> [T, C, d]``); with
        ``frames`` (``[F]`` indices) those frames' only → ``[B, F, C, d]``."""
        t, frames, unbatched = _track_and_frames(au_track, self.n_aus, frames)
        if frames is not None:
            t = t[:, frames]
        t = t.to(self.mlp[0].weight.dtype)
        tok = self.mlp(t).reshape(*t.shape[:-1], self.n_aus, self.d_model)
        return tok[0] if unbatched else tok

    def reconstruct(self, au_track, frames=None) -> Tensor:
        """Pretext output ``[B, F, C, W]``: the window around each frame, guessed from that frame."""
        _require_pretext(self)
        t, frames, unbatched = _track_and_frames(au_track, self.n_aus, frames)
        if frames is not None:
            t = t[:, frames]
        y = self.recon(self.forward(t))
        return y[0] if unbatched else y


def fit_reconstruction(
    model: CITAE | PerFrameAUEncoder,
    noisy,
    clean,
    steps: int = 100,
    lr: float = 3e-3,
    batch_frames: int = 32,
    seed: int | None = 0,
) -> list[float]:
    """Briefly train an encoder on a denoising pretext task; returns the loss per step.

    Each step draws ``batch_frames`` random frames and minimises
    ``mean((model.reconstruct(noisy, frames) - windows(clean)[frames])²)`` with Adam:
    from frame ``t``'s tokens, recover the *clean* window around ``t``. Both encoders
    see the same noisy input and the same smooth target; only CIT-AE can use the
    neighbouring frames to tell detector noise from facial motion. (A freshly
    initialised CIT-AE is *not* smoother than the per-frame MLP — random patch
    filters pass frame-to-frame noise; smoothness is learned.)

    Args:
        model: a :class:`CITAE` or :class:`PerFrameAUEncoder` (trained in place, left in eval mode).
        noisy, clean: ``[T, C]`` or ``[B, T, C]``, same shape.
        batch_frames: frames per step (all ``C`` channels of each frame are used).
        seed: seeds the frame sampling (None: use the global RNG).
    """
    _require_pretext(model)
    x = _as_track(noisy, "noisy")
    y = _as_track(clean, "clean")
    if x.shape != y.shape:
        raise ValueError(f"noisy {tuple(x.shape)} and clean {tuple(y.shape)} must have the same shape")
    if int(steps) <= 0 or int(batch_frames) <= 0:
        raise ValueError(f"steps and batch_frames must be positive, got {steps}, {batch_frames}")
    target = sliding_windows(y, model.window, model.anchor, "edge")  # [(B,) T, C, W]
    T = x.shape[-2]
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    for _ in range(int(steps)):
        frames = torch.randint(0, T, (min(int(batch_frames), T),), generator=gen)
        opt.zero_grad()
        loss = torch.mean((model.reconstruct(x, frames) - target[..., frames, :, :]) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    if not math.isfinite(losses[-1]):
        raise RuntimeError("fit_reconstruction diverged (non-finite loss); lower lr")
    return losses
