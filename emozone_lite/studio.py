"""The expression studio's pure compute: :class:`Studio` (no widgets).

``Studio(model, audio, aus)`` holds a model, one utterance's audio features, an AU
track and the camera defaults. ``render_frame(t, aus, bias, yaw, size)`` gives the
image of frame ``t``. The audio tokens of the whole clip are encoded **once**; a
changed AU vector re-encodes only the AU tokens of frame ``t`` (one CIT-AE window);
the deformed head is cached per (frame, AUs, bias), so moving the camera costs one
render and any other change one deform + one render. The widget that wires sliders
to it lives in :mod:`emozone_lite.widgets`.

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

import io
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import aus as aus_mod
from .attention import MODALITY_NAMES, SZPAB
from .audio import FEATURE_SR, load_audio
from .camera import Camera
from .threads import configure_threads
from .utils import data_path, outputs_dir
from .zones import ZONE_NAMES

__all__ = ["BIAS_RANGE", "ZONE_ORDER", "Studio", "bias_effect", "default_export_path"]

ZONE_ORDER: tuple[str, ...] = tuple(ZONE_NAMES)

#: The studio's SZ-PAB bias sliders span ``±BIAS_RANGE`` (:func:`bias_effect` moves an entry to
#: ``-BIAS_RANGE``). ±8 (a factor e⁸ ≈ 3000 per token) is enough for the shipped model, but the
#: attention logits of a model trained longer with one level embedding per AU outgrow it: with
#: its upper zone's AU entry at −8 a surprise's brows stayed up (detected AU01 + AU02 over
#: neutral 5.33 → 5.86), at −30 they came down (−0.09); ``ModelConfig(au_level="per_au")``,
#: 3000 steps, ``benchmarks/expression_control.py``, a0007.
BIAS_RANGE: float = 30.0

_CACHE_SIZE = 16


def default_export_path() -> Path:
    """``studio.mp4`` in :func:`emozone_lite.utils.outputs_dir` (``./outputs`` or ``EMOZONE_OUTPUTS``)."""
    return outputs_dir() / "studio.mp4"


def _resolve_audio(audio: str | os.PathLike) -> Path:
    p = Path(audio)
    if p.exists():
        return p
    if p.parent == Path(".") or str(p.parent) == "":
        return data_path(str(p))  # a bundled sample name; raises a clear FileNotFoundError
    raise FileNotFoundError(
        f"audio file not found: {p}; pass a path or the name of a bundled sample such as 'arctic_a0007.wav'"
    )


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
        background: RGB background of the renders (without a portrait).
        portrait: the whole portrait around the face (:mod:`emozone_lite.head.portrait`): ``None``
            (default) uses the bundled ``portrait.ply`` when the model's head is the bundled head
            (every model Gaussian is one of the portrait's face Gaussians) and the plain
            background otherwise; ``False`` never; ``True`` the bundled one (an error when it does
            not fit the model's head); a :class:`~emozone_lite.head.portrait.Portrait` or a path.
            With a portrait the camera is the photo's, orbited about the face
            (:meth:`Portrait.view <emozone_lite.head.portrait.Portrait.view>`: ``yaw``, ``pitch``,
            ``zoom``; ``radius`` and ``fov`` are not used) and the face is rendered over the
            portrait's scenery (hair, neck, shoulders, background), which is rendered once per
            camera and cached: a slider update still renders only the face.
        zoom: the portrait camera's zoom about the face (2.0: head and shoulders).
        backend: rasterizer backend (``"auto"``: gsplat on CUDA, else the CPU one).
        threads: ``None`` (default) leaves the process's thread counts alone; an int applies
            the toolkit's thread policy once, at construction, for the whole process
            (:func:`emozone_lite.threads.configure_threads`). One update is a few small ops
            on ~6k Gaussians, where a second thread's synchronisation costs about what it
            saves on an idle 2-core machine and much more as soon as the cores are shared
            (a browser beside the kernel, other jobs): ``benchmarks/bench_studio.py
            --threads`` measures both.

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

    def __init__(
        self,
        model,
        audio: str | os.PathLike = "arctic_a0007.wav",
        aus=None,
        *,
        fps: float = 25.0,
        pitch: float = 0.0,
        radius: float = 4.0,
        fov: float = 30.0,
        background: Sequence[float] = (1.0, 1.0, 1.0),
        backend: str = "auto",
        threads: int | None = None,
        portrait=None,
        zoom: float = 2.0,
    ) -> None:
        from .model import EmoZoneLite

        if not isinstance(model, EmoZoneLite):
            raise ValueError(
                f"model must be an EmoZoneLite (e.g. emozone_lite.train.pretrained()), got {type(model).__name__}"
            )
        self.model = model.eval()
        self.audio_path = _resolve_audio(audio)
        self.wave = load_audio(self.audio_path, FEATURE_SR)
        self.sr = FEATURE_SR
        feats = model.audio_features(self.wave, FEATURE_SR, fps)  # the model's front-end
        self.fps = float(feats.fps)
        self.n_frames = int(feats.n_frames)
        dev = model.means.device
        self.mel_windows = torch.as_tensor(feats.mel_windows, dtype=torch.float32, device=dev)
        self.energy = torch.as_tensor(feats.energy, dtype=torch.float32, device=dev)
        self.track = torch.as_tensor(self._base_track(aus), dtype=torch.float32, device=dev)
        self.pitch, self.radius, self.fov = float(pitch), float(radius), float(fov)
        self.background = torch.as_tensor(background, dtype=torch.float32, device=dev).reshape(3)
        self.zoom = float(zoom)
        if not self.zoom > 0:
            raise ValueError(f"zoom must be > 0, got {zoom}")
        self.portrait = self._resolve_portrait(portrait)
        self._scenery: dict = {}
        self.backend = backend
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        configure_threads(threads)  # once, explicitly; nothing is flipped per render

        fusion = model.fusion
        self.has_bias = isinstance(fusion, SZPAB) and tuple(fusion.bias_table.shape) == (
            len(ZONE_ORDER),
            len(MODALITY_NAMES),
        )
        self.default_bias: Tensor | None = fusion.bias_table.detach().clone().cpu() if self.has_bias else None

        with torch.no_grad():
            self.audio_tokens, self.au_tokens = model.encode(self.mel_windows, self.energy, self.track)
            enc = model.au_encoder
            # CIT-AE windows of the base track (AU intensities scaled to [0, 1] as in model.encode)
            self._windows = enc.windows(self.track[None] / aus_mod.AU_MAX)[0] if self._windowed else None
        self._states: OrderedDict = OrderedDict()
        self._tokens: OrderedDict = OrderedDict()
        self._cameras: dict = {}
        self._masses: OrderedDict = OrderedDict()
        self.last_state = None  # the HeadState of the latest render_frame / state call

    # ------------------------------------------------------------------ inputs
    def _resolve_portrait(self, portrait):
        from .head.portrait import Portrait, load_portrait, matches_head

        if portrait is False:
            return None
        if isinstance(portrait, Portrait):
            p = portrait
        elif portrait is None or portrait is True:
            try:
                p = load_portrait()
            except FileNotFoundError:
                if portrait is True:
                    raise
                return None
        else:
            p = load_portrait(portrait)
        if not matches_head(p, self.model.means):
            if portrait is None:
                return None  # auto: this model was trained on another head
            raise ValueError(
                "the portrait does not fit this model's head (its face Gaussians are not the model's); "
                "build one around that head with emozone_lite.head.portrait.build_portrait(head=...), or pass "
                "portrait=False"
            )
        return p

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
            raise ValueError(
                f"this model ({self.model.config.name}) has no zone x modality bias table to set; pass bias=None"
            )
        b = torch.as_tensor(bias, dtype=torch.float32).cpu()
        if b.shape != (3, 3):
            raise ValueError(
                f"bias must have shape [3, 3] (rows upper, lower, synergy; columns audio, au, null), got {tuple(b.shape)}"
            )
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
            with torch.no_grad(), self._bias_applied(b):
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
        """The camera at ``yaw`` degrees, ``size × size`` pixels (cached): the orbit camera, or with
        a portrait the photo's camera orbited about the face (``pitch``, ``zoom``)."""
        size = int(size)
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        key = (float(yaw), size)
        if key not in self._cameras:
            if len(self._cameras) > 64:
                self._cameras.clear()
            if self.portrait is not None:
                cam = self.portrait.view(float(yaw), self.pitch, size, self.zoom)
            else:
                cam = Camera.orbit(
                    yaw_deg=float(yaw), pitch_deg=self.pitch, radius=self.radius, fov_deg=self.fov, width=size,
                    height=size,
                )  # fmt: skip
            self._cameras[key] = cam.to(self.track.device)
        return self._cameras[key]

    @torch.no_grad()
    def render_state(self, state, yaw: float = 0.0, size: int = 256) -> Tensor:
        """Render a batch-1 ``HeadState`` → ``[H, W, 3]`` float in [0, 1]."""
        return self._render(state, self.camera(yaw, size))[0]

    def scenery(self, cam: Camera) -> Tensor | None:
        """The portrait's scenery seen by ``cam`` ``[H, W, 3]`` (cached per camera), or ``None``."""
        if self.portrait is None:
            return None
        key = id(cam)
        hit = self._scenery.get(key)
        if hit is None or hit[0] is not cam:
            from .head.portrait import render_scenery

            if len(self._scenery) > 16:
                self._scenery.clear()
            # the portrait lives on the CPU; its ~50k Gaussians go through the fast renderer even when
            # the face uses the slow readable twin (backend="torch")
            img = render_scenery(self.portrait, cam.to("cpu"), backend="cpu" if self.backend == "torch" else "auto")
            hit = self._scenery[key] = (cam, img.to(self.track.device))
        return hit[1]

    def _render(self, state, cam: Camera) -> Tensor:
        """``HeadState`` with batch B → ``[B, H, W, 3]`` from one camera, on the studio's background
        (the portrait's scenery when there is one)."""
        scenery = self.scenery(cam)
        img = self.model.render(
            state,
            cam.viewmat[None],
            cam.K[None],
            cam.width,
            cam.height,
            background=self.background if scenery is None else scenery,
            backend=self.backend,
        )
        return img[:, 0]

    def render_frame(
        self, t: int, aus=None, bias=None, yaw: float = 0.0, size: int = 256, held: Iterable[int | str] | None = None
    ) -> Tensor:
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
        mass = self.model.attention_mass(st)
        if mass is not None:
            w = self.model.zone_weights  # [N, Z]
            mass = (w.T @ mass[0]) / w.sum(0)[:, None].clamp_min(1e-8)
        self._masses[id(st)] = (st, mass)
        while len(self._masses) > _CACHE_SIZE:
            self._masses.popitem(last=False)
        return mass

    @torch.no_grad()
    def render_clip(
        self,
        overrides: Mapping[int | str, float] | None = None,
        bias=None,
        yaw: float = 0.0,
        size: int = 256,
        frames: int | slice | Sequence[int] | None = None,
        chunk: int = 8,
        progress: bool = False,
    ) -> Tensor:
        """Frames ``[F, size, size, 3]`` of the clip with ``overrides`` held (see :meth:`edited_track`).

        ``frames``: ``None`` (all), an int ``n`` (the first ``n``), a slice or indices.
        """
        from tqdm.auto import tqdm

        idx = self._frame_indices(frames)
        u_all = (
            self.au_tokens
            if not overrides
            else self.model.encode(self.mel_windows, self.energy, self.edited_track(overrides))[1]
        )
        cam = self.camera(yaw, size)
        out = []
        with self._bias_applied(self._bias(bias)):
            for i in tqdm(range(0, len(idx), chunk), desc="studio export", disable=not progress):
                f = idx[i : i + chunk]
                st = self.model.deform(self.audio_tokens[f], u_all[f])
                out.append(self._render(st, cam))
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

    def export_video(
        self,
        path: str | os.PathLike | None = None,
        overrides: Mapping[int | str, float] | None = None,
        bias=None,
        yaw: float = 0.0,
        size: int = 256,
        frames: int | slice | Sequence[int] | None = None,
        progress: bool = False,
    ) -> Path:
        """Render the clip (see :meth:`render_clip`) and write an mp4 with the matching stretch
        of speech (``viz.write_video``). Default path: :func:`default_export_path`.

        Frames must be consecutive (the sound track is cut to them).
        """
        from .viz import write_video

        idx = self._frame_indices(frames)
        if len(idx) > 1 and not bool((idx[1:] - idx[:-1] == 1).all()):
            raise ValueError(
                "export_video needs consecutive frames (the speech is cut to match); pass an int or a slice"
            )
        video = self.render_clip(overrides, bias, yaw, size, idx, progress=progress)
        s0 = int(round(int(idx[0]) / self.fps * self.sr))
        s1 = min(len(self.wave), int(round((int(idx[-1]) + 1) / self.fps * self.sr)))
        return write_video(video, path or default_export_path(), fps=self.fps, audio=(self.wave[s0:s1], self.sr))

    def wav_bytes(self) -> bytes:
        """The utterance as 16-bit PCM WAV bytes (for ``ipywidgets.Audio``)."""
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, self.wave, self.sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()


