"""3D Gaussian clouds: the :class:`GaussianCloud` container and 3DGS PLY files.

A cloud holds ``N`` anisotropic 3D Gaussians in the toolkit's conventions:

- ``means [N, 3]`` — centres in world units,
- ``quats [N, 4]`` — rotations as quaternions ``(w, x, y, z)`` (need not be unit;
  the renderer normalises them),
- ``scales [N, 3]`` — standard deviations along the rotated axes, linear (> 0),
- ``opacities [N]`` — in ``[0, 1]``,
- ``colors [N, 3]`` — RGB, normally in ``[0, 1]``,
- ``extras`` — any other per-Gaussian arrays (first dimension ``N``), e.g.
  ``sh_rest [N, K, 3]`` (higher spherical-harmonic coefficients of a loaded 3DGS
  scene) or ``parent_triangle [N]`` from the head builder.

Files use the layout of the original 3D Gaussian Splatting code (INRIA), which every
splat viewer (SuperSplat, antimatter15/splat, …) opens: one ``vertex`` element with
float properties ``x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2
rot_0..3``, where ``f_dc = (rgb - 0.5) / C0``, opacity is stored as a logit and
scales as logs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.special import expit, logit
from torch import Tensor

from .checks import as_float_tensor, check_finite, check_shape
from .utils import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from .camera import Camera

#: Zeroth spherical-harmonic basis constant: ``rgb = 0.5 + C0 * f_dc``.
SH_C0 = 0.28209479177387814

#: Number of ``f_rest_*`` properties written when a cloud has no ``sh_rest``
#: (degree-3 SH: 15 coefficients × 3 channels), so that viewers expecting them open the file.
DEFAULT_N_REST = 45

_CORE_FIELDS = ("means", "quats", "scales", "opacities", "colors")
_TRAILING = {"means": (3,), "quats": (4,), "scales": (3,), "opacities": (), "colors": (3,)}
_REQUIRED_PLY = ("x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOGIT_CLAMP = 110.0  # sigmoid(±110) is exactly 0 / 1 in float32, so opacity 0 and 1 survive a round trip


# --------------------------------------------------------------------------- the cloud
@dataclass(eq=False, repr=False)
class GaussianCloud:
    """``N`` 3D Gaussians (see the module docstring for the conventions).

    Tensors are kept as given (so they may be ``nn.Parameter``s); inputs that are not
    floating-point tensors (lists, NumPy arrays, integer tensors) become float32.

    Args:
        means: ``[N, 3]`` centres.
        quats: ``[N, 4]`` rotations ``(w, x, y, z)``, non-zero.
        scales: ``[N, 3]`` linear standard deviations, > 0.
        opacities: ``[N]`` in ``[0, 1]``.
        colors: ``[N, 3]`` RGB.
        extras: name → per-Gaussian array ``[N, ...]`` carried along by ``subset``,
            ``clone``, ``to`` and PLY files.

    Raises:
        ValueError: on a wrong shape, a non-finite value, a scale ≤ 0, an opacity
            outside ``[0, 1]``, a zero quaternion, mixed devices or a bad extra.

    Examples:
        >>> g = GaussianCloud.from_points(torch.zeros(2, 3), scale=0.05)
        >>> len(g), g.scales[0].tolist()
        (2, [0.05000000074505806, 0.05000000074505806, 0.05000000074505806])
        >>> g.subset(torch.tensor([1])).means.shape
        torch.Size([1, 3])
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _CORE_FIELDS:
            setattr(self, name, as_float_tensor(getattr(self, name), name))
        n = check_shape(self.means, "means", ("N", 3))["N"]
        for name in _CORE_FIELDS[1:]:
            pattern = ("N", *_TRAILING[name])
            check_shape(getattr(self, name), name, pattern, "; one row per Gaussian of means [N, 3]", N=n)
        for name in _CORE_FIELDS:
            t = getattr(self, name)
            if t.device != self.means.device:
                raise ValueError(
                    f"{name} is on {t.device} but means is on {self.means.device}; move all tensors to one device"
                )
            check_finite(t, name)
        if n:
            if bool((self.scales.detach() <= 0).any()):
                raise ValueError(
                    f"scales must be > 0 (linear standard deviations), got min {float(self.scales.min()):.3g}"
                )
            o = self.opacities.detach()
            if bool((o < 0).any() or (o > 1).any()):
                raise ValueError(
                    f"opacities must lie in [0, 1], got range [{float(o.min()):.3g}, {float(o.max()):.3g}]"
                )
            if bool((self.quats.detach().norm(dim=-1) == 0).any()):
                raise ValueError("quats contains a zero quaternion; use (1, 0, 0, 0) for no rotation")
        if not isinstance(self.extras, dict):
            raise ValueError(f"extras must be a dict of name -> [N, ...] tensors, got {type(self.extras).__name__}")
        extras = {}
        for key, value in self.extras.items():
            if not isinstance(key, str) or not _NAME_RE.match(key):
                raise ValueError(f"extras key {key!r} must be an identifier (letters, digits, underscore)")
            if key in _CORE_FIELDS:
                raise ValueError(f"extras key {key!r} clashes with a core field; rename it")
            v = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
            if v.ndim == 0 or v.shape[0] != n:
                raise ValueError(f"extras[{key!r}] must have shape [N={n}, ...], got {list(v.shape)}")
            if v.device != self.means.device:
                raise ValueError(f"extras[{key!r}] is on {v.device} but means is on {self.means.device}")
            if v.is_floating_point():
                check_finite(v, f"extras[{key!r}]")
            extras[key] = v
        if "sh_rest" in extras and (extras["sh_rest"].ndim != 3 or extras["sh_rest"].shape[2] != 3):
            raise ValueError(f"extras['sh_rest'] must have shape [N, K, 3], got {list(extras['sh_rest'].shape)}")
        self.extras = extras

    # ---- construction helpers
    @classmethod
    def from_points(
        cls,
        points,
        colors=None,
        scale: float | Tensor = 0.01,
        opacity: float | Tensor = 0.9,
    ) -> GaussianCloud:
        """Isotropic, unrotated Gaussians at ``points [N, 3]``.

        Args:
            points: ``[N, 3]`` centres.
            colors: ``[N, 3]`` RGB (default mid grey).
            scale: a float or ``[N]`` standard deviation(s).
            opacity: a float or ``[N]`` opacity(ies).
        """
        means = as_float_tensor(points, "points")
        check_shape(means, "points", ("N", 3))
        n, dev, dt = means.shape[0], means.device, means.dtype
        quats = torch.zeros(n, 4, device=dev, dtype=dt)
        quats[:, 0] = 1.0
        s = torch.as_tensor(scale, dtype=dt, device=dev)
        scales = (s[:, None] if s.ndim == 1 else s).expand(n, 3).clone()
        opacities = torch.as_tensor(opacity, dtype=dt, device=dev).expand(n).clone()
        if colors is None:
            cols = torch.full((n, 3), 0.5, device=dev, dtype=dt)
        else:
            cols = as_float_tensor(colors, "colors").to(dev)
        return cls(means, quats, scales, opacities, cols)

    # ---- container protocol
    def __len__(self) -> int:
        return int(self.means.shape[0])

    def __repr__(self) -> str:
        return f"GaussianCloud(N={len(self)}, device={self.device}, dtype={self.means.dtype}, extras={sorted(self.extras)})"

    @property
    def device(self) -> torch.device:
        return self.means.device

    def _map(self, fn) -> GaussianCloud:
        return GaussianCloud(
            *(fn(getattr(self, n)) for n in _CORE_FIELDS), extras={k: fn(v) for k, v in self.extras.items()}
        )

    def to(self, device: str | torch.device) -> GaussianCloud:
        """A cloud with every tensor (extras too) on ``device``."""
        return self._map(lambda t: t.to(device))

    def clone(self) -> GaussianCloud:
        """A deep copy (gradients still flow through ``clone``)."""
        return self._map(lambda t: t.clone())

    def detach(self) -> GaussianCloud:
        """A cloud sharing storage but cut from the autograd graph."""
        return self._map(lambda t: t.detach())

    def subset(self, idx) -> GaussianCloud:
        """The Gaussians selected by ``idx``: ``[M]`` int indices, an ``[N]`` bool mask or a slice."""
        if isinstance(idx, slice):
            return self._map(lambda t: t[idx])
        idx = torch.as_tensor(idx, device=self.device)
        if idx.numel() == 0 and idx.ndim == 1:
            idx = idx.long()  # an empty list selects nothing
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(f"a boolean mask must have shape [N={len(self)}], got {list(idx.shape)}")
        elif idx.dtype.is_floating_point or idx.ndim != 1:
            raise ValueError(
                f"idx must be [M] integer indices, an [N] bool mask or a slice; got {idx.dtype} {list(idx.shape)}"
            )
        elif idx.numel() and (int(idx.max()) >= len(self) or int(idx.min()) < -len(self)):
            raise ValueError(f"idx out of range for a cloud of {len(self)} Gaussians")
        return self._map(lambda t: t[idx])

    @staticmethod
    def concat(clouds: Sequence[GaussianCloud]) -> GaussianCloud:
        """One cloud holding the Gaussians of ``clouds`` in order (all must have the same extras).

        Raises:
            ValueError: no clouds, or clouds whose extras differ (names them).
        """
        clouds = list(clouds)
        if not clouds or not all(isinstance(c, GaussianCloud) for c in clouds):
            raise ValueError("concat needs a non-empty list of GaussianCloud")
        keys = set(clouds[0].extras)
        for i, c in enumerate(clouds[1:], 1):
            if set(c.extras) != keys:
                raise ValueError(
                    f"clouds[{i}] has extras {sorted(c.extras)} but clouds[0] has {sorted(keys)}; give them the same extras"
                )
        cat = lambda name: torch.cat([getattr(c, name) for c in clouds])
        return GaussianCloud(
            *(cat(n) for n in _CORE_FIELDS), extras={k: torch.cat([c.extras[k] for c in clouds]) for k in keys}
        )

    def allclose(self, other: GaussianCloud, rtol: float = 1e-6, atol: float = 1e-7) -> bool:
        """True when both clouds have the same size, extras and (close) values."""
        if not isinstance(other, GaussianCloud) or len(self) != len(other) or set(self.extras) != set(other.extras):
            return False
        pairs = [(getattr(self, n), getattr(other, n)) for n in _CORE_FIELDS]
        pairs += [(self.extras[k], other.extras[k]) for k in self.extras]
        for a, b in pairs:
            if a.shape != b.shape:
                return False
            a, b = a.detach().cpu(), b.detach().cpu()
            if a.is_floating_point() or b.is_floating_point():
                if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol):
                    return False
            elif not torch.equal(a, b):
                return False
        return True

    # ---- rendering
    def render(self, cameras: Camera | list[Camera], backend: str = "auto", background=None) -> Tensor:
        """Render the cloud from one or more cameras with :func:`emozone_lite.render.rasterize`.

        Args:
            cameras: a :class:`~emozone_lite.camera.Camera` or a list of them (one image size).
            backend: ``"auto"``, ``"cpu"``, ``"torch"`` or ``"gsplat"``.
            background: ``[3]`` RGB (or ``[C, 3]``) behind the Gaussians; default black.

        Returns:
            ``[C, H, W, 3]`` images.
        """
        from . import render  # lazy: the renderer pulls in numba
        from .camera import Camera, stack_cameras

        cams = [cameras] if isinstance(cameras, Camera) else list(cameras)
        viewmats, Ks, width, height = stack_cameras(cams)
        dev, dt = self.device, self.means.dtype
        backgrounds = None
        if background is not None:
            bg = torch.as_tensor(background, dtype=dt, device=dev)
            if bg.shape == (3,):
                bg = bg.expand(len(cams), 3)
            if bg.shape != (len(cams), 3):
                raise ValueError(f"background must have shape [3] or [C={len(cams)}, 3], got {list(bg.shape)}")
            backgrounds = bg
        colors, _, _ = render.rasterize(
            self.means,
            self.quats,
            self.scales,
            self.opacities,
            self.colors,
            viewmats.to(dev, dt),
            Ks.to(dev, dt),
            width,
            height,
            backend=backend,
            backgrounds=backgrounds,
        )
        return colors


