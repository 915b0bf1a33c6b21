"""The expression studio: edit the AUs, the SZ-PAB bias and the camera of a trained
EmoZone-lite head and see the render at once.

Three layers, as everywhere in the toolkit:

* **pure compute** — :class:`Studio` holds a model, one utterance's audio features,
  an AU track and the camera defaults. ``render_frame(t, aus, bias, yaw, size)``
  gives the image of frame ``t``. The audio tokens of the whole clip are encoded
  **once**; a changed AU vector re-encodes only the AU tokens of frame ``t`` (one
  CIT-AE window); the deformed head is cached per (frame, AUs, bias), so moving the
  camera costs one render and any other change one deform + one render.
* **pure plots** — :func:`plot_zone_mass` (where each zone's attention goes) and
  :func:`plot_au_edit` (the AU track with the studio's edits); both return a
  ``Figure``.
* **thin widget** — :func:`expression_studio` wires ``ipywidgets`` controls to a
  :class:`Studio` and shows the render as a PNG ``ipywidgets.Image``.

How an AU edit is applied (the *hold* rule). CIT-AE does not read one frame: the
token of frame ``t`` comes from the window ``t-16 … t+15`` (``au_window`` = 32 frames)
of each AU's series. A slider value therefore becomes an override **held over that
window**: AU ``k`` set to ``v`` at frame ``t`` means "AU ``k`` has been ``v`` for the
whole window around ``t``" (a steady expression, like the held keyframes of the
training scripts — a one-frame spike would read as detector noise), while the AUs you
did not touch keep their own series (blinks included). Because
CIT-AE is channel-independent, only the edited AUs' tokens change. In the exported
video an override is held over the whole clip, which gives every frame exactly the
token ``render_frame`` shows for it (:meth:`Studio.edited_track`).
"""
from __future__ import annotations

import html
import io
import os
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
from torch import Tensor

from . import aus as aus_mod
from .attention import MODALITY_NAMES, SZPAB
from .audio import FEATURE_SR, features, load_audio
from .camera import Camera
from .utils import DATA_DIR, data_path
from .zones import ZONE_NAMES

__all__ = [
    "ZONE_ORDER",
    "Studio",
    "default_export_path",
    "plot_zone_mass",
    "plot_au_edit",
    "png_bytes",
    "ExpressionStudio",
    "expression_studio",
]

#: Rows of the SZ-PAB bias table and the AU groups of the studio (``zones.ZONE_NAMES``).
ZONE_ORDER: tuple[str, ...] = tuple(ZONE_NAMES)

_CACHE_SIZE = 16


def default_export_path() -> Path:
    """``outputs/studio.mp4`` at the repository root (beside ``data_samples/``)."""
    return DATA_DIR.parent / "outputs" / "studio.mp4"


def _resolve_audio(audio: str | os.PathLike) -> Path:
    p = Path(audio)
    if p.exists():
        return p
    if p.parent == Path(".") or str(p.parent) == "":
        return data_path(str(p))  # a bundled sample name; raises a clear FileNotFoundError
    raise FileNotFoundError(f"audio file not found: {p}; pass a path or the name of a bundled sample such as 'arctic_a0007.wav'")


def _au_column(key: int | str) -> int:
    if isinstance(key, (int, np.integer)):
        if not 0 <= int(key) < aus_mod.N_AUS:
            raise ValueError(f"AU index must be in [0, {aus_mod.N_AUS - 1}], got {key}")
        return int(key)
    return aus_mod.au_index(str(key))


