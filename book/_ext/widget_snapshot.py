"""Static snapshots of ipywidgets outputs, for a course site that loads nothing from a CDN.

A notebook executed by myst-nb (nbclient) keeps, for each widget output, only a reference to a
widget model (``application/vnd.jupyter.widget-view+json``) and saves the models' last state in
the notebook metadata; drawing them needs the ipywidgets JavaScript (html-manager), which myst-nb
loads from a CDN by default. This extension draws them in Python instead, when each page is read:
containers as boxes, sliders / dropdowns / checkboxes / buttons as disabled form controls with their
values, ``Image`` and ``Audio`` widgets from their saved bytes, and ``Output`` widgets (what
``interactive_output`` draws into) with the outputs they held when the notebook finished — its
figures, as ``<img>`` with data URIs. The result is a picture of each widget as the notebook left it;
it is not interactive (run the notebook for that).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from typing import Any

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
VIEW_SCRIPT = re.compile(r'^\s*<script type="' + re.escape(WIDGET_VIEW) + r'">(?P<body>.*)</script>\s*$', re.S)
_CONTROLS = {
    "PlayModel",
    "CheckboxModel",
    "ToggleButtonModel",
    "ValidModel",
    "ButtonModel",
    "TextareaModel",
    "ComboboxModel",
    "PasswordModel",
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NOTE = "Snapshot of the widget as the executed notebook left it; open the notebook in JupyterLab to use it."


def _ref(value: Any) -> str | None:
    return value[len("IPY_MODEL_") :] if isinstance(value, str) and value.startswith("IPY_MODEL_") else None


class _Snapshot:
    """Renders widget models of one notebook's saved state as static HTML."""

    def __init__(self, state: dict[str, Any], docname: str):
        self.state = state
        self.docname = docname
        self.unknown: set[str] = set()
        self.interactive = False  # set once a snapshot draws a slider, dropdown, button, …

    def _buffer(self, model: dict[str, Any], key: str) -> str | None:
        for buf in model.get("buffers", []):
            if buf.get("path") == [key] and buf.get("encoding") == "base64":
                return buf["data"]
        value = model["state"].get(key)
        return value if isinstance(value, str) and value else None

    def _hidden(self, s: dict[str, Any]) -> bool:
        layout = self.state.get(_ref(s.get("layout")) or "", {}).get("state", {})
        return layout.get("display") == "none" or layout.get("visibility") == "hidden"

    def _label(self, s: dict[str, Any]) -> str:
        d = s.get("description") or ""
        if not d:
            return ""
        text = d if s.get("description_allow_html") else html.escape(d)
        return f'<label class="ws-label">{text}</label>'

    def widget(self, model_id: str, depth: int = 0) -> str:
        model = self.state.get(model_id)
        if model is None or depth > 30:
            return '<div class="ws-missing">(widget not saved in the notebook)</div>'
        name, s = model.get("model_name") or "", model["state"]
        if self._hidden(s):
            return ""
        cls = " ".join(html.escape(c) for c in s.get("_dom_classes", []))
        kind = name.removesuffix("Model")
        return f'<div class="ws-widget ws-{kind.lower()} {cls}">{self._body(name, s, model, depth)}</div>'

    def _body(self, name: str, s: dict[str, Any], model: dict[str, Any], depth: int) -> str:
        esc = html.escape
        if name == "OutputModel":
            return "".join(self.output(o, depth + 1) for o in s.get("outputs", []))
        if "children" in s:  # Box, HBox, VBox, GridBox, Tab, Accordion, Stack
            kids = [_ref(c) for c in s.get("children", [])]
            titles = s.get("titles") or s.get("_titles") or []
            if isinstance(titles, dict):  # ipywidgets 7: {"0": "title"}
                titles = [titles.get(str(i), "") for i in range(len(kids))]
            parts = []
            for i, k in enumerate(kids):
                inner = self.widget(k, depth + 1) if k else ""
                title = titles[i] if i < len(titles) and titles[i] else ""
                parts.append(f'<div class="ws-tab-title">{esc(title)}</div>{inner}' if title else inner)
            direction = "ws-row" if name in ("HBoxModel", "GridBoxModel") else "ws-column"
            return f'<div class="{direction}">{"".join(parts)}</div>'
        if name in ("ImageModel", "AudioModel", "VideoModel"):
            data = self._buffer(model, "value")
            if not data:
                return '<span class="ws-missing">(empty)</span>'
            fmt = s.get("format") or "png"
            if name == "ImageModel":
                mime = "svg+xml" if fmt == "svg" else fmt
                size = "".join(f' {a}="{esc(str(s[a]))}"' for a in ("width", "height") if s.get(a))
                return f'<img alt="widget image" src="data:image/{mime};base64,{data}"{size}>'
            tag = "audio" if name == "AudioModel" else "video"
            return f'<{tag} controls src="data:{tag}/{fmt};base64,{data}"></{tag}>'
        if name in ("IntProgressModel", "FloatProgressModel"):  # e.g. tqdm's bar
            lo, hi, value = s.get("min", 0), s.get("max", 100), s.get("value", 0)
            bar = f'<progress max="{hi - lo}" value="{value - lo}"></progress>'
            return f'<div class="ws-row ws-control">{self._label(s)}{bar}</div>'
        if name in ("LabelModel",):
            return f'<span class="ws-text">{esc(str(s.get("value", "")))}</span>'
        if name in ("HTMLModel", "HTMLMathModel"):
            return f'<div class="ws-row ws-control">{self._label(s)}<div>{s.get("value", "")}</div></div>'
        if name.startswith("Layout") or name.endswith("StyleModel"):
            return ""
        if name not in _CONTROLS and not name.endswith(("SliderModel", "TextModel")) and "_options_labels" not in s:
            self.unknown.add(name)
            return f'<span class="ws-text">({esc(name)})</span>'
        self.interactive = True  # a control a reader would move: the snapshot says where to do that
        if "_options_labels" in s:  # Dropdown, Select, RadioButtons, ToggleButtons, SelectionSlider
            labels, index = s.get("_options_labels", []), s.get("index")
            chosen = set(index) if isinstance(index, list) else {index}
            opts = "".join(
                f"<option{' selected' if i in chosen else ''}>{esc(str(label))}</option>"
                for i, label in enumerate(labels)
            )
            return f'<div class="ws-row ws-control">{self._label(s)}<select disabled>{opts}</select></div>'
        if name.endswith("SliderModel") or name == "PlayModel":
            value = s.get("value")
            if isinstance(value, list):  # range sliders
                readout = " – ".join(str(v) for v in value)
                control = f'<span class="ws-readout">{esc(readout)}</span>'
            else:
                lo, hi, step = s.get("min", 0), s.get("max", 100), s.get("step", 1)
                pos = value
                if name == "FloatLogSliderModel":  # the control is linear in the exponent
                    base = s.get("base", 10)
                    pos = math.log(value, base) if value and value > 0 else lo
                rng = f'min="{lo}" max="{hi}" step="{step or "any"}" value="{pos}"'
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                control = (
                    f'<input type="range" disabled {rng} aria-label="{esc(s.get("description") or "")}">'
                    f'<span class="ws-readout">{esc(shown)}</span>'
                )
            return f'<div class="ws-row ws-control">{self._label(s)}{control}</div>'
        if name in ("CheckboxModel", "ToggleButtonModel", "ValidModel"):
            checked = " checked" if s.get("value") else ""
            return f'<div class="ws-row ws-control"><input type="checkbox" disabled{checked}>{self._label(s)}</div>'
        if name == "ButtonModel":
            return f'<button disabled class="ws-button">{esc(s.get("description") or s.get("icon") or "")}</button>'
        if name.endswith("TextModel") or name in ("TextareaModel", "ComboboxModel", "PasswordModel"):
            value = esc(str(s.get("value", "")))
            return f'<div class="ws-row ws-control">{self._label(s)}<input type="text" disabled value="{value}"></div>'
        return f'<span class="ws-text">({esc(name)})</span>'

    def output(self, out: dict[str, Any], depth: int) -> str:
        """One nbformat output (inside an Output widget) as HTML."""
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            return f'<pre class="ws-stream">{html.escape("".join(text) if isinstance(text, list) else text)}</pre>'
        if kind == "error":
            tb = ANSI.sub("", "\n".join(out.get("traceback", [])))
            return f'<pre class="ws-error">{html.escape(tb)}</pre>'
        data = out.get("data", {})

        def text(mime: str) -> str:
            v = data[mime]
            return "".join(v) if isinstance(v, list) else v

        if WIDGET_VIEW in data:
            view = data[WIDGET_VIEW]
            return self.widget(view.get("model_id", ""), depth + 1)
        for mime in ("image/png", "image/jpeg", "image/gif"):
            if mime in data:
                b64 = re.sub(r"\s+", "", text(mime))
                return f'<img alt="output figure" src="data:{mime};base64,{b64}">'
        if "image/svg+xml" in data:
            svg = base64.b64encode(text("image/svg+xml").encode()).decode()
            return f'<img alt="output figure" src="data:image/svg+xml;base64,{svg}">'
        if "text/html" in data:
            return f"<div>{text('text/html')}</div>"
        if "text/plain" in data:
            return f'<pre class="ws-stream">{html.escape(ANSI.sub("", text("text/plain")))}</pre>'
        return ""