# --------------------------------------------------------------------------- encodings
# Decoders run in float64 and round once to float32; save_ply picks, for each value, the
# float32 code whose decoding is nearest the value, so round trips are exact wherever the
# float32 code grid allows it (and within an ulp or two elsewhere).
def _dec_color(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) * SH_C0 + 0.5).astype(np.float32)


def _enc_color(v: np.ndarray) -> np.ndarray:
    return (v.astype(np.float64) - 0.5) / SH_C0


def _dec_opacity(x: np.ndarray) -> np.ndarray:
    return expit(x.astype(np.float64)).astype(np.float32)


def _enc_opacity(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.clip(logit(v.astype(np.float64)), -_LOGIT_CLAMP, _LOGIT_CLAMP)


def _dec_scale(x: np.ndarray) -> np.ndarray:
    return np.exp(x.astype(np.float64)).astype(np.float32)


def _enc_scale(v: np.ndarray) -> np.ndarray:
    return np.log(v.astype(np.float64))


def _encode_nearest(values: np.ndarray, enc, dec, n_neighbours: int = 2) -> np.ndarray:
    """float32 codes ``x`` minimising ``|dec(x) - values|`` among ``enc(values)`` ± a few ulps."""
    target = values.astype(np.float32).astype(np.float64)
    best = enc(target).astype(np.float32)
    best_err = np.abs(dec(best).astype(np.float64) - target)
    up = down = best
    for _ in range(n_neighbours):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        for cand in (up, down):
            err = np.abs(dec(cand).astype(np.float64) - target)
            better = err < best_err
            best, best_err = np.where(better, cand, best), np.where(better, err, best_err)
    return best


# --------------------------------------------------------------------------- PLY writing
def _np32(t: Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


def save_ply(cloud: GaussianCloud, path: str | os.PathLike) -> Path:
    """Write ``cloud`` as a binary little-endian 3DGS PLY (INRIA layout), atomically.

    Normals are written as zeros; ``extras['sh_rest'] [N, K, 3]`` becomes ``f_rest_*``
    (channel-major, as INRIA stores it), else 45 zero ``f_rest_*`` are written (pass
    ``extras['sh_rest']`` of shape ``[N, 0, 3]`` to write none and keep files small). Other
    extras become float properties (``name`` for ``[N]``, ``name_0..`` for ``[N, ...]``)
    with a header comment recording their dtype and shape so :func:`load_ply` restores them.

    Returns:
        The path written.

    Raises:
        ValueError: an extra whose property name clashes with a standard one, or an
            integer extra too large to store exactly in float32.
    """
    if not isinstance(cloud, GaussianCloud):
        raise ValueError(f"cloud must be a GaussianCloud, got {type(cloud).__name__}")
    n = len(cloud)
    cols: list[tuple[str, np.ndarray]] = []
    means = _np32(cloud.means)
    cols += [("x", means[:, 0]), ("y", means[:, 1]), ("z", means[:, 2])]
    cols += [(f"n{a}", np.zeros(n, np.float32)) for a in "xyz"]
    f_dc = _encode_nearest(_np32(cloud.colors), _enc_color, _dec_color)
    cols += [(f"f_dc_{c}", f_dc[:, c]) for c in range(3)]
    if "sh_rest" in cloud.extras:
        sh = cloud.extras["sh_rest"]
        rest = _np32(sh).transpose(0, 2, 1).reshape(n, 3 * sh.shape[1])  # [N, 3*K], channel-major (N = 0 too)
    else:
        rest = np.zeros((n, DEFAULT_N_REST), np.float32)
    cols += [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
    cols.append(("opacity", _encode_nearest(_np32(cloud.opacities), _enc_opacity, _dec_opacity)))
    log_s = _encode_nearest(_np32(cloud.scales), _enc_scale, _dec_scale)
    cols += [(f"scale_{i}", log_s[:, i]) for i in range(3)]
    quats = _np32(cloud.quats)
    cols += [(f"rot_{i}", quats[:, i]) for i in range(4)]

    comments = ["generated by emozone-lite (3D Gaussian Splatting layout)"]
    standard = {name for name, _ in cols}
    for key, value in cloud.extras.items():
        if key == "sh_rest":
            continue
        arr = value.detach().cpu()
        if arr.dtype != torch.bool and not arr.is_floating_point() and arr.numel() and int(arr.abs().max()) > 2**24:
            raise ValueError(f"extras[{key!r}] has integers above 2**24 that float32 cannot store exactly")
        arr = arr.to(torch.float32).numpy().reshape(n, math.prod(value.shape[1:]))
        dims = tuple(value.shape[1:])
        names = [key] if not dims else [f"{key}_{i}" for i in range(arr.shape[1])]
        clash = standard.intersection(names)
        if clash:
            raise ValueError(
                f"extras[{key!r}] would write property {sorted(clash)[0]!r}, which the 3DGS layout already uses; rename the extra"
            )
        standard.update(names)
        dtype_name = str(value.dtype).removeprefix("torch.")
        comments.append(f"emozone_lite extra {key} {dtype_name} {','.join(map(str, dims)) or '-'}")
        cols += [(nm, arr[:, i]) for i, nm in enumerate(names)]

    header = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments), f"element vertex {n}"]
    header += [f"property float {name}" for name, _ in cols]
    header.append("end_header")
    body = np.empty(n, dtype=[(name, "<f4") for name, _ in cols])
    for name, col in cols:
        body[name] = col
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(body.tobytes())
    return path


# --------------------------------------------------------------------------- PLY reading
_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


@dataclass
class _Element:
    name: str
    count: int
    props: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy type code)
    has_list: bool = False


