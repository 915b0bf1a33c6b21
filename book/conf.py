"""Sphinx + myst-nb configuration of the course site (`make book` → site/).

`make book` copies this folder, notebooks/*.ipynb and docs/{design,teaching}.md (+ docs/*.png)
into build/book/src/ and runs sphinx-build there; nothing here is read from the network at build
time, and the built pages load nothing from outside the site (MathJax is served from site/_static).

Notebooks are executed during the build (EMOZONE_FAST=1 from the Makefile), outputs cached by
jupyter-cache under build/book/ (``BOOK_EXECUTION=force`` re-runs them all); an error in any cell
fails the build. Widget outputs are rendered as static snapshots by ``_ext/widget_snapshot.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "emozone-lite"
author = "emozone-lite contributors"
copyright = "emozone-lite contributors, MIT licence"

extensions = ["myst_nb", "widget_snapshot", "plotly_offline", "kernel_poll"]
root_doc = "index"
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "outputs", "jupyter_execute", "README.md"]
suppress_warnings = ["myst.xref_missing", "misc.highlighting_failure"]
smartquotes = False  # keep the notebooks' quotes as written (titles, code-like text)

# --- MyST ---------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- notebook execution (myst-nb) ---------------------------------------------------------------
BUILD = Path(os.environ.get("BOOK_BUILD_DIR", HERE.parent))  # build/book/ when run by `make book`
nb_execution_mode = os.environ.get("BOOK_EXECUTION", "cache")  # "cache" | "force"
nb_execution_cache_path = str(BUILD / "jupyter_cache")
nb_execution_timeout = int(os.environ.get("BOOK_CELL_TIMEOUT", "1200"))  # seconds per cell (07 is the slow one)
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_execution_in_temp = False  # run in the notebook's folder: notebook 07 reads ../docs/claim
nb_merge_streams = True
# No ipywidgets JavaScript from a CDN: widget outputs become static snapshots (widget_snapshot.py).
nb_ipywidgets_js: dict = {}

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "emozone-lite course"
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": "https://github.com/emozone-lite/emozone-lite",
    "use_repository_button": False,  # no external links in the header; the index links the repository
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
    # a launch menu on every notebook page: plain links to Colab and Binder (nothing loaded from them)
    "path_to_docs": "notebooks",
    "repository_branch": "main",
    "launch_buttons": {"colab_url": "https://colab.research.google.com", "binderhub_url": "https://mybinder.org"},
}
html_static_path: list[str] = ["_static"]


def _offline_mathjax() -> str | None:
    """Copy MathJax 3 (tex-chtml + its fonts and TeX extensions) from the installed
    ``django-static-mathjax`` wheel into build/book/static/, so pages typeset equations with no
    CDN. Returns the static folder, or None when the package is missing (then Sphinx's default
    CDN MathJax is used, which figures never depend on)."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        return None
    static = BUILD / "static"
    dest = static / "mathjax"
    if not (dest / "tex-chtml.js").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(es5 / "tex-chtml.js", dest / "tex-chtml.js")
        for sub in ("output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y"):
            if (es5 / sub).is_dir():
                shutil.copytree(es5 / sub, dest / sub, dirs_exist_ok=True)
    return str(static)


_static = _offline_mathjax()
if _static is not None:
    html_static_path.append(_static)
    mathjax_path = "mathjax/tex-chtml.js"
