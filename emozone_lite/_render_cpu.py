"""Tile-based CPU rasterizer: numba kernels and their ``torch.autograd.Function``.

This is the fast twin of :func:`emozone_lite.render._rasterize_pixels_torch`; the
tests hold it to the readable version, values and gradients. It follows gsplat
1.5.3's CUDA kernels (``RasterizeToPixels3DGSFwd.cu`` / ``...Bwd.cu``) rule for rule:

* a Gaussian is binned into every tile its ``radii`` box touches; each tile's list
  is sorted front to back by depth (stable: ties keep the Gaussian order);
* per pixel (centre at ``+0.5``): ``sigma = 0.5 (a dx² + c dy²) + b dx dy`` with
  ``d = mean2d - pixel``, ``alpha = min(0.999, opacity · exp(-sigma))``; skip the
  Gaussian when ``sigma < 0`` or ``alpha < 1/255``; stop *before* a Gaussian that
  would bring the transmittance to ``≤ 1e-4`` (it is not composited);
* the forward pass stores the final transmittance ``T`` and the index of the last
  composited Gaussian per pixel; the backward pass walks back to front from it,
  recovering ``T`` by division and keeping the colour of what lies behind.

Differences from the GPU layout, none visible in the results:

* Inside a tile the loops run *Gaussian-outer, pixel-inner* (each pixel still sees
  its Gaussians front to back) and visit only the bounding box of the ellipse
  ``sigma <= ln(255 · opacity) + 1e-3``, skipping (without an ``exp``) the pixels
  outside that ellipse. There ``alpha < 1/255`` holds, so the skipped pixels are
  exactly ones the GPU skips too. Rows whose pixels are all finished are skipped,
  and a tile stops when all its pixels are.
* Gradients are written to one slot per (tile, Gaussian) intersection — each slot
  is owned by one tile, so parallel tiles never race — and summed per Gaussian
  afterwards. The result is deterministic.
* Backgrounds are composited in torch by the caller (``colour + (1 - alpha) ·
  background``), so their gradient comes from autograd.

All kernels work in float32 with ``fastmath`` off, so forward and backward make
bit-identical skip / stop decisions. They are compiled once and cached on disk
(``cache=True``); the first call in a fresh checkout takes a few seconds.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["bin_gaussians", "rasterize_to_pixels_cpu", "RasterizeToPixelsCPU"]

_F32 = np.float32
ALPHA_THRESHOLD = _F32(1.0 / 255.0)
MAX_ALPHA = _F32(0.999)
T_STOP = _F32(1e-4)
_HALF = _F32(0.5)
_ONE = _F32(1.0)
#: Margins that keep the skipped region strictly where ``alpha < 1/255``: float32
#: rounding moves sigma by ~1e-5 at most, far less than ``_SIGMA_MARGIN``, and the
#: float64 box arithmetic is far more precise than ``_PIXEL_MARGIN`` (pixels).
_SIGMA_MARGIN = 1e-3
_PIXEL_MARGIN = 1e-4


# --------------------------------------------------------------------------- binning
@numba.njit(cache=True)
def _argsort_stable(x):
    """Indices that sort the float32 array ``x`` ascending, ties in index order.

    The same result as ``np.argsort(x, kind="stable")`` (``-0.0`` counts as ``0.0``),
    as an LSD radix sort over three 11-bit digits of the float's bits, made
    monotonic by the usual flip (negative: all bits; positive: the sign bit).
    About 10× faster than a merge sort for the tens of thousands of depths here.
    """
    n = x.size
    bits = x.view(np.uint32)
    keys = np.empty(n, np.uint32)
    for i in range(n):
        k = bits[i]
        if k == np.uint32(0x80000000):  # -0.0 sorts as 0.0
            k = np.uint32(0)
        keys[i] = ~k if k >> np.uint32(31) else k | np.uint32(0x80000000)
    idx = np.arange(n)
    tmp = np.empty(n, idx.dtype)
    count = np.empty(2049, np.int64)
    for shift in (0, 11, 22):
        count[:] = 0
        for i in range(n):
            count[((keys[i] >> np.uint32(shift)) & np.uint32(2047)) + 1] += 1
        for b in range(2048):
            count[b + 1] += count[b]
        for i in range(n):  # stable: equal digits keep the order of the previous pass
            g = idx[i]
            d = (keys[g] >> np.uint32(shift)) & np.uint32(2047)
            tmp[count[d]] = g
            count[d] += 1
        idx, tmp = tmp, idx
    return idx


@numba.njit(cache=True)
def _bin_kernel(means2d, radii, depths, tile_size, tile_width, tile_height):
    C, N = depths.shape
    n_tiles = tile_width * tile_height
    ts = _F32(tile_size)
    rect = np.zeros((C, N, 4), np.int32)  # tile x0, x1, y0, y1 (end exclusive)
    counts = np.zeros(C * n_tiles, np.int64)
    for c in range(C):
        for n in range(N):
            if radii[c, n, 0] <= 0 or radii[c, n, 1] <= 0:
                continue
            # gsplat's isect_tiles: floor/ceil of (mean ± radius) / tile_size
            mx = means2d[c, n, 0] / ts
            my = means2d[c, n, 1] / ts
            rx = _F32(radii[c, n, 0]) / ts
            ry = _F32(radii[c, n, 1]) / ts
            x0 = min(max(math.floor(mx - rx), 0.0), float(tile_width))
            x1 = min(max(math.ceil(mx + rx), 0.0), float(tile_width))
            y0 = min(max(math.floor(my - ry), 0.0), float(tile_height))
            y1 = min(max(math.ceil(my + ry), 0.0), float(tile_height))
            rect[c, n, 0] = int(x0)
            rect[c, n, 1] = int(x1)
            rect[c, n, 2] = int(y0)
            rect[c, n, 3] = int(y1)
            for ty in range(int(y0), int(y1)):
                for tx in range(int(x0), int(x1)):
                    counts[c * n_tiles + ty * tile_width + tx] += 1
    offsets = np.zeros(C * n_tiles + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    # Counting sort: visit Gaussians front to back and append each to its tiles,
    # so every tile's list comes out depth-sorted without sorting per tile.
    for c in range(C):
        order = _argsort_stable(depths[c])  # stable, like gsplat's radix sort
        cursor = offsets[c * n_tiles:(c + 1) * n_tiles].copy()
        for k in range(N):
            n = order[k]
            for ty in range(rect[c, n, 2], rect[c, n, 3]):
                for tx in range(rect[c, n, 0], rect[c, n, 1]):
                    t = ty * tile_width + tx
                    ids[cursor[t]] = n
                    cursor[t] += 1
    return offsets, ids


def bin_gaussians(means2d: np.ndarray, radii: np.ndarray, depths: np.ndarray, tile_size: int,
                  tile_width: int, tile_height: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile lists of Gaussians, each sorted front to back.

    Args:
        means2d: ``[C, N, 2]`` float32 pixel positions.
        radii: ``[C, N, 2]`` int32 box half-sizes; ``0`` means culled.
        depths: ``[C, N]`` float32 camera-space z.
        tile_size, tile_width, tile_height: tile edge in pixels and the tile grid.

    Returns:
        ``offsets [C * tile_height * tile_width + 1]`` int64 and ``ids [n_isects]``
        int32: tile ``t`` of camera ``c`` holds Gaussians
        ``ids[offsets[c * T + t] : offsets[c * T + t + 1]]`` (indices into N).
    """
    return _bin_kernel(means2d, radii, depths, tile_size, tile_width, tile_height)