def _parse_header(data: bytes, where: str) -> tuple[str, list[_Element], list[str], int]:
    """``(format, elements, comments, body_offset)`` of a PLY file's bytes."""
    first = data[:4]
    if not (first.startswith(b"ply\n") or first.startswith(b"ply\r")):
        raise ValueError(f"{where} is not a PLY file: it should start with the line 'ply', found {data[:16]!r}")
    m = re.search(rb"^end_header[ \t]*\r?\n", data, flags=re.MULTILINE)
    if m is None:
        raise ValueError(f"{where}: PLY header has no 'end_header' line (file truncated or not a PLY)")
    try:
        lines = data[: m.start()].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError:
        raise ValueError(f"{where}: PLY header is not ASCII text; the file is corrupt") from None
    fmt, elements, comments = None, [], []
    for line_no, line in enumerate(lines, start=2):
        parts = line.split()
        if not parts:
            continue
        kw = parts[0]
        if kw == "comment":
            comments.append(line.strip()[len("comment") :].strip())
        elif kw == "obj_info":
            continue
        elif kw == "format" and len(parts) == 3:
            fmt = parts[1]
            if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise ValueError(
                    f"{where}: unknown PLY format {fmt!r}; expected ascii, binary_little_endian or binary_big_endian"
                )
        elif kw == "element" and len(parts) == 3:
            try:
                count = int(parts[2])
            except ValueError:
                raise ValueError(
                    f"{where}: header line {line_no}: element count {parts[2]!r} is not an integer"
                ) from None
            if count < 0:
                raise ValueError(f"{where}: header line {line_no}: negative element count {count}")
            elements.append(_Element(parts[1], count))
        elif kw == "property" and len(parts) >= 3:
            if not elements:
                raise ValueError(f"{where}: header line {line_no}: property before any element")
            if parts[1] == "list":
                elements[-1].has_list = True
                elements[-1].props.append((parts[-1], "list"))
                continue
            if len(parts) != 3 or parts[1] not in _PLY_TYPES:
                raise ValueError(
                    f"{where}: header line {line_no}: unsupported property {line.strip()!r}; types are {sorted(set(_PLY_TYPES))}"
                )
            elements[-1].props.append((parts[2], _PLY_TYPES[parts[1]]))
        else:
            raise ValueError(f"{where}: header line {line_no} is not valid PLY: {line.strip()!r}")
    if fmt is None:
        raise ValueError(f"{where}: PLY header has no 'format' line")
    return fmt, elements, comments, m.end()


