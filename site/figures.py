"""One small PNG per lesson for the README's lesson map: `make figures`.

    python site/figures.py CACHE_DIR      # CACHE_DIR: the execution cache `make site` filled

Reads each lesson (notebooks/NN_*.ipynb, globbed) from the myst-nb execution cache that
``make site SDCOURSE_FAST=1`` filled, takes its first PNG output at least ``MIN_WIDTH`` pixels wide
(the lesson's opening picture), shrinks it to at most ``WIDTH`` pixels wide with a 64-colour
palette, and writes ``docs/figures/NN_slug.png``. Fails naming the lesson when a lesson is not in the cache or shows
no picture.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "figures"
WIDTH = 480


MIN_WIDTH = 200  # smaller outputs are single images (a 32x32 digit shown large), not the lesson's picture


def first_png(nb) -> bytes | None:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data and Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).width >= MIN_WIDTH:
                return base64.b64decode(data["image/png"])
    return None


def small(png: bytes) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(colors=64).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main(cache_dir: str) -> None:
    cache = get_cache(cache_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        try:
            _, executed = cache.merge_match_into_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            sys.exit(f"{path.name} is not in {cache_dir}: run `make site SDCOURSE_FAST=1` first")
        png = first_png(executed)
        if png is None:
            sys.exit(f"{path.name} shows no picture")
        target = OUT / f"{path.stem}.png"
        target.write_bytes(small(png))
        print(f"{target.relative_to(REPO)}  {target.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main(sys.argv[1])
