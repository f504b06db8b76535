"""Sphinx configuration of the course book (`make site`): every lesson executed by myst-nb.

Source directory is the repository root (`sphinx-build -c site . OUT`); only the landing page, the
lessons (notebooks/NN_*.ipynb, globbed, so new lessons join by themselves) and the instructor's
kit are read. Exercises are linked as downloads, never rendered; solutions are left out.
Execution is cached per notebook (a rebuild re-executes only changed lessons) in a cache per
mode, since fast mode (SDCOURSE_FAST=1) gives different outputs from the same source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAST = bool(os.environ.get("SDCOURSE_FAST"))

project = "sdcourse: Stable Diffusion from first principles"
author = "the sdcourse authors"
extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax served from the book: math renders offline
root_doc = "site/index"
include_patterns = ["site/index.md", "notebooks/[0-9][0-9]_*.ipynb", "docs/instructors.md"]
exclude_patterns = ["_build", ".venv", "**/.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "sdcourse"
html_extra_path = ["extra"]  # index.html at the top, forwarding to the landing page
html_theme_options = {"show_toc_level": 2}
myst_enable_extensions = ["dollarmath", "amsmath"]
suppress_warnings = ["mystnb.unknown_mime_type"]

nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get("SDCOURSE_SITE_CACHE") or str(
    REPO / "_build" / (".jupyter_cache-fast" if FAST else ".jupyter_cache-full"))
# A hung kernel fails the build naming the cell instead of waiting forever (full mode: generous).
nb_execution_timeout = int(os.environ.get("SDCOURSE_SITE_CELL_TIMEOUT", 300 if FAST else 1800))
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_allow_errors = False
nb_merge_streams = True


def _title(path: Path) -> str:
    first = json.loads(path.read_text())["cells"][0]["source"]
    line = ("".join(first)).splitlines()[0]
    return line.lstrip("# ").strip()


def _lesson_map() -> str:
    """The landing page's table: one row per lesson, with its figure and its exercise download."""
    rows = ["| | lesson | exercise |", "|---|---|---|"]
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        figure = REPO / "docs" / "figures" / f"{path.stem}.png"
        picture = f"![]({os.path.relpath(figure, REPO / 'site')})" if figure.exists() else ""
        exercise = REPO / "exercises" / path.name
        task = f"{{download}}`exercises/{path.name} <../exercises/{path.name}>`" if exercise.exists() else ""
        rows.append(f"| {picture} | [{_title(path)}](../notebooks/{path.name}) | {task} |")
    return "\n".join(rows) + "\n"


(REPO / "site" / "_lessons.md").write_text(_lesson_map())
