"""The shared pictures: pixel mapping, tiling, labelled grids and their errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from sdcourse import viz


def test_to_numpy_image_maps_minus_one_to_zero_and_one_to_one_channels_last():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)  # 3.0 is out of range: clipped
    np.testing.assert_allclose(viz.to_numpy_image(x), [[[0.0, 0.5], [1.0, 1.0]]])
    rgb = torch.zeros(2, 3, 4, 5)
    assert viz.to_numpy_image(rgb).shape == (2, 4, 5, 3)


def test_grid_places_image_k_at_row_k_div_nrow_and_column_k_mod_nrow():
    images = torch.stack([torch.full((1, 3, 3), v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)])  # (5, 1, 3, 3)
    canvas = viz.grid(images, nrow=2, padding=1)
    assert canvas.shape == (1 + 3 * 4, 1 + 2 * 4)  # 3 rows, 2 columns of 3x3 plus 1-pixel padding
    for k, value in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        r, c = divmod(k, 2)
        np.testing.assert_allclose(canvas[1 + 4 * r : 4 + 4 * r, 1 + 4 * c : 4 + 4 * c], value)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        viz.grid(torch.zeros(1, 3, 3))


def test_labelled_grid_names_the_mismatch_and_widens_for_long_row_labels():
    images = torch.zeros(2, 3, 1, 4, 4)  # 2 rows, 3 columns
    with pytest.raises(ValueError, match=r"2 rows and 3 columns but 1 row_labels and 3 col_labels"):
        viz.labelled_grid(images, ["a"], ["x", "y", "z"])
    short = viz.labelled_grid(images, ["a", "b"], ["x", "y", "z"])
    long = viz.labelled_grid(images, ["a much longer row label", "b"], ["x", "y", "z"])
    assert long.get_figwidth() > short.get_figwidth()
    assert long.axes[0].get_ylabel() == "a much longer row label"
    plt.close("all")
