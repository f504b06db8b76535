"""The course book in headless Chromium: every lesson page loads, shows its figures, and no link
or image on the landing page or a lesson page is broken.

The fixture builds the book the way ``make site`` does, but in fast mode (SDCOURSE_FAST=1) into a
temporary folder with its own execution cache, so it fits the test budget (full mode is what
``make site`` itself renders; the pages are the same, with smaller runs). Skipped, with the
reason, where Debian's Chromium is not installed. ``SDCOURSE_SITE_DIR=_build/site`` checks a book
already built by ``make site`` instead of building one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from browser import SKIP_REASON, chrome, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

PAGE_STATE = """
const imgs = Array.from(document.querySelectorAll('img'));
return {
  title: document.title,
  figures: document.querySelectorAll('.cell_output img').length,
  broken_images: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src').slice(0, 80)),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  downloads: Array.from(document.querySelectorAll('a[download]')).map(a => a.textContent.trim()),
  errors: Array.from(document.querySelectorAll('.cell_output .output.traceback')).length,
};
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.environ.get("SDCOURSE_SITE_DIR"):  # a book already built (`make site`): check it as it is
        return Path(os.environ["SDCOURSE_SITE_DIR"]).resolve()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "SDCOURSE_FAST": "1", "OMP_NUM_THREADS": "1",
           "SDCOURSE_SITE_CACHE": str(out / "cache"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    build = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-c", "site", "-q", ".", str(out / "html")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, f"the book did not build:\n{build.stderr[-3000:]}"
    return out / "html"


def loaded_state(driver, url: str) -> dict:
    """Open ``url`` and return PAGE_STATE once the page and all its images have finished loading."""
    driver.get(url)
    wait_for(lambda: driver.execute_script(
        "return document.readyState === 'complete' && "
        "Array.from(document.images).every(i => i.complete);"), 60, f"{url} to load")
    return driver.execute_script(PAGE_STATE)


def broken_local_links(links: list[str]) -> list[str]:
    """file:// links whose target does not exist (fragments ignored; other schemes not checked offline)."""
    missing = []
    for link in links:
        url = urlparse(link)
        if url.scheme == "file" and not Path(unquote(url.path)).exists():
            missing.append(link)
    return missing


def test_landing_page_links_every_lesson_and_nothing_is_broken(site):
    with chrome() as driver:
        driver.get((site / "index.html").as_uri())  # forwards to the landing page
        wait_for(lambda: driver.current_url.endswith("site/index.html")
                 and driver.execute_script("return document.readyState") == "complete", 30, "the landing page")
        state = loaded_state(driver, driver.current_url)
        assert "sdcourse" in state["title"], state["title"]
        assert not state["broken_images"], state["broken_images"]
        assert not broken_local_links(state["links"]), broken_local_links(state["links"])
        linked = {Path(urlparse(link).path).stem for link in state["links"]}
        missing = [p.stem for p in LESSONS if p.stem not in linked]
        assert not missing, f"the landing page does not link {missing}"
        assert "instructors" in linked, "the landing page does not link the instructor's kit"
        exercises = {f"exercises/{p.name}" for p in (REPO / "exercises").glob("[0-9][0-9]_*.ipynb")}
        assert exercises <= set(state["downloads"]), f"not linked: {exercises - set(state['downloads'])}"
        solutions = [link for link in state["links"] if "solutions" in link]
        assert not solutions, f"the book links solutions: {solutions}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_page_loads_with_its_figures(site, lesson):
    page = site / "notebooks" / f"{lesson.stem}.html"
    assert page.exists(), f"{lesson.name} has no page in the book"
    with chrome() as driver:
        state = loaded_state(driver, page.as_uri())
        assert state["figures"] > 0, f"{lesson.stem}'s page shows no figure"
        assert not state["broken_images"], state["broken_images"]
        assert not broken_local_links(state["links"]), broken_local_links(state["links"])
        assert state["errors"] == 0, f"{lesson.stem}'s page shows a traceback"
        if driver.execute_script("return document.querySelectorAll('.math').length"):  # MathJax, offline
            wait_for(lambda: driver.execute_script("return document.querySelectorAll('mjx-container').length"),
                     60, f"{lesson.stem}'s equations to render")