class Studio:
    """Pure compute of the expression studio (no widgets).

    Args:
        model: a trained :class:`emozone_lite.model.EmoZoneLite` (put in eval mode).
            A call with a ``bias`` table sets it (``model.fusion.set_bias``) for its
            deform only and puts the model's own table back afterwards;
            ``bias=None`` means the model's table.
        audio: a bundled sample name (``"arctic_a0007.wav"``) or a path to any audio
            file :func:`emozone_lite.audio.load_audio` reads.
        aus: the base AU track: ``None`` (a neutral face with natural blinks), a preset
            name (held over the clip, with blinks), an :class:`emozone_lite.aus.AUTrack`
            or an array ``[T, 17]``; tracks of another length are resampled to the
            audio's frame count.
        fps: video frame rate of the features.
        pitch, radius, fov: orbit camera defaults (``Camera.orbit``); yaw is per call.
        background: RGB background of the renders.
        backend: rasterizer backend (``"auto"``: gsplat on CUDA, else the CPU one).
        threads: CPU threads (torch and numba) used while the studio computes, restored
            afterwards; ``None`` leaves the process settings alone. One update is a few
            small ops on ~6k Gaussians, where a second thread's synchronisation costs
            about what it saves on an idle 2-core machine and much more as soon as the
            cores are shared (a browser beside the kernel, other jobs): the default is 1
            (see ``benchmarks/bench_studio.py --threads``).

    Attributes:
        n_frames: ``T``; fps; wave ``[S]`` (16 kHz float32); sr.
        mel_windows ``[T, 16, n_mels]``, energy ``[T]``, track ``[T, 17]`` (float32 tensors).
        audio_tokens ``[T, n_a, d]`` and au_tokens ``[T, 17, d]``: the cached tokens of the clip.
        default_bias: ``[3, 3]`` the model's bias table at construction, where the widget's
            bias sliders start (``None`` when the model has no zone × modality table, i.e.
            implicit fusion or one-zone attention).

    Examples:
        >>> from emozone_lite.head import load_head
        >>> from emozone_lite.model import EmoZoneLite, ModelConfig
        >>> st = Studio(EmoZoneLite(ModelConfig(n_gaussians=300), load_head()))
        >>> st.render_frame(10, st.frame_aus(10), yaw=15.0, size=32).shape
        torch.Size([32, 32, 3])
    """

    def __init__(self, model, audio: str | os.PathLike = "arctic_a0007.wav", aus=None, *, fps: float = 25.0,
                 pitch: float = 0.0, radius: float = 4.0, fov: float = 30.0,
                 background: Sequence[float] = (1.0, 1.0, 1.0), backend: str = "auto", threads: int | None = 1) -> None:
        from .model import EmoZoneLite  # noqa: PLC0415

        if not isinstance(model, EmoZoneLite):
            raise ValueError(f"model must be an EmoZoneLite (e.g. emozone_lite.train.pretrained()), got {type(model).__name__}")
        self.model = model.eval()
        self.audio_path = _resolve_audio(audio)
        self.wave = load_audio(self.audio_path, FEATURE_SR)
        self.sr = FEATURE_SR
        feats = features(self.wave, FEATURE_SR, fps)
        self.fps = float(feats.fps)
        self.n_frames = int(feats.n_frames)
        dev = model.means.device
        self.mel_windows = torch.as_tensor(feats.mel_windows, dtype=torch.float32, device=dev)
        self.energy = torch.as_tensor(feats.energy, dtype=torch.float32, device=dev)
        self.track = torch.as_tensor(self._base_track(aus), dtype=torch.float32, device=dev)
        self.pitch, self.radius, self.fov = float(pitch), float(radius), float(fov)
        self.background = torch.as_tensor(background, dtype=torch.float32, device=dev).reshape(3)
        self.backend = backend
        if threads is not None and (isinstance(threads, bool) or int(threads) != threads or int(threads) < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = None if threads is None else int(threads)

        fusion = model.fusion
        self.has_bias = isinstance(fusion, SZPAB) and tuple(fusion.bias_table.shape) == (len(ZONE_ORDER), len(MODALITY_NAMES))
        self.default_bias: Tensor | None = fusion.bias_table.detach().clone().cpu() if self.has_bias else None

        with torch.no_grad(), self.compute_threads():
            self.audio_tokens, self.au_tokens = model.encode(self.mel_windows, self.energy, self.track)
            enc = model.au_encoder
            # CIT-AE windows of the base track (AU intensities scaled to [0, 1] as in model.encode)
            self._windows = enc.windows(self.track[None] / aus_mod.AU_MAX)[0] if self._windowed else None
        self._states: OrderedDict = OrderedDict()
        self._tokens: OrderedDict = OrderedDict()
        self._cameras: dict = {}
        self._masses: OrderedDict = OrderedDict()
        self.last_state = None  # the HeadState of the latest render_frame / state call

    @contextmanager
    def compute_threads(self):
        """Run the block with :attr:`threads` torch / numba threads (restored afterwards)."""
        if self.threads is None or self.model.means.device.type != "cpu":
            yield
            return
        import numba  # noqa: PLC0415  (the CPU rasterizer's kernels)

        n_torch, n_numba = torch.get_num_threads(), numba.get_num_threads()
        torch.set_num_threads(self.threads)
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            torch.set_num_threads(n_torch)
            numba.set_num_threads(n_numba)

    # ------------------------------------------------------------------ inputs
    def _base_track(self, aus) -> np.ndarray:
        T = self.n_frames
        if aus is None:
            return aus_mod.blink_track(T, fps=self.fps, seed=0).values
        if isinstance(aus, str):
            track = aus_mod.AUTrack(np.repeat(aus_mod.preset(aus)[None], T, 0), fps=self.fps)
            return aus_mod.blink_track(track, seed=0).values
        if isinstance(aus, aus_mod.AUTrack):
            return (aus if len(aus) == T else aus.resample(n_frames=T)).values
        arr = np.asarray(aus, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != aus_mod.N_AUS:
            raise ValueError(f"aus must be None, a preset name, an AUTrack or an array [T, 17], got shape {arr.shape}")
        track = aus_mod.AUTrack(arr, fps=self.fps)
        return (track if len(track) == T else track.resample(n_frames=T)).values

    @property
    def _windowed(self) -> bool:
        enc = self.model.au_encoder
        return hasattr(enc, "windows") and hasattr(enc, "encode_windows")

    def _check_t(self, t) -> int:
        if isinstance(t, bool) or int(t) != t or not 0 <= int(t) < self.n_frames:
            raise ValueError(f"frame t must be an integer in [0, {self.n_frames - 1}], got {t!r}")
        return int(t)

    def _check_aus(self, aus) -> np.ndarray:
        a = np.asarray(aus, dtype=np.float32)
        if a.shape != (aus_mod.N_AUS,):
            raise ValueError(f"aus must have shape [17] (one intensity per AU in aus.AU_NAMES order), got {a.shape}")
        if not np.isfinite(a).all() or a.min() < aus_mod.AU_MIN or a.max() > aus_mod.AU_MAX:
            raise ValueError(f"aus must be finite intensities in [0, 5], got {a.tolist()}")
        return a

    def _bias(self, bias) -> Tensor | None:
        """The table a call uses: ``bias`` checked, or the model's current table for ``None``."""
        if bias is None:
            return self.model.fusion.bias_table.detach().clone().cpu() if self.has_bias else None
        if not self.has_bias:
            raise ValueError(f"this model ({self.model.config.name}) has no zone x modality bias table to set; pass bias=None")
        b = torch.as_tensor(bias, dtype=torch.float32).cpu()
        if b.shape != (3, 3):
            raise ValueError(f"bias must have shape [3, 3] (rows upper, lower, synergy; columns audio, au, null), got {tuple(b.shape)}")
        if bool(torch.isnan(b).any()) or bool(torch.isposinf(b).any()):
            raise ValueError("bias contains NaN or +inf; use finite numbers (or -inf for a hard mask)")
        return b

    def frame_aus(self, t: int) -> np.ndarray:
        """The base track's AU intensities at frame ``t`` → ``[17]`` float32."""
        return self.track[self._check_t(t)].cpu().numpy().astype(np.float32)

    def held_channels(self, t: int, aus, held: Iterable[int | str] | None = None) -> tuple[int, ...]:
        """AU columns held constant around frame ``t``: those where ``aus`` differs from the
        track at ``t`` plus those named in ``held``."""
        a = self._check_aus(aus)
        base = self.frame_aus(t)
        out = {int(k) for k in np.nonzero(np.abs(a - base) > 1e-6)[0]}
        out |= {_au_column(k) for k in (held or ())}
        return tuple(sorted(out))

    def edited_track(self, overrides: Mapping[int | str, float] | None = None) -> Tensor:
        """The base track with each overridden AU held at its value over the whole clip → ``[T, 17]``.

        Every frame's CIT-AE window of this track equals the window ``render_frame``
        builds for that frame with the same overrides, so a video rendered from it shows
        exactly what the studio shows frame by frame.
        """
        tr = self.track.clone()
        for k, v in (overrides or {}).items():
            v = float(v)
            if not (aus_mod.AU_MIN <= v <= aus_mod.AU_MAX):
                raise ValueError(f"override for {k} is {v}; expected an intensity in [0, 5]")
            tr[:, _au_column(k)] = v
        return tr

    # ------------------------------------------------------------------ compute
    @torch.no_grad()
    def au_tokens_at(self, t: int, aus=None, held: Iterable[int | str] | None = None) -> Tensor:
        """AU tokens ``[17, d]`` of frame ``t`` with ``aus [17]`` held over its window (see the
        module docstring). ``aus=None`` → the cached tokens of the base track.

        Only the window of frame ``t`` goes through the AU encoder (one CIT-AE window, not
        the clip); a per-frame encoder sees just the frame's vector.
        """
        t = self._check_t(t)
        if aus is None:
            return self.au_tokens[t]
        a = self._check_aus(aus)
        hold = self.held_channels(t, a, held)
        if not hold:
            return self.au_tokens[t]
        key = (t, a.tobytes(), hold)
        if key in self._tokens:
            self._tokens.move_to_end(key)
            return self._tokens[key]
        scaled = torch.as_tensor(a, device=self.track.device) / aus_mod.AU_MAX
        idx = list(hold)
        with self.compute_threads():
            if self._windowed:
                w = self._windows[t].clone()  # [17, W]
                w[idx] = scaled[idx, None]
                tok = self.model.au_encoder.encode_windows(w[None])[0]
            else:  # any other encoder: run it over the track with the overrides held (readable, slower)
                tr = self.track.clone()
                tr[:, idx] = torch.as_tensor(a[idx], device=tr.device)
                tok = self.model.au_encoder(tr[None] / aus_mod.AU_MAX)[0, t]
        self._tokens[key] = tok
        while len(self._tokens) > _CACHE_SIZE:
            self._tokens.popitem(last=False)
        return tok

    @contextmanager
    def _bias_applied(self, b: Tensor | None):
        """Set the model's bias table to ``b`` for the block and put the old one back after,
        so the studio never leaves the model changed."""
        cur = None if b is None else self.model.fusion.bias_table.detach().clone()
        if cur is None or torch.equal(cur.cpu(), b):
            yield
            return
        self.model.fusion.set_bias(b)
        try:
            yield
        finally:
            self.model.fusion.set_bias(cur)

    def state(self, t: int, aus=None, bias=None, held: Iterable[int | str] | None = None):
        """The deformed head of frame ``t`` (a ``HeadState`` with batch 1), cached.

        Args:
            t: frame index in ``[0, T)``.
            aus: ``[17]`` intensities (0–5) or ``None`` for the track's own values.
            bias: ``[3, 3]`` SZ-PAB table (rows upper, lower, synergy; columns audio, au,
                null) or ``None`` for the model's own table.
            held: extra AU columns/names to hold even where ``aus`` equals the track.
        """
        t = self._check_t(t)
        b = self._bias(bias)
        hold: tuple[int, ...] = ()
        if aus is not None:
            a = self._check_aus(aus)
            hold = self.held_channels(t, a, held)
        # nothing held ⇒ the track's own tokens: one cache entry whether aus was given or not
        key = (t, a.tobytes() if hold else None, hold, None if b is None else b.numpy().tobytes())
        if key in self._states:
            self._states.move_to_end(key)
            st = self._states[key]
        else:
            u = self.au_tokens_at(t, aus, held)
            with torch.no_grad(), self.compute_threads(), self._bias_applied(b):
                st = self.model.deform(self.audio_tokens[t : t + 1], u[None])
            self._states[key] = st
            while len(self._states) > _CACHE_SIZE:
                self._states.popitem(last=False)
        self.last_state = st
        return st

    def clear_cache(self) -> None:
        """Forget the cached AU tokens and deformed heads (e.g. after changing the model)."""
        self._states.clear()
        self._tokens.clear()
        self._masses.clear()
        self.last_state = None

    def camera(self, yaw: float = 0.0, size: int = 256) -> Camera:
        """The orbit camera at ``yaw`` degrees, ``size × size`` pixels (cached)."""
        size = int(size)
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        key = (float(yaw), size)
        if key not in self._cameras:
            if len(self._cameras) > 64:
                self._cameras.clear()
            cam = Camera.orbit(yaw_deg=float(yaw), pitch_deg=self.pitch, radius=self.radius, fov_deg=self.fov,
                               width=size, height=size)
            self._cameras[key] = cam.to(self.track.device)
        return self._cameras[key]

    @torch.no_grad()
    def render_state(self, state, yaw: float = 0.0, size: int = 256) -> Tensor:
        """Render a batch-1 ``HeadState`` → ``[H, W, 3]`` float in [0, 1]."""
        cam = self.camera(yaw, size)
        with self.compute_threads():
            img = self.model.render(state, cam.viewmat[None], cam.K[None], cam.width, cam.height,
                                    background=self.background, backend=self.backend)
        return img[0, 0]

    def render_frame(self, t: int, aus=None, bias=None, yaw: float = 0.0, size: int = 256,
                     held: Iterable[int | str] | None = None) -> Tensor:
        """Frame ``t`` with the AUs ``aus [17]`` (held over the window around ``t``), the bias
        table ``bias [3, 3]`` and the camera at ``yaw`` → image ``[size, size, 3]`` in [0, 1].

        Costs one deform + one render, or one render when only ``yaw``/``size`` changed.
        """
        return self.render_state(self.state(t, aus, bias, held), yaw, size)

    @torch.no_grad()
    def zone_mass(self, state=None) -> Tensor | None:
        """Mean share of attention on audio / AU / null tokens per zone → ``[Z, 3]``
        (zone-membership weighted; ``None`` for implicit fusion). Default: the last state."""
        st = self.last_state if state is None else state
        if st is None:
            raise ValueError("no state yet; call render_frame() or state() first, or pass a HeadState")
        hit = self._masses.get(id(st))
        if hit is not None and hit[0] is st:
            return hit[1]
        with self.compute_threads():
            mass = self.model.attention_mass(st)
            if mass is not None:
                w = self.model.zone_weights  # [N, Z]
                mass = (w.T @ mass[0]) / w.sum(0)[:, None].clamp_min(1e-8)
        self._masses[id(st)] = (st, mass)
        while len(self._masses) > _CACHE_SIZE:
            self._masses.popitem(last=False)
        return mass

    @torch.no_grad()
    def render_clip(self, overrides: Mapping[int | str, float] | None = None, bias=None, yaw: float = 0.0,
                    size: int = 256, frames: int | slice | Sequence[int] | None = None, chunk: int = 8,
                    progress: bool = False) -> Tensor:
        """Frames ``[F, size, size, 3]`` of the clip with ``overrides`` held (see :meth:`edited_track`).

        ``frames``: ``None`` (all), an int ``n`` (the first ``n``), a slice or indices.
        """
        from tqdm.auto import tqdm  # noqa: PLC0415

        idx = self._frame_indices(frames)
        u_all = self.au_tokens if not overrides else self.model.encode(self.mel_windows, self.energy, self.edited_track(overrides))[1]
        cam = self.camera(yaw, size)
        out = []
        with self._bias_applied(self._bias(bias)):
            for i in tqdm(range(0, len(idx), chunk), desc="studio export", disable=not progress):
                f = idx[i : i + chunk]
                st = self.model.deform(self.audio_tokens[f], u_all[f])
                out.append(self.model.render(st, cam.viewmat[None], cam.K[None], cam.width, cam.height,
                                             background=self.background, backend=self.backend)[:, 0])
        return torch.cat(out)

    def _frame_indices(self, frames) -> Tensor:
        T = self.n_frames
        if frames is None:
            idx = torch.arange(T)
        elif isinstance(frames, (int, np.integer)) and not isinstance(frames, bool):
            if not 1 <= int(frames) <= T:
                raise ValueError(f"frames must be between 1 and {T} (the clip's frame count), got {frames}")
            idx = torch.arange(int(frames))
        elif isinstance(frames, slice):
            idx = torch.arange(T)[frames]
        else:
            idx = torch.as_tensor(list(frames), dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= T:
            raise ValueError(f"frames must select at least one of the clip's {T} frames")
        return idx

    def export_video(self, path: str | os.PathLike | None = None, overrides: Mapping[int | str, float] | None = None,
                     bias=None, yaw: float = 0.0, size: int = 256, frames: int | slice | Sequence[int] | None = None,
                     progress: bool = False) -> Path:
        """Render the clip (see :meth:`render_clip`) and write an mp4 with the matching stretch
        of speech (``viz.write_video``). Default path: :func:`default_export_path`.

        Frames must be consecutive (the sound track is cut to them).
        """
        from .viz import write_video  # noqa: PLC0415

        idx = self._frame_indices(frames)
        if len(idx) > 1 and not bool((idx[1:] - idx[:-1] == 1).all()):
            raise ValueError("export_video needs consecutive frames (the speech is cut to match); pass an int or a slice")
        video = self.render_clip(overrides, bias, yaw, size, idx, progress=progress)
        s0 = int(round(int(idx[0]) / self.fps * self.sr))
        s1 = min(len(self.wave), int(round((int(idx[-1]) + 1) / self.fps * self.sr)))
        return write_video(video, path or default_export_path(), fps=self.fps, audio=(self.wave[s0:s1], self.sr))

    def wav_bytes(self) -> bytes:
        """The utterance as 16-bit PCM WAV bytes (for ``ipywidgets.Audio``)."""
        import soundfile as sf  # noqa: PLC0415

        buf = io.BytesIO()
        sf.write(buf, self.wave, self.sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()


# ---------------------------------------------------------------------- plots
def png_bytes(image, compress_level: int = 1) -> bytes:
    """``[H, W, 3]`` float in [0, 1] (tensor or array) or uint8 → PNG bytes."""
    from PIL import Image  # noqa: PLC0415

    from .viz import to_uint8  # noqa: PLC0415

    u = to_uint8(image)
    if u.ndim != 3 or u.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {tuple(u.shape)}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def plot_zone_mass(mass, zones: Sequence[str] = ZONE_ORDER, modalities: Sequence[str] = MODALITY_NAMES, title: str | None = None):
    """Heat map of the attention share of each zone (rows) on each token modality (columns).

    Args:
        mass: ``[Z, 3]`` (``Studio.zone_mass()``), rows summing to 1.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    m = mass.detach().cpu().numpy() if isinstance(mass, Tensor) else np.asarray(mass, dtype=float)
    if m.ndim != 2 or m.shape != (len(zones), len(modalities)):
        raise ValueError(f"mass must have shape [{len(zones)}, {len(modalities)}] (zones x modalities), got {m.shape}")
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(modalities)), modalities)
    ax.set_yticks(range(len(zones)), zones)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="w" if m[i, j] < 0.6 else "k", fontsize=9)
    ax.set_title(title or "attention share per zone", fontsize=10)
    fig.tight_layout()
    return fig


def plot_au_edit(base, edited, t: int | None = None, names: Sequence[str] | None = None, fps: float = 25.0):
    """The AU series of ``base [T, 17]`` (thin) and ``edited [T, 17]`` (thick) for the AUs
    that differ (or ``names``), with frame ``t`` marked → ``Figure``."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    b = base.detach().cpu().numpy() if isinstance(base, Tensor) else np.asarray(base, dtype=float)
    e = edited.detach().cpu().numpy() if isinstance(edited, Tensor) else np.asarray(edited, dtype=float)
    if b.ndim != 2 or b.shape[1] != aus_mod.N_AUS or b.shape != e.shape:
        raise ValueError(f"base and edited must both have shape [T, 17], got {b.shape} and {e.shape}")
    cols = [aus_mod.au_index(n) for n in names] if names else [k for k in range(aus_mod.N_AUS) if not np.allclose(b[:, k], e[:, k])]
    if not cols:
        cols = [aus_mod.au_index("AU45")]
    x = np.arange(len(b)) / fps
    fig, ax = plt.subplots(figsize=(6.0, 2.6))
    for k in cols:
        line, = ax.plot(x, b[:, k], lw=1, alpha=0.6)
        ax.plot(x, e[:, k], lw=2.2, color=line.get_color(), label=aus_mod.AU_NAMES[k])
    if t is not None:
        ax.axvline(t / fps, color="k", ls="--", lw=1)
    ax.set(xlabel="time (s)", ylabel="intensity", ylim=(-0.2, 5.2))
    ax.legend(fontsize=8, ncol=min(4, len(cols)), loc="upper right")
    ax.set_title("AU track: base (thin) and edited (thick)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- widget
def _au_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {z: [] for z in ZONE_ORDER}
    for name in aus_mod.AU_NAMES:
        groups[aus_mod.FACS[name].zone].append(name)
    return groups


class ExpressionStudio(W.VBox):
    """The expression studio widget (build it with :func:`expression_studio`).

    Child widgets (set their ``.value`` from code or tests): ``image``
    (``ipywidgets.Image``, PNG), ``au_sliders[name]``, ``preset_buttons[name]``,
    ``reset_button``, ``bias_sliders[(zone, modality)]``, ``bias_reset``,
    ``bias_note``, ``frame``, ``yaw``, ``audio``, ``export_button``, ``status``,
    ``info``. ``studio`` is the :class:`Studio`; ``overrides`` maps AU name →
    held value; ``last_ms`` is the latency of the latest update.
    """

    def __init__(self, studio: Studio, size: int = 256, continuous_update: bool | None = None,
                 export_path: str | os.PathLike | None = None, export_size: int | None = None,
                 export_frames: int | slice | None = None) -> None:
        self.studio = studio
        self.size = int(size)
        self.overrides: dict[str, float] = {}
        self.export_path = Path(export_path) if export_path else default_export_path()
        self.export_size = export_size
        self.export_frames = export_frames
        self.last_ms = float("nan")
        self.n_updates = 0
        self.exported: Path | None = None
        self._syncing = False

        t0 = studio.n_frames // 2
        studio.render_frame(t0, None, None, 0.0, self.size)  # warm-up (numba JIT / caches)
        studio.clear_cache()
        tic = time.perf_counter()
        first = studio.render_frame(t0, None, None, 0.0, self.size)  # one deform + one render
        warm_ms = 1e3 * (time.perf_counter() - tic)
        if continuous_update is None:  # drag-updates only when a render keeps up
            continuous_update = warm_ms <= 100.0
        self.continuous_update = bool(continuous_update)
        cu = self.continuous_update

        self.image = W.Image(value=png_bytes(first), format="png", width=self.size, height=self.size)
        self.frame = W.IntSlider(value=t0, min=0, max=studio.n_frames - 1, description="frame",
                                 continuous_update=cu, layout=W.Layout(width=f"{max(self.size, 260)}px"))
        self.yaw = W.FloatSlider(value=0.0, min=-60.0, max=60.0, step=1.0, description="yaw °",
                                 continuous_update=cu, layout=W.Layout(width=f"{max(self.size, 260)}px"))
        self.audio = W.Audio(value=studio.wav_bytes(), format="wav", autoplay=False, loop=False,
                             layout=W.Layout(width=f"{max(self.size, 260)}px"))
        self.export_button = W.Button(description="export video", icon="film", layout=W.Layout(width="140px", min_width="140px"),
                                      tooltip="render the clip with these edits to an mp4 with the speech")
        self.status = W.HTML(value="")
        self.info = W.HTML(value="")

        # AU sliders grouped by FACS zone
        self.au_sliders: dict[str, W.FloatSlider] = {}
        panels, titles = [], []
        base = studio.frame_aus(t0)
        for zone, names in _au_groups().items():
            sl = []
            for n in names:
                s = W.FloatSlider(value=float(base[aus_mod.au_index(n)]), min=0.0, max=5.0, step=0.1, description=n,
                                  tooltip=aus_mod.FACS[n].name, continuous_update=cu, readout_format=".1f",
                                  style={"description_width": "48px"}, layout=W.Layout(width="300px"))
                s.observe(self._on_au(n), names="value")
                self.au_sliders[n] = s
                sl.append(W.HBox([s, W.Label(aus_mod.FACS[n].name, layout=W.Layout(width="150px"))]))
            panels.append(W.VBox(sl))
            titles.append(f"{zone} face ({len(names)} AUs)" if zone != "synergy" else f"synergy: cheeks, nose, lip corners ({len(names)} AUs)")
        self.au_panel = W.Accordion(children=panels, titles=tuple(titles), selected_index=0)

        self.preset_buttons: dict[str, W.Button] = {}
        for name in aus_mod.PRESETS:
            b = W.Button(description=name, layout=W.Layout(width="92px"), tooltip=f"set the AU sliders to the {name} preset")
            b.on_click(self._on_preset(name))
            self.preset_buttons[name] = b
        self.reset_button = W.Button(description="back to track", tooltip="drop the AU edits: sliders follow the AU track again",
                                     layout=W.Layout(width="130px"))
        self.reset_button.on_click(lambda _b: self.reset_aus())

        # SZ-PAB bias table
        self.bias_sliders: dict[tuple[str, str], W.FloatSlider] = {}
        rows = [W.HBox([W.Label("", layout=W.Layout(width="60px"))]
                       + [W.Label(m, layout=W.Layout(width="150px")) for m in MODALITY_NAMES])]
        table = studio.default_bias if studio.has_bias else torch.zeros(3, 3)
        for i, z in enumerate(ZONE_ORDER):
            row = [W.Label(z, layout=W.Layout(width="60px"))]
            for j, m in enumerate(MODALITY_NAMES):
                v = float(table[i, j])
                s = W.FloatSlider(value=max(-8.0, min(8.0, v)), min=-8.0, max=8.0, step=0.1, readout_format=".1f",
                                  continuous_update=cu, disabled=not studio.has_bias, layout=W.Layout(width="150px"))
                s.observe(self._on_bias, names="value")
                self.bias_sliders[(z, m)] = s
                row.append(s)
            rows.append(W.HBox(row))
        if studio.has_bias:
            note = ("SZ-PAB bias B[zone, modality], added to the attention logits of each Gaussian "
                    "(weighted by its zone membership). +2 vs −2 is a factor e⁴ ≈ 55 per token.")
        else:
            note = (f"This model uses {studio.model.config.fusion!r} fusion: it has no zone × modality bias "
                    "table, so these sliders are disabled.")
        self.bias_note = W.HTML(f"<small>{note}</small>")
        self.bias_reset = W.Button(description="model's bias", disabled=not studio.has_bias, layout=W.Layout(width="130px", min_width="130px"),
                                   tooltip="set the sliders back to the model's own table")
        self.bias_reset.on_click(lambda _b: self.reset_bias())
        self.bias_box = W.VBox(rows + [W.HBox([self.bias_reset, self.bias_note])])

        self.frame.observe(self._on_frame, names="value")
        self.yaw.observe(self._on_yaw, names="value")
        self.export_button.on_click(self._on_export)

        help_html = W.HTML("<small>AU sliders follow the AU track at this frame. A slider you move is "
                           "<b>held</b> at its value over CIT-AE's 32-frame window around the frame "
                           "(and over the whole clip in the export).</small>")
        col = f"{max(self.size, 260) + 10}px"
        left = W.VBox([self.image, self.frame, self.yaw, self.audio, self.export_button, self.status, self.info],
                      layout=W.Layout(min_width=col, width=col, flex="0 0 auto"))
        right = W.VBox([W.HBox(list(self.preset_buttons.values())[:4]), W.HBox(list(self.preset_buttons.values())[4:] + [self.reset_button]),
                        help_html, self.au_panel, W.HTML("<b>SZ-PAB bias</b>"), self.bias_box])
        super().__init__([W.HBox([left, right])])
        self.add_class("emozone-studio")
        self._show_info()

    # ------------------------------------------------------------ values
    def current_aus(self) -> np.ndarray:
        """The ``[17]`` AU vector shown: the track at the frame with the overrides."""
        a = self.studio.frame_aus(self.frame.value)
        for n, v in self.overrides.items():
            a[aus_mod.au_index(n)] = v
        return a

    def current_bias(self) -> Tensor | None:
        """The ``[3, 3]`` table of the bias sliders (``None`` without a bias table)."""
        if not self.studio.has_bias:
            return None
        return torch.tensor([[self.bias_sliders[(z, m)].value for m in MODALITY_NAMES] for z in ZONE_ORDER],
                            dtype=torch.float32)

    def compute(self) -> Tensor:
        """The image ``[H, W, 3]`` for the widgets' current values (pure compute)."""
        return self.studio.render_frame(self.frame.value, self.current_aus(), self.current_bias(), self.yaw.value,
                                        self.size, held=tuple(self.overrides))

    def update(self) -> None:
        """Re-render and show the image (called by every control)."""
        tic = time.perf_counter()
        try:
            img = self.compute()
            self.image.value = png_bytes(img)
        except Exception as e:  # show it in the widget, and still raise (tests, logs)
            self.status.value = f"<small>error: {type(e).__name__}: {html.escape(str(e))}</small>"
            raise
        self.last_ms = 1e3 * (time.perf_counter() - tic)
        self.n_updates += 1
        self._show_info()

    def _show_info(self) -> None:
        ms = "" if self.last_ms != self.last_ms else f"last update {self.last_ms:.0f} ms · "
        text = f"{ms}frame {self.frame.value}/{self.studio.n_frames - 1} · {len(self.overrides)} AU edit(s)"
        mass = self.studio.zone_mass() if self.studio.last_state is not None else None
        if mass is not None:
            rows = ZONE_ORDER if mass.shape[0] == len(ZONE_ORDER) else [f"zone {i}" for i in range(mass.shape[0])]
            cells = "".join(
                f"<tr><td>{z}</td>" + "".join(f"<td>{float(mass[i, j]):.2f}</td>" for j in range(mass.shape[1])) + "</tr>"
                for i, z in enumerate(rows)
            )
            text += ("<br><small>attention share</small><table style='font-size:11px'><tr><td></td>"
                     + "".join(f"<td>{m}</td>" for m in MODALITY_NAMES) + f"</tr>{cells}</table>")
        self.info.value = f"<small>{text}</small>"

    def _set_sliders(self, values: np.ndarray) -> None:
        self._syncing = True
        try:
            for n, s in self.au_sliders.items():
                s.value = float(round(float(values[aus_mod.au_index(n)]), 1))
        finally:
            self._syncing = False

    # ------------------------------------------------------------ callbacks
    def _on_au(self, name: str):
        def cb(change) -> None:
            if self._syncing:
                return
            self.overrides[name] = float(change["new"])
            self.update()
        return cb

    def _on_preset(self, name: str):
        def cb(_b) -> None:
            self.set_aus(aus_mod.preset(name))
        return cb

    def set_aus(self, values) -> None:
        """Hold all 17 AUs at ``values [17]`` (what a preset button does); one render."""
        v = self.studio._check_aus(values)
        self.overrides = {n: float(round(float(v[aus_mod.au_index(n)]), 1)) for n in aus_mod.AU_NAMES}
        self._set_sliders(self.current_aus())
        self.update()

    def reset_aus(self) -> None:
        """Drop the AU edits; the sliders follow the AU track again."""
        self.overrides = {}
        self._set_sliders(self.current_aus())
        self.update()

    def reset_bias(self) -> None:
        """Bias sliders back to the model's own table; one render."""
        if not self.studio.has_bias:
            return
        self._syncing = True
        try:
            for i, z in enumerate(ZONE_ORDER):
                for j, m in enumerate(MODALITY_NAMES):
                    self.bias_sliders[(z, m)].value = float(self.studio.default_bias[i, j])
        finally:
            self._syncing = False
        self.update()

    def _on_bias(self, _change) -> None:
        if not self._syncing:
            self.update()

    def _on_frame(self, _change) -> None:
        self._set_sliders(self.current_aus())
        self.update()

    def _on_yaw(self, _change) -> None:
        self.update()

    def _on_export(self, _b=None) -> None:
        self.export()

    def export(self) -> Path:
        """Write the clip with the current edits, bias and yaw to :attr:`export_path`
        (``export_size``, ``export_frames``); what the export button does."""
        self.export_button.disabled = True
        self.status.value = "<small>rendering…</small>"
        tic = time.perf_counter()
        try:
            path = self.studio.export_video(self.export_path, overrides=dict(self.overrides), bias=self.current_bias(),
                                            yaw=self.yaw.value, size=self.export_size or self.size, frames=self.export_frames)
        except Exception as e:
            self.status.value = f"<small>export failed: {type(e).__name__}: {html.escape(str(e))}</small>"
            raise
        finally:
            self.export_button.disabled = False
        self.status.value = f"<small>wrote {html.escape(str(path))} in {time.perf_counter() - tic:.1f} s</small>"
        self.exported = path
        return path



def expression_studio(model=None, audio: str | os.PathLike = "arctic_a0007.wav", size: int = 256, *, aus=None,
                      continuous_update: bool | None = None, export_path: str | os.PathLike | None = None,
                      export_size: int | None = None, export_frames: int | slice | None = None, studio: Studio | None = None):
    """The live expression studio: a render of the head with AU, bias, frame and camera controls.

    Args:
        model: a trained ``EmoZoneLite``; ``None`` → :func:`emozone_lite.train.pretrained`
            (cached on disk; trains first if no run with the default configs finished).
        audio: bundled sample name or path of the utterance.
        size: render size in pixels (square).
        aus: the base AU track (see :class:`Studio`).
        continuous_update: update while dragging; ``None`` → yes when a warm render takes
            ≤ 100 ms on this machine, else only on release.
        export_path: mp4 of the export button (default ``outputs/studio.mp4``).
        export_size, export_frames: size and frames of the export (default: ``size``, all).
        studio: reuse an existing :class:`Studio` (then ``model``/``audio``/``aus`` are ignored).

    Returns:
        an ``ExpressionStudio`` (an ``ipywidgets.VBox``) whose child widgets are
        attributes: ``image``, ``au_sliders["AU01"]``, ``preset_buttons["happy"]``,
        ``bias_sliders[("upper", "au")]``, ``frame``, ``yaw``, ``audio``,
        ``export_button``, ``status``.
    """
    if studio is None:
        if model is None:
            from .train import pretrained  # noqa: PLC0415

            model = pretrained()
        studio = Studio(model, audio, aus)
    return ExpressionStudio(studio, size=size, continuous_update=continuous_update, export_path=export_path,
               export_size=export_size, export_frames=export_frames)