# --------------------------------------------------------------------------- pixel boxes
@numba.njit(cache=True)
def _box_kernel(means2d, conics, opacities, radii, width, height):
    """Per Gaussian: where it can reach ``alpha >= 1/255``, in float64.

    ``alpha = opacity · exp(-sigma) >= 1/255`` needs ``sigma <= ln(255 · opacity)``,
    an ellipse for a positive-definite conic. Returns ``sig_max [C, N]`` float32 (that
    bound plus a small margin; ``-1`` = never visible) and ``boxes [C, N, 4]`` int32,
    the pixels ``x0, x1, y0, y1`` (ends exclusive, clipped to the image) whose centres
    lie in the ellipse's bounding box. The kernels visit only those pixels and skip
    the ones with ``sigma > sig_max``, where ``alpha < 1/255`` holds, so every pixel
    they skip is one the GPU skips too. Only the conic and opacity matter — like
    gsplat, ``radii`` just bins into tiles. A conic that is not positive definite
    gets the whole image.
    """
    C, N = opacities.shape
    sig_max = np.full((C, N), -1.0, np.float32)
    boxes = np.zeros((C, N, 4), np.int32)
    for c in range(C):
        for g in range(N):
            op = opacities[c, g]
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0 or not op >= ALPHA_THRESHOLD:
                continue
            s = math.log(op / ALPHA_THRESHOLD) + _SIGMA_MARGIN
            sig_max[c, g] = _F32(s)
            a = float(conics[c, g, 0])
            b = float(conics[c, g, 1])
            cc = float(conics[c, g, 2])
            det = a * cc - b * b
            if a > 0.0 and cc > 0.0 and det > 0.0:
                # ½ dᵀ Q d <= s spans |dx| <= sqrt(2 s (Q⁻¹)ₓₓ), |dy| <= sqrt(2 s (Q⁻¹)ᵧᵧ);
                # keep the pixels whose centre px + 0.5 lies within that of the mean
                hx = math.sqrt(2.0 * s * cc / det)
                hy = math.sqrt(2.0 * s * a / det)
                mx = float(means2d[c, g, 0])
                my = float(means2d[c, g, 1])
                x0 = np.ceil(mx - hx - 0.5 - _PIXEL_MARGIN)
                x1 = np.floor(mx + hx - 0.5 + _PIXEL_MARGIN) + 1.0
                y0 = np.ceil(my - hy - 0.5 - _PIXEL_MARGIN)
                y1 = np.floor(my + hy - 0.5 + _PIXEL_MARGIN) + 1.0
                boxes[c, g, 0] = int(max(0.0, min(float(width), x0)))
                boxes[c, g, 1] = int(max(0.0, min(float(width), x1)))
                boxes[c, g, 2] = int(max(0.0, min(float(height), y0)))
                boxes[c, g, 3] = int(max(0.0, min(float(height), y1)))
            else:  # not an ellipse
                boxes[c, g, 1] = width
                boxes[c, g, 3] = height
    return sig_max, boxes


