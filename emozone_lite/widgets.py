"""The expression studio widget: edit the AUs, the SZ-PAB bias and the camera of a trained
EmoZone-lite head and see the render at once.

Three layers, as everywhere in the toolkit:

* **pure compute** — :class:`emozone_lite.studio.Studio` (its own module; the *hold*
  rule for AU edits is explained there);
* **pure plots** — :func:`plot_zone_mass` (where each zone's attention goes) and
  :func:`plot_au_edit` (the AU track with the studio's edits); both return a
  ``Figure``;
* **thin widget** — :func:`expression_studio` wires ``ipywidgets`` controls to a
  ``Studio`` and shows the render as a PNG ``ipywidgets.Image``.
"""

from __future__ import annotations

import html
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as W
import numpy as np
import torch
from torch import Tensor

from . import aus as aus_mod
from .attention import MODALITY_NAMES
from .studio import BIAS_RANGE, ZONE_ORDER, Studio, bias_effect, default_export_path

__all__ = [
    "BIAS_RANGE",
    "ZONE_ORDER",
    "Studio",
    "bias_effect",
    "default_export_path",
    "plot_zone_mass",
    "plot_au_edit",
    "png_bytes",
    "ExpressionStudio",
    "expression_studio",
]


# ---------------------------------------------------------------------- plots
def png_bytes(image, compress_level: int = 1) -> bytes:
    """``[H, W, 3]`` float in [0, 1] (tensor or array) or uint8 → PNG bytes."""
    from PIL import Image

    from .viz import to_uint8

    u = to_uint8(image)
    if u.ndim != 3 or u.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {tuple(u.shape)}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def plot_zone_mass(
    mass, zones: Sequence[str] = ZONE_ORDER, modalities: Sequence[str] = MODALITY_NAMES, title: str | None = None
):
    """Heat map of the attention share of each zone (rows) on each token modality (columns).

    Args:
        mass: ``[Z, 3]`` (``Studio.zone_mass()``), rows summing to 1.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

    b = base.detach().cpu().numpy() if isinstance(base, Tensor) else np.asarray(base, dtype=float)
    e = edited.detach().cpu().numpy() if isinstance(edited, Tensor) else np.asarray(edited, dtype=float)
    if b.ndim != 2 or b.shape[1] != aus_mod.N_AUS or b.shape != e.shape:
        raise ValueError(f"base and edited must both have shape [T, 17], got {b.shape} and {e.shape}")
    cols = (
        [aus_mod.au_index(n) for n in names]
        if names
        else [k for k in range(aus_mod.N_AUS) if not np.allclose(b[:, k], e[:, k])]
    )
    if not cols:
        cols = [aus_mod.au_index("AU45")]
    x = np.arange(len(b)) / fps
    fig, ax = plt.subplots(figsize=(6.0, 2.6))
    for k in cols:
        (line,) = ax.plot(x, b[:, k], lw=1, alpha=0.6)
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

    def __init__(
        self,
        studio: Studio,
        size: int = 256,
        continuous_update: bool | None = None,
        export_path: str | os.PathLike | None = None,
        export_size: int | None = None,
        export_frames: int | slice | None = None,
    ) -> None:
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
        self.frame = W.IntSlider(
            value=t0,
            min=0,
            max=studio.n_frames - 1,
            description="frame",
            continuous_update=cu,
            layout=W.Layout(width=f"{max(self.size, 260)}px"),
        )
        self.yaw = W.FloatSlider(
            value=0.0,
            min=-60.0,
            max=60.0,
            step=1.0,
            description="yaw °",
            continuous_update=cu,
            layout=W.Layout(width=f"{max(self.size, 260)}px"),
        )
        self.audio = W.Audio(
            value=studio.wav_bytes(),
            format="wav",
            autoplay=False,
            loop=False,
            layout=W.Layout(width=f"{max(self.size, 260)}px"),
        )
        self.export_button = W.Button(
            description="export video",
            icon="film",
            layout=W.Layout(width="140px", min_width="140px"),
            tooltip="render the clip with these edits to an mp4 with the speech",
        )
        self.status = W.HTML(value="")
        self.info = W.HTML(value="")

        # AU sliders grouped by FACS zone
        self.au_sliders: dict[str, W.FloatSlider] = {}
        panels, titles = [], []
        base = studio.frame_aus(t0)
        for zone, names in _au_groups().items():
            sl = []
            for n in names:
                s = W.FloatSlider(
                    value=float(base[aus_mod.au_index(n)]),
                    min=0.0,
                    max=5.0,
                    step=0.1,
                    description=n,
                    tooltip=aus_mod.FACS[n].name,
                    continuous_update=cu,
                    readout_format=".1f",
                    style={"description_width": "48px"},
                    layout=W.Layout(width="300px"),
                )
                s.observe(self._on_au(n), names="value")
                self.au_sliders[n] = s
                sl.append(W.HBox([s, W.Label(aus_mod.FACS[n].name, layout=W.Layout(width="150px"))]))
            panels.append(W.VBox(sl))
            titles.append(
                f"{zone} face ({len(names)} AUs)"
                if zone != "synergy"
                else f"synergy: cheeks, nose, lip corners ({len(names)} AUs)"
            )
        self.au_panel = W.Accordion(children=panels, titles=tuple(titles), selected_index=0)

        self.preset_buttons: dict[str, W.Button] = {}
        for name in aus_mod.PRESETS:
            b = W.Button(
                description=name,
                layout=W.Layout(width="auto", min_width="92px"),
                tooltip=f"set the AU sliders to the {name} preset",
            )
            b.on_click(self._on_preset(name))
            self.preset_buttons[name] = b
        self.reset_button = W.Button(
            description="back to track",
            tooltip="drop the AU edits: sliders follow the AU track again",
            layout=W.Layout(width="130px"),
        )
        self.reset_button.on_click(lambda _b: self.reset_aus())

        # SZ-PAB bias table
        self.bias_sliders: dict[tuple[str, str], W.FloatSlider] = {}
        rows = [
            W.HBox(
                [W.Label("", layout=W.Layout(width="60px"))]
                + [W.Label(m, layout=W.Layout(width="150px")) for m in MODALITY_NAMES]
            )
        ]
        table = studio.default_bias if studio.has_bias else torch.zeros(3, 3)
        for i, z in enumerate(ZONE_ORDER):
            row = [W.Label(z, layout=W.Layout(width="60px"))]
            for j, m in enumerate(MODALITY_NAMES):
                v = float(table[i, j])
                s = W.FloatSlider(
                    value=max(-BIAS_RANGE, min(BIAS_RANGE, v)),
                    min=-BIAS_RANGE,
                    max=BIAS_RANGE,
                    step=0.1,
                    readout_format=".1f",
                    continuous_update=cu,
                    disabled=not studio.has_bias,
                    layout=W.Layout(width="150px"),
                )
                s.observe(self._on_bias, names="value")
                self.bias_sliders[(z, m)] = s
                row.append(s)
            rows.append(W.HBox(row))
        if studio.has_bias:
            note = (
                "SZ-PAB bias B[zone, modality], added to the attention logits of each Gaussian "
                "(weighted by its zone membership). +2 vs −2 is a factor e⁴ ≈ 55 per token; a model's "
                "own attention logits can outgrow ±8, so the sliders reach ±30."
            )
        else:
            note = (
                f"This model uses {studio.model.config.fusion!r} fusion: it has no zone × modality bias "
                "table, so these sliders are disabled."
            )
        self.bias_note = W.HTML(f"<small>{note}</small>")
        self.bias_reset = W.Button(
            description="model's bias",
            disabled=not studio.has_bias,
            layout=W.Layout(width="130px", min_width="130px"),
            tooltip="set the sliders back to the model's own table",
        )
        self.bias_reset.on_click(lambda _b: self.reset_bias())
        self.bias_box = W.VBox(rows + [W.HBox([self.bias_reset, self.bias_note])])

        self.frame.observe(self._on_frame, names="value")
        self.yaw.observe(self._on_yaw, names="value")
        self.export_button.on_click(self._on_export)

        help_html = W.HTML(
            "<small>AU sliders follow the AU track at this frame. A slider you move is "
            "<b>held</b> at its value over CIT-AE's 32-frame window around the frame "
            "(and over the whole clip in the export).</small>"
        )
        col = f"{max(self.size, 260) + 10}px"
        left = W.VBox(
            [self.image, self.frame, self.yaw, self.audio, self.export_button, self.status, self.info],
            layout=W.Layout(min_width=col, width=col, flex="0 0 auto"),
        )
        right = W.VBox(
            [
                W.HBox(list(self.preset_buttons.values())[:4]),
                W.HBox(list(self.preset_buttons.values())[4:] + [self.reset_button]),
                help_html,
                self.au_panel,
                W.HTML("<b>SZ-PAB bias</b>"),
                self.bias_box,
            ]
        )
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
        return torch.tensor(
            [[self.bias_sliders[(z, m)].value for m in MODALITY_NAMES] for z in ZONE_ORDER], dtype=torch.float32
        )

    def compute(self) -> Tensor:
        """The image ``[H, W, 3]`` for the widgets' current values (pure compute)."""
        return self.studio.render_frame(
            self.frame.value,
            self.current_aus(),
            self.current_bias(),
            self.yaw.value,
            self.size,
            held=tuple(self.overrides),
        )

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
                f"<tr><td>{z}</td>"
                + "".join(f"<td>{float(mass[i, j]):.2f}</td>" for j in range(mass.shape[1]))
                + "</tr>"
                for i, z in enumerate(rows)
            )
            text += (
                "<br><small>attention share</small><table style='font-size:11px'><tr><td></td>"
                + "".join(f"<td>{m}</td>" for m in MODALITY_NAMES)
                + f"</tr>{cells}</table>"
            )
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
            path = self.studio.export_video(
                self.export_path,
                overrides=dict(self.overrides),
                bias=self.current_bias(),
                yaw=self.yaw.value,
                size=self.export_size or self.size,
                frames=self.export_frames,
            )
        except Exception as e:
            self.status.value = f"<small>export failed: {type(e).__name__}: {html.escape(str(e))}</small>"
            raise
        finally:
            self.export_button.disabled = False
        shown = _relative(path)
        self.status.value = f"<small>wrote {html.escape(shown)} in {time.perf_counter() - tic:.1f} s</small>"
        self.exported = path
        return path


