"""The expression studio in a real browser: JupyterLab + headless Chromium (Playwright).

Starts JupyterLab on loopback (random free port, a token, a temporary runtime/config
dir, a temporary copy of notebook 08 so nothing is saved into the repo), opens the
notebook in Debian's Chromium (``/usr/bin/chromium``; Playwright never downloads a
browser here), runs all cells, waits for the studio's image, moves the AU01 slider
with the keyboard and checks that the rendered image changed.

Skips only when no Chromium binary is found or Playwright cannot be imported. The notebook
loads the shipped pretrained model (``train.pretrained()``), so nothing is trained here.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _chromium import CHROMIUM_NAMES, LAUNCH_ARGS, find_chromium

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "08_expression_studio.ipynb"


#: True once every code cell of the notebook shows an execution count ("[7]:", not "[*]:" or "[ ]:").
ALL_CELLS_RAN = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /\[\d+\]/.test(p.textContent));
}"""


#: True once Run All has queued or run a cell (a prompt shows [*] or [n]).
STARTED = r"""() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
  .some(p => /\[(\*|\d+)\]/.test(p.textContent))"""

#: Texts of error outputs (tracebacks) in the notebook.
ERRORS = r"""() => [...document.querySelectorAll('.jp-OutputArea-output')]
  .filter(e => e.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr' && /Traceback|Error/.test(e.innerText))
  .map(e => e.innerText)"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of notebook 08."""
    from emozone_lite import train

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    for d in ("runtime", "config", "data", "ipython", "workspaces", "settings"):
        (tmp / d).mkdir()
    # render every cell (no virtual scrolling), so the test sees all prompts and outputs
    nb_settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    nb_settings.mkdir(parents=True)
    (nb_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # no "notified about official Jupyter news?" prompt over the widgets (the README's screenshot)
    notify = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notify.mkdir(parents=True)
    (notify / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = _free_port(), os.urandom(16).hex()
    env = dict(os.environ)
    env.update(
        EMOZONE_FAST="1",
        OMP_WAIT_POLICY=env.get("OMP_WAIT_POLICY", "PASSIVE"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("MPLBACKEND", None)  # the notebook picks the inline backend itself
    env.setdefault("EMOZONE_CACHE", str(train.cache_dir()))
    env.setdefault("EMOZONE_DATA", str(REPO / "data_samples"))
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.disable_check_xsrf=False",
    ]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()[-3000:]}"
                )
            try:
                if _get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start in 90 s:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "root": root, "log": tmp / "server.log"}
    finally:
        try:  # shut the kernels down through the API, then stop the server
            _, body = _get(f"{base}/api/kernels?token={token}")
            for k in json.loads(body):
                req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
                urllib.request.urlopen(req, timeout=10)
        except Exception:
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


@pytest.mark.browser
@pytest.mark.slow
def test_studio_slider_changes_the_render_in_chromium(lab):
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            f"no Chromium binary found (looked for {', '.join(CHROMIUM_NAMES)}); "
            "install Debian's chromium: apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright cannot be imported ({e}); pip install playwright")

    url = f"{lab['base']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible", timeout=90_000)
            # wait until the kernel is connected and idle before running everything
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator, [data-status]')]"
                ".some(e => (e.getAttribute('data-status') || '') === 'idle')",
                timeout=90_000,
            )
            for _attempt in range(
                4
            ):  # Run → Run All Cells (retried: early clicks can land before the session is ready)
                page.locator(".jp-NotebookPanel .jp-Cell").first.click()  # make the notebook the active widget
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
                try:
                    page.wait_for_function(STARTED, timeout=15_000)
                    break
                except PlaywrightTimeout:
                    page.keyboard.press("Escape")
            else:
                pytest.fail("Run → Run All Cells did not start the notebook")

            # wait until every code cell ran (prompts show [n]), failing fast on a traceback
            deadline = time.monotonic() + 240
            while not page.evaluate(ALL_CELLS_RAN):
                errors = page.evaluate(ERRORS)
                assert not errors, f"notebook 08 raised in the browser:\n{errors[0][:2000]}"
                prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
                assert time.monotonic() < deadline, f"notebook 08 did not finish in 240 s; prompts {prompts}"
                time.sleep(1.0)
            assert not page.evaluate(ERRORS), page.evaluate(ERRORS)[0][:2000]
            image = page.locator(".emozone-studio img.widget-image").first
            image.wait_for(state="visible", timeout=30_000)
            image.scroll_into_view_if_needed()

            slider = page.locator(
                ".emozone-studio .widget-hslider",
                has=page.locator("label.widget-label", has_text=re.compile(r"^AU01$")),
            ).first
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout").first
            src_before = image.get_attribute("src")
            shot_before = image.screenshot()
            value_before = float(readout.inner_text())

            handle.focus()
            for _ in range(10):  # +1.0 in 0.1 steps …
                page.keyboard.press("ArrowRight")
            page.keyboard.press("End")  # … then to the maximum (5.0)
            page.wait_for_function(
                "([el, v]) => parseFloat(el.textContent) > v + 0.5",
                arg=[readout.element_handle(), value_before],
                timeout=30_000,
            )
            page.wait_for_function(
                "([el, s]) => el.getAttribute('src') !== s", arg=[image.element_handle(), src_before], timeout=60_000
            )
            # the kernel may still be rendering the last key press: wait for the image to settle
            last, stable_since = image.get_attribute("src"), time.monotonic()
            while time.monotonic() - stable_since < 2.0:
                time.sleep(0.25)
                cur = image.get_attribute("src")
                if cur != last:
                    last, stable_since = cur, time.monotonic()
            shot_after = image.screenshot()
            page.locator(".emozone-studio").first.screenshot(path=str(lab["root"].parent / "studio.png"))
        finally:
            browser.close()

    before, after = _decode(shot_before), _decode(shot_after)
    assert before.shape == after.shape
    changed = int((np.abs(after - before).max(-1) > 0).sum())
    assert changed > 20, f"moving AU01 changed only {changed} pixels of the studio image"