def _read_vertex_columns(data: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, str], list[str], int]:
    """Read the ``vertex`` element: ``(name → float64 column, name → numpy type code, comments, N)``."""
    fmt, elements, comments, offset = _parse_header(data, where)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise ValueError(
            f"{where}: PLY has no 'element vertex' (elements: {names}); expected a 3D Gaussian Splatting PLY"
        )
    vi = names.index("vertex")
    vert = elements[vi]
    if vert.has_list:
        raise ValueError(f"{where}: the vertex element has a list property; 3DGS PLYs use scalar properties only")
    prop_names = [p for p, _ in vert.props]
    dups = sorted({p for p in prop_names if prop_names.count(p) > 1})
    if dups:
        raise ValueError(f"{where}: vertex property {dups[0]!r} is declared twice")
    n = vert.count
    if fmt == "ascii":
        lines = [ln for ln in data[offset:].decode("ascii", errors="replace").splitlines() if ln.strip()]
        skip = sum(e.count for e in elements[:vi])
        rows = lines[skip : skip + n]
        if len(rows) < n:
            raise ValueError(f"{where}: ascii PLY body truncated: expected {n} vertex lines, found {len(rows)}")
        try:
            table = (
                np.array([[float(tok) for tok in r.split()] for r in rows], dtype=np.float64).reshape(n, -1)
                if n
                else np.zeros((0, len(vert.props)))
            )
        except ValueError as e:
            raise ValueError(
                f"{where}: ascii PLY vertex data is not numeric ({e}) or rows have different lengths"
            ) from None
        if table.shape[1] != len(vert.props):
            raise ValueError(
                f"{where}: ascii PLY vertex lines have {table.shape[1]} values, header declares {len(vert.props)} properties"
            )
        cols = {p: table[:, i] for i, p in enumerate(prop_names)}
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        for e in elements[:vi]:
            if e.has_list:
                raise ValueError(
                    f"{where}: element {e.name!r} with list properties precedes 'vertex' in a binary PLY; not supported"
                )
            offset += e.count * int(np.dtype([(p, endian + t) for p, t in e.props]).itemsize)
        dtype = np.dtype([(p, endian + t) for p, t in vert.props])
        expected, found = n * dtype.itemsize, max(len(data) - offset, 0)
        if found < expected:
            raise ValueError(
                f"{where}: PLY body truncated: {n} vertices × {dtype.itemsize} bytes = {expected} bytes expected "
                f"after the header, found {found}"
            )
        arr = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        cols = {p: arr[p].astype(np.float64) for p in prop_names}
    return cols, dict(vert.props), comments, n