@numba.njit(cache=True, inline="always")
def _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height):
    """Camera and pixel rectangle ``px0, px1, py0, py1`` (ends exclusive) of tile ``ct``."""
    c = ct // tiles_per_cam
    t = ct - c * tiles_per_cam
    px0 = (t % tile_width) * tile_size
    py0 = (t // tile_width) * tile_size
    return c, px0, min(px0 + tile_size, width), py0, min(py0 + tile_size, height)


@numba.njit(cache=True, inline="always")
def _box_in_tile(boxes, c, g, px0, px1, py0, py1):
    """The part ``xs, xe, ys, ye`` of Gaussian ``g``'s pixel box inside the tile (may be empty)."""
    return (max(boxes[c, g, 0], px0), min(boxes[c, g, 1], px1),
            max(boxes[c, g, 2], py0), min(boxes[c, g, 3], py1))


@numba.njit(cache=True, inline="always")
def _gaussian_2d(means2d, conics, opacities, c, g):
    """``mx, my, a, b, c, opacity`` of projected Gaussian ``g`` in camera ``c``."""
    return (means2d[c, g, 0], means2d[c, g, 1], conics[c, g, 0], conics[c, g, 1], conics[c, g, 2],
            opacities[c, g])


@numba.njit(cache=True, inline="always")
def _sigma(ca, cb, cc, dx, dy):
    """``½ dᵀ Q d`` — one float32 expression for both passes, so they skip the same pixels."""
    return _HALF * (ca * dx * dx + cc * dy * dy) + cb * dx * dy


# --------------------------------------------------------------------------- forward
@numba.njit(cache=True, parallel=True)
def _fwd_kernel(means2d, conics, colors, opacities, sig_max, boxes, offsets, ids, tile_order, width, height, tile_size,
                tile_width):
    C, N, D = colors.shape
    n_tiles = offsets.shape[0] - 1
    tiles_per_cam = n_tiles // C
    out_colors = np.zeros((C, height, width, D), np.float32)
    out_T = np.ones((C, height, width), np.float32)
    out_last = np.full((C, height, width), -1, np.int32)
    for i in numba.prange(n_tiles):
        ct = tile_order[i]
        c, px0, px1, py0, py1 = _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height)
        tw = px1 - px0
        npix = tw * (py1 - py0)
        T = np.ones(npix, np.float32)
        acc = np.zeros((npix, D), np.float32)
        last = np.full(npix, -1, np.int32)
        done = np.zeros(npix, np.bool_)
        row_done = np.zeros(py1 - py0, np.int32)  # finished pixels per row
        n_done = 0
        start = offsets[ct]
        for j in range(offsets[ct + 1] - start):
            if n_done == npix:  # every pixel of the tile is opaque: stop early
                break
            g = ids[start + j]
            xs, xe, ys, ye = _box_in_tile(boxes, c, g, px0, px1, py0, py1)
            if xs >= xe or ys >= ye or sig_max[c, g] < 0:
                continue
            s_max = sig_max[c, g]
            mx, my, ca, cb, cc, op = _gaussian_2d(means2d, conics, opacities, c, g)
            for py in range(ys, ye):
                if row_done[py - py0] == tw:
                    continue
                dy = my - (_F32(py) + _HALF)
                row = (py - py0) * tw - px0
                for px in range(xs, xe):
                    p = row + px
                    if done[p]:
                        continue
                    dx = mx - (_F32(px) + _HALF)
                    sigma = _sigma(ca, cb, cc, dx, dy)
                    if sigma < 0 or sigma > s_max:
                        continue
                    alpha = min(MAX_ALPHA, op * np.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    next_T = T[p] * (_ONE - alpha)
                    if next_T <= T_STOP:  # this pixel is done; the Gaussian is not composited
                        done[p] = True
                        n_done += 1
                        row_done[py - py0] += 1
                        continue
                    vis = alpha * T[p]
                    for k in range(D):
                        acc[p, k] += colors[c, g, k] * vis
                    T[p] = next_T
                    last[p] = j
        for py in range(py0, py1):
            for px in range(px0, px1):
                p = (py - py0) * tw + px - px0
                out_T[c, py, px] = T[p]
                out_last[c, py, px] = last[p]
                for k in range(D):
                    out_colors[c, py, px, k] = acc[p, k]
    return out_colors, out_T, out_last


# --------------------------------------------------------------------------- backward
@numba.njit(cache=True, parallel=True)
def _bwd_kernel(means2d, conics, colors, opacities, sig_max, boxes, offsets, ids, tile_order, width, height, tile_size,
                tile_width, T_final, last_ids, v_colors_out, v_alphas_out):
    C, N, D = colors.shape
    n_tiles = offsets.shape[0] - 1
    tiles_per_cam = n_tiles // C
    n_isects = ids.shape[0]
    # one gradient row per intersection: v_mean2d (2), v_conic (3), v_opacity (1), v_color (D)
    grads = np.zeros((n_isects, 6 + D), np.float32)
    for i in numba.prange(n_tiles):
        ct = tile_order[i]
        c, px0, px1, py0, py1 = _tile_rect(ct, tiles_per_cam, tile_width, tile_size, width, height)
        tw = px1 - px0
        npix = tw * (py1 - py0)
        start = offsets[ct]
        if offsets[ct + 1] == start:
            continue
        T = np.empty(npix, np.float32)
        Tf = np.empty(npix, np.float32)
        last = np.empty(npix, np.int32)
        row_last = np.full(py1 - py0, -1, np.int32)  # last composited index per row
        v_a = np.empty(npix, np.float32)
        v_c = np.empty((npix, D), np.float32)
        behind = np.zeros((npix, D), np.float32)  # colour composited behind the current Gaussian
        for py in range(py0, py1):
            for px in range(px0, px1):
                p = (py - py0) * tw + px - px0
                T[p] = T_final[c, py, px]
                Tf[p] = T_final[c, py, px]
                last[p] = last_ids[c, py, px]
                row_last[py - py0] = max(row_last[py - py0], last[p])
                v_a[p] = v_alphas_out[c, py, px]
                for k in range(D):
                    v_c[p, k] = v_colors_out[c, py, px, k]
        j_max = -1
        for r in range(py1 - py0):
            j_max = max(j_max, row_last[r])
        v_rgb = np.zeros(D, np.float32)
        for j in range(j_max, -1, -1):
            g = ids[start + j]
            xs, xe, ys, ye = _box_in_tile(boxes, c, g, px0, px1, py0, py1)
            if xs >= xe or ys >= ye or sig_max[c, g] < 0:
                continue
            s_max = sig_max[c, g]
            mx, my, ca, cb, cc, op = _gaussian_2d(means2d, conics, opacities, c, g)
            v_mx = _F32(0.0)
            v_my = _F32(0.0)
            v_ca = _F32(0.0)
            v_cb = _F32(0.0)
            v_cc = _F32(0.0)
            v_op = _F32(0.0)
            for k in range(D):
                v_rgb[k] = 0.0
            touched = False
            for py in range(ys, ye):
                if j > row_last[py - py0]:  # behind every pixel's last Gaussian in this row
                    continue
                dy = my - (_F32(py) + _HALF)
                row = (py - py0) * tw - px0
                for px in range(xs, xe):
                    p = row + px
                    if j > last[p]:  # behind this pixel's last composited Gaussian
                        continue
                    dx = mx - (_F32(px) + _HALF)
                    sigma = _sigma(ca, cb, cc, dx, dy)
                    if sigma < 0 or sigma > s_max:
                        continue
                    vis = np.exp(-sigma)
                    alpha = min(MAX_ALPHA, op * vis)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    touched = True
                    ra = _ONE / (_ONE - alpha)
                    T[p] *= ra  # transmittance in front of this Gaussian
                    fac = alpha * T[p]
                    v_alpha = _F32(0.0)
                    for k in range(D):
                        v_rgb[k] += fac * v_c[p, k]
                        v_alpha += (colors[c, g, k] * T[p] - behind[p, k] * ra) * v_c[p, k]
                    v_alpha += Tf[p] * ra * v_a[p]
                    if op * vis <= MAX_ALPHA:  # alpha not clamped: sigma and opacity get gradients
                        v_sigma = -op * vis * v_alpha
                        v_ca += _HALF * v_sigma * dx * dx
                        v_cb += v_sigma * dx * dy
                        v_cc += _HALF * v_sigma * dy * dy
                        v_mx += v_sigma * (ca * dx + cb * dy)
                        v_my += v_sigma * (cb * dx + cc * dy)
                        v_op += vis * v_alpha
                    for k in range(D):
                        behind[p, k] += colors[c, g, k] * fac
            if touched:
                r = start + j
                grads[r, 0] = v_mx
                grads[r, 1] = v_my
                grads[r, 2] = v_ca
                grads[r, 3] = v_cb
                grads[r, 4] = v_cc
                grads[r, 5] = v_op
                for k in range(D):
                    grads[r, 6 + k] = v_rgb[k]
    # sum the intersection rows per Gaussian (serial: cheap, and one parallel region is enough)
    v_means2d = np.zeros((C, N, 2), np.float32)
    v_conics = np.zeros((C, N, 3), np.float32)
    v_opacities = np.zeros((C, N), np.float32)
    v_colors = np.zeros((C, N, D), np.float32)
    for c in range(C):
        for r in range(offsets[c * tiles_per_cam], offsets[(c + 1) * tiles_per_cam]):
            g = ids[r]
            v_means2d[c, g, 0] += grads[r, 0]
            v_means2d[c, g, 1] += grads[r, 1]
            v_conics[c, g, 0] += grads[r, 2]
            v_conics[c, g, 1] += grads[r, 3]
            v_conics[c, g, 2] += grads[r, 4]
            v_opacities[c, g] += grads[r, 5]
            for k in range(D):
                v_colors[c, g, k] += grads[r, 6 + k]
    return v_means2d, v_conics, v_colors, v_opacities


# --------------------------------------------------------------------------- autograd
def _tile_order(n_tiles: int) -> np.ndarray:
    """Tiles interleaved across threads: ``prange`` hands each thread one contiguous
    block of iterations, so thread k gets tiles k, k + n, k + 2n, … — the busy tiles
    of a face in the middle of the image are shared out evenly."""
    n = max(1, numba.get_num_threads())
    return np.concatenate([np.arange(k, n_tiles, n, dtype=np.int64) for k in range(n)])


def _np32(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float32).contiguous().numpy()


class RasterizeToPixelsCPU(torch.autograd.Function):
    """``(means2d, conics, colors, opacities) → (colors [C,H,W,D], alphas [C,H,W,1])``.

    No background (the caller adds it). ``radii``, ``offsets`` and ``ids`` are the
    non-differentiable binning (:func:`bin_gaussians`).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, offsets, ids, width, height, tile_size, tile_width):
        m, q, col, op = _np32(means2d), _np32(conics), _np32(colors), _np32(opacities)
        sig_max, boxes = _box_kernel(m, q, op, radii, width, height)
        order = _tile_order(len(offsets) - 1)
        out_colors, out_T, out_last = _fwd_kernel(m, q, col, op, sig_max, boxes, offsets, ids, order, width, height,
                                                  tile_size, tile_width)
        ctx.save_for_backward(means2d, conics, colors, opacities)  # autograd checks in-place changes
        ctx.arrays = (sig_max, boxes, offsets, ids, order, out_T, out_last)
        ctx.sizes = (width, height, tile_size, tile_width)
        ctx.dtypes = (means2d.dtype, conics.dtype, colors.dtype, opacities.dtype)
        alphas = torch.from_numpy(1.0 - out_T)[..., None]
        return torch.from_numpy(out_colors), alphas

    @staticmethod
    @once_differentiable
    def backward(ctx, v_render_colors, v_render_alphas):
        m, q, col, op = (_np32(t) for t in ctx.saved_tensors)
        sig_max, boxes, offsets, ids, order, out_T, out_last = ctx.arrays
        width, height, tile_size, tile_width = ctx.sizes
        C, N, D = col.shape
        if v_render_colors is None:
            v_render_colors = torch.zeros((C, height, width, D))
        if v_render_alphas is None:
            v_render_alphas = torch.zeros((C, height, width, 1))
        v_c = _np32(v_render_colors)
        v_a = np.ascontiguousarray(_np32(v_render_alphas)[..., 0])
        vm, vq, vcol, vop = _bwd_kernel(m, q, col, op, sig_max, boxes, offsets, ids, order, width, height, tile_size,
                                        tile_width, out_T, out_last, v_c, v_a)
        dm, dq, dc, do = ctx.dtypes
        return (torch.from_numpy(vm).to(dm), torch.from_numpy(vq).to(dq), torch.from_numpy(vcol).to(dc),
                torch.from_numpy(vop).to(do), None, None, None, None, None, None, None)


def rasterize_to_pixels_cpu(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, radii: Tensor,
                            depths: Tensor, width: int, height: int, tile_size: int = 16
                            ) -> tuple[Tensor, Tensor, dict]:
    """Composite projected Gaussians on the CPU (differentiable, no background).

    Args:
        means2d: ``[C, N, 2]`` pixel positions.
        conics: ``[C, N, 3]`` upper triangle of the inverse 2D covariance.
        colors: ``[C, N, D]``.
        opacities: ``[C, N]`` in [0, 1].
        radii: ``[C, N, 2]`` int box half-sizes (``0`` = culled); not differentiated.
        depths: ``[C, N]`` sort keys; not differentiated.
        width, height, tile_size: image and tile size in pixels.

    Returns:
        ``colors [C, H, W, D]`` and ``alphas [C, H, W, 1]`` (float32, CPU) and a dict
        with the binning in gsplat's layout: ``isect_offsets [C, th, tw]`` int32,
        ``flatten_ids [n_isects]`` int32 (indices into ``C * N``), ``tile_width`` and
        ``tile_height``.
    """
    C, N = depths.shape
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    radii_np = radii.detach().to(torch.int32).contiguous().numpy()
    offsets, ids = bin_gaussians(_np32(means2d), radii_np, _np32(depths), tile_size, tile_width, tile_height)
    render_colors, render_alphas = RasterizeToPixelsCPU.apply(
        means2d, conics, colors, opacities, radii_np, offsets, ids, width, height, tile_size, tile_width)
    n_tiles = tile_width * tile_height
    cam_of_isect = np.repeat(np.arange(C, dtype=np.int64), np.diff(offsets[::n_tiles]))
    binning = {
        "isect_offsets": torch.from_numpy(offsets[:-1].astype(np.int32).reshape(C, tile_height, tile_width)),
        "flatten_ids": torch.from_numpy((cam_of_isect * N + ids).astype(np.int32)),
        "tile_width": tile_width,
        "tile_height": tile_height,
    }
    return render_colors, render_alphas, binning
