"""Plotly figures on the course site, drawn by the plotly.js that the ``plotly`` package ships.

A notebook executed outside a Jupyter front-end (myst-nb / nbclient) gets plotly's
``application/vnd.plotly.v1+json`` output only — the figure as JSON, with no HTML fallback — which
myst-nb does not render (notebook 03's 3-D zone view would be missing). This extension renders that
output as a ``<div>`` plus a ``Plotly.newPlot`` call, and serves ``plotly.min.js`` from the site's
own ``_static/`` (copied from the installed ``plotly`` package), so no CDN is involved.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from docutils import nodes

PLOTLY = "application/vnd.plotly.v1+json"


def _plotly_js() -> Path | None:
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


class PlotlyOffline:
    """A myst-nb mime renderer plugin for plotly's JSON output."""

    mime_priority_overrides = [("html", PLOTLY, 25), ("dirhtml", PLOTLY, 25), ("singlehtml", PLOTLY, 25)]

    @staticmethod
    def handle_mime(renderer, data, inline: bool):
        if inline or data.mime_type != PLOTLY or _plotly_js() is None:
            return None
        fig = data.content if isinstance(data.content, dict) else json.loads(data.string)
        spec = json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {})}).replace("</", "<\\/")
        div = "plotly-" + hashlib.sha1(spec.encode()).hexdigest()[:12]
        renderer.add_js_file("plotly_config", None, {"body": "window.PlotlyConfig = {MathJaxConfig: 'local'};"})
        renderer.add_js_file("plotly", "plotly.min.js", {})
        text = (
            f'<div class="plotly-output"><div id="{div}" class="plotly-graph-div" '
            f'style="height:525px; width:100%;"></div><script type="text/javascript">'
            f'window.addEventListener("load", function () {{ var f = {spec}; '
            f'Plotly.newPlot("{div}", f.data, f.layout, {{responsive: true}}); }});</script></div>'
        )
        return [nodes.raw("", text, format="html")]


def _copy_plotly_js(app, exception) -> None:
    src = _plotly_js()
    if exception is None and src is not None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, static / "plotly.min.js")


def setup(app):
    import myst_nb.core.render as render

    base = render.load_mime_renders
    if not getattr(base, "_with_plotly", False):

        def load_mime_renders():
            return [*base(), PlotlyOffline]

        load_mime_renders._with_plotly = True
        render.load_mime_renders = load_mime_renders
    app.connect("build-finished", _copy_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
