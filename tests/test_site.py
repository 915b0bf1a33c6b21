"""The course site (`make book` → site/) in a real browser: headless Chromium (Playwright).

Serves the built site on loopback (``http.server`` in a thread, a random free port), opens the
index and each notebook's page in Debian's Chromium (``/usr/bin/chromium``; Playwright never
downloads a browser here) and checks what a reader sees: each page has its notebook's title;
every image in a cell output has loaded; there are at least as many output images as the executed
notebook has image/png outputs (read from the notebooks myst-nb wrote while building, in
build/book/jupyter_execute/); widget outputs show a static snapshot, not an empty box; plotly figures are drawn; the index
links every page and the guides; and nothing is requested from a host other than the loopback one.

``EMOZONE_SITE`` (default site/) and ``EMOZONE_SITE_NOTEBOOKS`` (default build/book/jupyter_execute/)
point elsewhere. Skips, with its reason, when the site is not built or when no Chromium binary is
found or Playwright cannot be imported; `make book` builds the site and then runs this file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _chromium import CHROMIUM_NAMES, LAUNCH_ARGS, find_chromium

REPO = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("EMOZONE_SITE", REPO / "site")).resolve()
EXECUTED = Path(os.environ.get("EMOZONE_SITE_NOTEBOOKS", REPO / "build" / "book" / "jupyter_execute")).resolve()
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GUIDES = {"design": "emozone-lite — design", "teaching": "Teaching with emozone-lite"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The output images of a page: [src, complete, naturalWidth, in a widget snapshot] of every <img>
#: in a cell output.
OUTPUT_IMAGES = """() => [...document.querySelectorAll('.cell_output img')]
  .map(i => [i.getAttribute('src').slice(0, 80), i.complete, i.naturalWidth, !!i.closest('.widget-snapshot')])"""

#: Widget snapshots: [visual elements inside, text] of each one.
SNAPSHOTS = """() => [...document.querySelectorAll('.cell_output .widget-snapshot')]
  .map(s => [s.querySelectorAll('img, input, select, button, textarea, table, progress, audio, video').length, s.innerText.slice(0, 80)])"""

#: Plotly figures that plotly.js drew (it marks each with .js-plotly-plot).
PLOTS = "() => document.querySelectorAll('.cell_output .plotly-output .js-plotly-plot').length"

#: Widget outputs left as they are in the notebook (a <script> only a widget manager would draw).
UNDRAWN = f"""() => document.querySelectorAll('.cell_output script[type="{WIDGET_VIEW}"]').length"""


def _title(nb: Path) -> str:
    """The notebook's title: the first Markdown heading of its first Markdown cell."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    md = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    return re.search(r"^#\s+(.+)$", md, re.M).group(1).strip()


def _outputs(stem: str) -> dict[str, int] | None:
    """Counts of image/png and widget outputs of the executed notebook myst-nb wrote, or None."""
    path = EXECUTED / f"{stem}.ipynb"
    if not path.is_file():
        return None
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    outs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    data = [o.get("data", {}) for o in outs if o["output_type"] in ("display_data", "execute_result")]
    return {
        "png": sum("image/png" in d for d in data),
        "widgets": sum(WIDGET_VIEW in d for d in data),
        "plotly": sum(PLOTLY in d for d in data),
    }


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # quiet: no line per request in the test output
        pass