def expression_studio(
    model=None,
    audio: str | os.PathLike = "arctic_a0007.wav",
    size: int = 256,
    *,
    aus=None,
    continuous_update: bool | None = None,
    export_path: str | os.PathLike | None = None,
    export_size: int | None = None,
    export_frames: int | slice | None = None,
    studio: Studio | None = None,
    threads: int | None = None,
):
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
        studio: reuse an existing :class:`Studio` (then ``model``/``audio``/``aus``/``threads`` are ignored).
        threads: thread count for torch and numba, applied once for the process
            (:func:`emozone_lite.threads.configure_threads`); ``None`` leaves it alone.

    Returns:
        an ``ExpressionStudio`` (an ``ipywidgets.VBox``) whose child widgets are
        attributes: ``image``, ``au_sliders["AU01"]``, ``preset_buttons["happy"]``,
        ``bias_sliders[("upper", "au")]``, ``frame``, ``yaw``, ``audio``,
        ``export_button``, ``status``.
    """
    if studio is None:
        if model is None:
            from .train import pretrained

            model = pretrained()
        studio = Studio(model, audio, aus, threads=threads)
    return ExpressionStudio(
        studio,
        size=size,
        continuous_update=continuous_update,
        export_path=export_path,
        export_size=export_size,
        export_frames=export_frames,
    )


def _relative(path) -> str:
    """``path`` relative to the working folder when that is short (no machine-specific prefix in
    what the widget shows), else as given."""
    try:
        rel = os.path.relpath(Path(path).resolve(), Path.cwd().resolve())
    except ValueError:  # another drive (Windows)
        return str(path)
    return rel if rel.count("..") <= 2 else str(path)
