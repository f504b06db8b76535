"""Pictures the lessons share: image grids, labelled grids, and animations that need no ffmpeg.

Images follow the course convention: float tensors in [-1, 1], shape (B, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from . import validate

Tensor = torch.Tensor


def to_numpy_image(images: Tensor) -> np.ndarray:
    """(B, C, H, W) or (C, H, W) in [-1, 1] -> numpy in [0, 1], channels last, (B, H, W[, 3])."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    x = x.movedim(-3, -1)  # (..., C, H, W) -> (..., H, W, C)
    return x.squeeze(-1).numpy() if x.shape[-1] == 1 else x.numpy()


def grid(images: Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile a batch (B, C, H, W) in [-1, 1] into one image, ``nrow`` images per row."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (B = 0): nothing to tile")
    nrow = validate.integer("nrow", nrow, low=1)
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    canvas = torch.ones(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding)
    for i, image in enumerate(images.detach().float().cpu().clamp(-1, 1)):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, top : top + h, left : left + w] = image
    return to_numpy_image(canvas)


def show_grid(images: Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.9):
    """Draw ``grid(images, nrow)`` on ``ax`` (a new figure when None); returns the axes."""
    array = grid(images, nrow)
    if ax is None:
        ncol = min(nrow, images.shape[0])
        nrows = -(-images.shape[0] // ncol)
        _, ax = plt.subplots(figsize=(scale * ncol, scale * nrows + (0.4 if title else 0)))
    ax.imshow(array, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def labelled_grid(
    images: Tensor,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    scale: float = 1.0,
):
    """A table of images (R, C, channels, H, W) with a label per row and per column."""
    rows, cols = images.shape[:2]
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"images has {rows} rows and {cols} columns but {len(row_labels)} row_labels and "
            f"{len(col_labels)} col_labels were given"
        )
    label_width = 0.08 * max(map(len, row_labels), default=0)  # inches for horizontal row labels
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols + 0.8 + label_width, scale * rows + 0.3),
                             squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(to_numpy_image(images[r, c]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def animate(frames: Sequence[Tensor], titles: Sequence[str] | None = None, nrow: int = 8,
            interval: int = 100, scale: float = 0.9):
    """An animation of image batches, one batch (B, C, H, W) per frame.

    Display it in a notebook with ``IPython.display.HTML(anim.to_jshtml())``: JavaScript frames,
    no ffmpeg needed.
    """
    first = grid(frames[0], nrow)
    height, width = first.shape[:2]
    fig, ax = plt.subplots(figsize=(scale * width / 30, scale * height / 30 + 0.4))
    shown = ax.imshow(first, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    label = ax.set_title(titles[0] if titles else "")

    def update(i):
        shown.set_data(grid(frames[i], nrow))
        label.set_text(titles[i] if titles else "")
        return shown, label

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    plt.close(fig)  # the animation is shown through to_jshtml, not as a still figure
    return anim