def _state_of(env, docname: str) -> dict[str, Any] | None:
    js_files = getattr(env, "nb_metadata", {}).get(docname, {}).get("js_files", {})
    entry = js_files.pop("ipywidgets_state", None)  # drawn here: the page need not carry the JSON
    if entry is None:
        return None
    _uri, kwargs = entry
    return json.loads(kwargs["body"]).get("state", {})


def snapshot_widgets(app, doctree: nodes.document) -> None:
    """doctree-read: replace every widget-view output of a notebook page by its snapshot."""
    env = app.env
    docname = env.docname
    raws = [n for n in doctree.findall(nodes.raw) if WIDGET_VIEW in n.astext() and VIEW_SCRIPT.match(n.astext())]
    if not raws:
        _state_of(env, docname)
        return
    state = _state_of(env, docname) or {}
    snap = _Snapshot(state, docname)
    for raw in raws:
        body = VIEW_SCRIPT.match(raw.astext()).group("body")
        view = json.loads(body)
        if isinstance(view, str):
            view = json.loads(view)
        model_id = view.get("model_id", "")
        if model_id not in state:
            logger.warning(f"{docname}: widget {model_id} has no saved state; its output stays empty")
        snap.interactive = False
        inner = snap.widget(model_id)
        note = f'<p class="ws-note">{NOTE}</p>' if snap.interactive else ""
        text = f'<div class="widget-snapshot" data-model-id="{html.escape(model_id)}">{inner}{note}</div>'
        raw.replace_self(nodes.raw("", text, format="html"))
    for name in sorted(snap.unknown):
        logger.warning(f"{docname}: no static snapshot for widgets of type {name}; shown by name only")


def setup(app):
    app.connect("doctree-read", snapshot_widgets)
    app.add_css_file("widget_snapshot.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