@pytest.fixture(scope="module")
def server():
    """The built site over HTTP on 127.0.0.1 (a random free port)."""
    if not (SITE / "index.html").is_file():
        pytest.skip(f"the course site is not built ({SITE / 'index.html'} missing): run `make book`")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            f"no Chromium binary found (looked for {', '.join(CHROMIUM_NAMES)}); "
            "install Debian's chromium: apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright cannot be imported ({e}); pip install playwright")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def visit(browser, server):
    """Open a page of the site; returns (page, log), where log lists the requests that went to
    another host (blocked), failed, or were answered with an HTTP error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    log = {"outside": [], "failed": [], "http_errors": []}
    loopback = urlsplit(server).netloc

    def route(r):
        if urlsplit(r.request.url).scheme in ("data", "blob") or urlsplit(r.request.url).netloc == loopback:
            r.continue_()
        else:
            log["outside"].append(r.request.url)
            r.abort()

    context.route("**/*", route)

    def open_(name: str):
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.on("requestfailed", lambda r: log["failed"].append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and log["http_errors"].append(f"{r.status} {r.url}"))
        response = page.goto(f"{server}/{name}", wait_until="load")
        assert response is not None and response.status == 200, f"{name}: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")
        return page, log

    yield open_
    context.close()


def test_the_site_has_one_page_per_notebook_and_the_guides():
    if not (SITE / "index.html").is_file():
        pytest.skip(f"the course site is not built ({SITE / 'index.html'} missing): run `make book`")
    assert len(NOTEBOOKS) == 9, [p.name for p in NOTEBOOKS]
    missing = [f"{p.stem}.html" for p in NOTEBOOKS if not (SITE / f"{p.stem}.html").is_file()]
    missing += [f"{g}.html" for g in GUIDES if not (SITE / f"{g}.html").is_file()]
    assert not missing, f"pages missing from {SITE}: {missing}"


def test_index_shows_the_course_map_and_links_every_page(visit):
    page, log = visit("index.html")
    hrefs = page.eval_on_selector_all(".bd-article a[href]", "els => els.map(a => a.getAttribute('href'))")
    targets = {h.split("#")[0] for h in hrefs}
    for name in [*(f"{p.stem}.html" for p in NOTEBOOKS), *(f"{g}.html" for g in GUIDES)]:
        assert name in targets, f"the index does not link {name}; it links {sorted(targets)}"
    rows = page.locator(".bd-article table tbody tr").count()
    assert rows == len(NOTEBOOKS), f"the course map has {rows} rows, expected one per notebook ({len(NOTEBOOKS)})"
    assert not log["outside"], f"the index requested other hosts: {log['outside']}"
    assert not log["failed"] and not log["http_errors"], log


@pytest.mark.parametrize("name,title", GUIDES.items())
def test_guide_pages_are_rendered(visit, name, title):
    page, log = visit(f"{name}.html")
    assert page.locator(".bd-article h1").first.inner_text().strip().rstrip("#").strip() == title
    assert len(page.locator(".bd-article").inner_text()) > 2000, f"{name}.html looks empty"
    assert not log["outside"], f"{name}.html requested other hosts: {log['outside']}"
    assert not log["failed"] and not log["http_errors"], log


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_page_shows_its_figures(visit, nb):
    page, log = visit(f"{nb.stem}.html")
    title = _title(nb)
    h1 = page.locator(".bd-article h1").first.inner_text().strip().rstrip("#").strip()
    assert h1 == title, f"{nb.stem}.html: heading {h1!r}, the notebook's title is {title!r}"
    assert title in page.title(), f"{nb.stem}.html: <title> {page.title()!r} lacks {title!r}"

    images = page.evaluate(OUTPUT_IMAGES)
    broken = [src for src, complete, width, _ in images if not (complete and width > 0)]
    assert not broken, f"{nb.stem}.html: {len(broken)} of {len(images)} output images did not load: {broken[:5]}"
    expected = _outputs(nb.stem)
    if expected is None:  # the site was built elsewhere: every lesson has figures
        assert images, f"{nb.stem}.html shows no output image"
    else:
        figures = sum(not in_widget for *_, in_widget in images)  # one per image/png output
        assert figures >= max(expected["png"], 1), (
            f"{nb.stem}.html shows {figures} output figures; the executed notebook has {expected['png']} image/png outputs"
        )
        snapshots = page.evaluate(SNAPSHOTS)
        assert len(snapshots) >= expected["widgets"], (
            f"{nb.stem}.html: {len(snapshots)} widget snapshots for {expected['widgets']} widget outputs"
        )
        empty = [text for n, text in snapshots if n == 0]
        assert not empty, f"{nb.stem}.html: widget snapshots with nothing to see: {empty}"
        if expected["plotly"]:
            page.wait_for_function(f"() => ({PLOTS})() >= {expected['plotly']}", timeout=30_000)
    assert page.evaluate(UNDRAWN) == 0, f"{nb.stem}.html: widget outputs left for a widget manager to draw"
    assert not log["outside"], f"{nb.stem}.html requested other hosts: {log['outside'][:5]}"
    assert not log["failed"] and not log["http_errors"], f"{nb.stem}.html: {log}"
