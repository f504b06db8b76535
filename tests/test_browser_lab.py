"""JupyterLab as a student meets it, in headless Chromium: lesson 01 runs top to bottom and its t
slider redraws the digits; exercise 01 run as shipped stops at the first blank with its hint.

JupyterLab serves a temporary copy of notebooks/ and exercises/ (so nothing it saves touches the
repository) on a free local port with a random token; the kernel imports this checkout's
``sdcourse`` in fast mode. Skipped, with the reason, where Debian's Chromium is not installed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from browser import SKIP_REASON, chrome, free_port, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

# Reads the open notebook's model through the app object JupyterLab exposes to the page.
NOTEBOOK_STATE = """
const panel = window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext.session) return null;
const kernel = panel.sessionContext.session.kernel;
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
return {
  kernel: kernel ? kernel.status : 'none',
  counts: cells.map(c => c.model.executionCount),
  pending: cells.filter(c => (c.node.querySelector('.jp-InputPrompt') || {}).textContent?.includes('*')).length,
  errors: cells.map(c => {
    const outs = c.model.outputs.toJSON();
    return outs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue).join('\\n');
  }),
};
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of the lessons; yields its base URL (token included)."""
    root = tmp_path_factory.mktemp("lab")
    for folder in ("notebooks", "exercises"):
        shutil.copytree(REPO / folder, root / folder)
    settings = root / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Every cell in the DOM (no virtual scrolling), so the test sees each output.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "SDCOURSE_FAST": "1", "OMP_NUM_THREADS": "1", "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
               f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'ws'}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabServerApp.notebook_starts_kernel=True"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    log = open(root / "lab.log", "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return server.poll() is not None  # a dead server ends the wait; the assert below names it

    wait_for(up, 120, "JupyterLab to start")
    assert server.poll() is None, (root / "lab.log").read_text()[-2000:]
    try:
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def open_and_run_all(driver, base, token, path, timeout=300):
    """Open ``path`` in JupyterLab, wait for its kernel, run all cells, wait until the kernel is idle."""
    driver.get(f"{base}/lab/tree/{path}?token={token}")
    wait_for(lambda: driver.execute_script(NOTEBOOK_STATE), 120, f"{path} to open")
    wait_for(lambda: (driver.execute_script(NOTEBOOK_STATE) or {}).get("kernel") == "idle", 120, f"{path}'s kernel")
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    # Run all stops at the first error: done when the first cell has run, the kernel is idle and
    # no cell is still queued ([*]).
    def finished():
        state = driver.execute_script(NOTEBOOK_STATE)  # null while the panel or session is changing
        if not state or not state["counts"]:
            return None
        done = state["counts"][0] is not None and state["kernel"] == "idle" and state["pending"] == 0
        return state if done else None

    return wait_for(finished, timeout, f"{path} to finish running", interval=1.0)


def slider_image(driver):
    """The data URL of the image the interactive t slider drew (the last widget output's PNG)."""
    return driver.execute_script("""
        const imgs = document.querySelectorAll('.widget-interact .jp-OutputArea-output img');
        return imgs.length ? imgs[imgs.length - 1].src : null;""")


def digit_pixels(driver) -> list[float] | None:
    """The grey levels (0..255) of the slider picture's digits, below its title, on a coarse 64 x 16
    grid: what must change when t changes (the title's text changes even when the digits do not)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = document.querySelectorAll('.widget-interact .jp-OutputArea-output img');
        if (!imgs.length) { done(null); return; }
        const img = new Image();
        img.onload = () => {
            const canvas = document.createElement('canvas');
            canvas.width = 64; canvas.height = 16;
            const top = Math.round(img.height * 0.3);  // skip the title
            const ctx = canvas.getContext('2d');
            ctx.drawImage(img, 0, top, img.width, img.height - top, 0, 0, 64, 16);
            const rgba = ctx.getImageData(0, 0, 64, 16).data;
            const grey = [];
            for (let i = 0; i < rgba.length; i += 4) grey.push((rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3);
            done(grey);
        };
        img.src = imgs[imgs.length - 1].src;""")


def test_lesson_01_runs_and_its_slider_redraws(lab):
    from selenium.webdriver.common.by import By  # optional dev dependency
    from selenium.webdriver.common.keys import Keys

    base, token = lab
    with chrome() as driver:
        state = open_and_run_all(driver, base, token, "notebooks/01_forward_noising.ipynb")
        assert all(count is not None for count in state["counts"]), f"cells left unrun: {state['counts']}"
        assert not any(state["errors"]), [e for e in state["errors"] if e]
        before = wait_for(lambda: slider_image(driver), 60, "the t slider's first picture")
        digits_before = digit_pixels(driver)
        readout = driver.find_element(By.CSS_SELECTOR, ".widget-interact .widget-slider .widget-readout")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", readout)
        readout.click()
        readout.send_keys(Keys.CONTROL, "a")
        readout.send_keys("900", Keys.ENTER)  # a student typing t = 900 into the slider's box
        after = wait_for(lambda: (src := slider_image(driver)) and src != before and src, 60,
                         "the picture to change after typing t = 900 into the slider's box")
        assert after != before
        change = sum(abs(a - b) for a, b in zip(digit_pixels(driver), digits_before, strict=True)) / len(digits_before)
        assert change > 5, f"only the title changed: the digits' grey levels moved by {change:.2f} on average (of 255)"
        readout_text = driver.execute_script(
            "return document.querySelector('.widget-interact .widget-readout').textContent.trim();")
        assert readout_text == "900", f"slider readout shows {readout_text!r}"


def test_exercise_01_stops_at_the_first_blank_with_its_hint(lab):
    base, token = lab
    with chrome() as driver:
        state = open_and_run_all(driver, base, token, "exercises/01_forward_noising.ipynb")
        errors = [(index, text) for index, text in enumerate(state["errors"]) if text]
        assert errors, "running the exercise as shipped raised nothing"
        index, text = errors[0]
        assert text.startswith("NotImplementedError"), text
        assert "checks.hint('linear_alpha_bar')" in text, text
        shown = driver.execute_script("""
            const errs = document.querySelectorAll(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
            return Array.from(errs).map(e => e.textContent).join('\\n');""")
        assert "NotImplementedError" in shown and "checks.hint('linear_alpha_bar')" in shown, shown[-500:]