def load_ply(path: str | os.PathLike, device: str | torch.device = "cpu") -> GaussianCloud:
    """Read a 3D Gaussian Splatting PLY into a float32 :class:`GaussianCloud`.

    Accepts ascii, binary little- and big-endian files, properties in any order and of
    any PLY scalar type, any number of ``f_rest_*`` (a multiple of 3; kept as
    ``extras['sh_rest'] [N, K, 3]`` unless all zero) and ``red green blue`` (0–255 when
    integer) in place of ``f_dc_*``. Unknown properties become extras
    (``name_0, name_1, …`` are grouped into ``[N, k]``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: not a PLY, a missing required property (named), a truncated body
            (bytes expected vs found), bad header lines or values out of range.
    """
    path = Path(path)
    data = path.read_bytes()
    where = str(path)
    cols, types, comments, n = _read_vertex_columns(data, where)

    missing = [p for p in _REQUIRED_PLY if p not in cols]
    has_dc = all(f"f_dc_{c}" in cols for c in range(3))
    has_rgb = all(c in cols for c in ("red", "green", "blue"))
    if not has_dc and not has_rgb:
        missing += [f"f_dc_{c}" for c in range(3) if f"f_dc_{c}" not in cols]
    if missing:
        raise ValueError(
            f"{where}: PLY vertex element is missing required propert{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(repr(m) for m in missing)}; a 3DGS PLY needs x y z f_dc_0..2 opacity scale_0..2 rot_0..3"
        )
    used = set(_REQUIRED_PLY) | {"nx", "ny", "nz"}

    def stack(names: list[str]) -> np.ndarray:
        return np.stack([cols[k] for k in names], axis=1) if names else np.zeros((n, 0))

    means = stack(["x", "y", "z"]).astype(np.float32)
    if has_dc:
        colors = _dec_color(stack([f"f_dc_{c}" for c in range(3)]))
        used |= {f"f_dc_{c}" for c in range(3)}
    else:
        rgb = stack(["red", "green", "blue"])
        integer_rgb = types["red"][0] in "iu"
        colors = (rgb / 255.0 if integer_rgb else rgb).astype(np.float32)
        used |= {"red", "green", "blue"}
    opac = _dec_opacity(cols["opacity"])
    scales = _dec_scale(stack([f"scale_{i}" for i in range(3)]))
    quats = stack([f"rot_{i}" for i in range(4)]).astype(np.float32)

    extras: dict[str, Tensor] = {}
    rest_names = [k for k in cols if re.fullmatch(r"f_rest_\d+", k)]
    if rest_names:
        m = len(rest_names)
        if {f"f_rest_{i}" for i in range(m)} != set(rest_names):
            raise ValueError(f"{where}: f_rest_* properties are not numbered 0..{m - 1}")
        if m % 3:
            raise ValueError(
                f"{where}: found {m} f_rest_* properties; expected a multiple of 3 (3 colour channels × K coefficients)"
            )
        rest = stack([f"f_rest_{i}" for i in range(m)]).astype(np.float32)
        if np.any(rest != 0):
            extras["sh_rest"] = torch.from_numpy(np.ascontiguousarray(rest.reshape(n, 3, m // 3).transpose(0, 2, 1)))
        used |= set(rest_names)

    # extras described by our own header comments (dtype and shape restored) ...
    for c in comments:
        parts = c.split()
        if len(parts) == 5 and parts[:2] == ["emozone_lite", "extra"]:
            key, dtype_name, dims_txt = parts[2:]
            dims = () if dims_txt == "-" else tuple(int(d) for d in dims_txt.split(","))
            names = [key] if not dims else [f"{key}_{i}" for i in range(math.prod(dims))]
            if all(nm in cols and nm not in used for nm in names):
                arr = torch.from_numpy(stack(names).astype(np.float32)).reshape(n, *dims)
                dt = getattr(torch, dtype_name, None)
                extras[key] = arr.to(dt) if isinstance(dt, torch.dtype) else arr
                used |= set(names)
    # ... and any other unknown properties, grouped by their ``name_<i>`` prefix.
    groups: dict[str, list[str]] = {}
    for k in cols:
        if k not in used:
            mm = re.fullmatch(r"(.+)_(\d+)", k)
            groups.setdefault(mm.group(1) if mm else k, []).append(k)
    for key, names in groups.items():
        numbered = [f"{key}_{i}" for i in range(len(names))]
        if set(names) == set(numbered) and _NAME_RE.match(key) and key not in extras:
            extras[key] = torch.from_numpy(stack(numbered).astype(np.float32))
        else:
            for nm in names:
                if _NAME_RE.match(nm) and nm not in extras:
                    extras[nm] = torch.from_numpy(cols[nm].astype(np.float32))

    try:
        cloud = GaussianCloud(
            torch.from_numpy(means),
            torch.from_numpy(quats),
            torch.from_numpy(scales),
            torch.from_numpy(opac),
            torch.from_numpy(colors),
            extras=extras,
        )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return cloud.to(device)