def bias_effect(
    studio: Studio,
    preset: str = "surprise",
    value: float = -BIAS_RANGE,
    frames: int | slice | Sequence[int] | None = slice(None, None, 2),
    size: int = 256,
    brow_aus: Sequence[str] = ("AU01", "AU02"),
) -> dict:
    """What two moves of the SZ-PAB table do to the rendered face, as the face detector reads it.

    The clip is rendered from the front with ``preset`` held over it (``studio.render_clip``)
    under three tables: the model's own, the model's with the upper zone's **AU** entry set to
    ``value`` (``"upper_au"``), and the model's with the lower zone's **audio** entry set to
    ``value`` (``"lower_audio"``); and once with the neutral preset under the model's table.
    The default ``value`` is the end of the studio's bias sliders (:data:`BIAS_RANGE`). Every
    frame goes through the face detector (MediaPipe, the ``landmarks`` extra) and the landmark AU
    reading relative to the neutral clip's middle frame (:func:`emozone_lite.landmarks.estimate_aus`).

    Returns:
        ``{"tables": {name: [3, 3] list}, "brow_rise": {name: float}, "mouth": {name: {"corr",
        "range"}}, "images": {name: [size, size, 3] uint8}, "frames": [indices], "faces_missing"}``.
        ``brow_rise``: the mean over frames of the detected ``brow_aus`` summed, minus the neutral
        clip's (frame by frame). ``mouth``: the detected mouth opening per frame
        (:func:`emozone_lite.metrics.mouth_opening`) against the model's table's — Pearson
        correlation (does the mouth still follow the same speech?) and the range ratio
        (:func:`emozone_lite.metrics.mouth_range_ratio`: how far it still opens). ``images``: the
        middle selected frame under each table, for a before/after figure. Frames where the
        detector finds no face are left out (counted in ``faces_missing``).
    """
    from .landmarks import detect_landmarks_images, estimate_aus
    from .metrics import lip_sync_corr, mouth_opening, mouth_range_ratio

    if not studio.has_bias:
        raise ValueError(
            f"this model ({studio.model.config.name}) has no zone x modality bias table; bias_effect needs SZ-PAB fusion"
        )
    if preset not in aus_mod.EMOTION_PRESETS:
        raise ValueError(f"preset must be one of {list(aus_mod.EMOTION_PRESETS)}, got {preset!r}")
    cols = [_au_column(a) for a in brow_aus]
    b0 = studio.default_bias.clone()
    upper, lower = b0.clone(), b0.clone()
    upper[ZONE_ORDER.index("upper"), MODALITY_NAMES.index("au")] = float(value)
    lower[ZONE_ORDER.index("lower"), MODALITY_NAMES.index("audio")] = float(value)
    tables = {"model": b0, "upper_au": upper, "lower_audio": lower}
    idx = studio._frame_indices(frames)

    def held(name: str) -> dict[int, float]:
        return dict(enumerate(aus_mod.preset(name).tolist()))

    clips = {"neutral": (held("neutral"), b0)} | {name: (held(preset), table) for name, table in tables.items()}
    frames_of = {}
    for name, (overrides, table) in clips.items():
        video = studio.render_clip(overrides, table, 0.0, size, idx)
        frames_of[name] = [(v.clamp(0, 1) * 255).round().to(torch.uint8).numpy() for v in video]
    every = detect_landmarks_images([im for imgs in frames_of.values() for im in imgs])  # one detector for all
    n_f = len(idx)
    detected = {name: every[k * n_f : (k + 1) * n_f] for k, name in enumerate(frames_of)}
    neutral = detected["neutral"]
    ref = neutral[n_f // 2]
    if ref is None:
        raise ValueError("the detector finds no face on the neutral render's middle frame; bias_effect is undefined")
    missing = sum(f is None for f in neutral)
    brows_neutral = {i: float(estimate_aus(f, ref)[cols].sum()) for i, f in enumerate(neutral) if f is not None}
    read, opening, images = {}, {}, {}
    for name in tables:
        fs = detected[name]
        images[name] = frames_of[name][n_f // 2]
        missing += sum(f is None for f in fs)
        ok = [i for i, f in enumerate(fs) if f is not None and i in brows_neutral]
        if len(ok) < 2:
            raise ValueError(f"the detector finds a face on fewer than 2 frames of the {name!r} table's clip")
        a = np.array([estimate_aus(fs[i], ref)[cols].sum() for i in ok])
        read[name] = float((a - np.array([brows_neutral[i] for i in ok])).mean())
        opening[name] = (ok, mouth_opening(np.stack([fs[i].pixels for i in ok])))
    ok0, m0 = opening["model"]
    mouth = {}
    for name, (ok, m) in opening.items():
        both = sorted(set(ok) & set(ok0))
        a = m[[ok.index(i) for i in both]]
        b = m0[[ok0.index(i) for i in both]]
        mouth[name] = {"corr": lip_sync_corr(a, b), "range": mouth_range_ratio(a, b)}
    return {
        "tables": {k: v.tolist() for k, v in tables.items()},
        "brow_rise": read,
        "mouth": mouth,
        "images": images,
        "frames": idx.tolist(),
        "faces_missing": missing,
    }
