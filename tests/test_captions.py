"""Captions measured from pixels (lesson 09), on hand-made digits with known answers."""

import random

import pytest
import torch

from sdcourse import captions


def canvas() -> torch.Tensor:
    return torch.full((1, 1, 28, 28), -1.0)


def bar(width: int, length: int = 20) -> torch.Tensor:
    """A vertical bar ``width`` pixels wide and ``length`` tall."""
    x = canvas()
    x[..., 4:4 + length, 10:10 + width] = 1.0
    return x


def sheared_line(shift_per_row: float) -> torch.Tensor:
    """A 1-pixel line whose column moves right by ``shift_per_row`` for each row up."""
    x = canvas()
    for row in range(4, 24):
        x[..., row, round(14 + shift_per_row * (14 - row))] = 1.0
    return x


def test_thickness_of_bars_is_their_width():
    # area L w, boundary 2 (L + w): A / (P / 2) = L w / (L + w), close to w for a long bar
    for width in (1, 2, 4, 6):
        expected = 20 * width / (20 + width)
        assert captions.thickness(bar(width)).item() == pytest.approx(expected)
    assert captions.thickness(bar(5)) > captions.thickness(bar(1))


def test_slant_of_a_sheared_line():
    assert captions.slant(sheared_line(0.0)).item() == pytest.approx(0.0, abs=1e-6)
    assert captions.slant(sheared_line(0.5)).item() == pytest.approx(0.5, abs=0.05)
    assert captions.slant(sheared_line(-0.5)).item() == pytest.approx(-0.5, abs=0.05)


def test_size_is_bounding_box_area():
    x = canvas()
    x[..., 3:9, 5:15] = 1.0  # 6 rows, 10 columns
    assert captions.size(x).item() == 60
    assert captions.size(canvas()).item() == 0


def test_tertiles_split_in_thirds():
    values = torch.arange(300, dtype=torch.float32)
    t = captions.Tertiles.fit({name: values for name in captions.ATTRIBUTES})
    bins = t.bins({name: values for name in captions.ATTRIBUTES})["slant"]
    assert torch.bincount(bins).tolist() == [100, 100, 100]
    assert captions.Tertiles.from_dict(t.to_dict()) == t


def test_captions_name_the_digit_and_the_attributes():
    thick_right = {"thickness": 2, "slant": 2, "size": 1}
    texts = {captions.caption(7, thick_right, "words", random.Random(s)) for s in range(200)}
    assert "a thick, right-slanted seven" in texts or "a right-slanted, thick seven" in texts
    assert all("seven" in t for t in texts)
    assert all("7" in captions.caption(7, thick_right, "numerals", random.Random(s)) for s in range(50))
    chinese = {captions.caption(7, thick_right, "chinese", random.Random(s)) for s in range(200)}
    assert all("七" in t for t in chinese) and any("粗" in t for t in chinese)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="digit"):
        captions.caption(10, {"thickness": 0, "slant": 0, "size": 0}, "words", random.Random(0))
    with pytest.raises(ValueError, match="language"):
        captions.caption(1, {"thickness": 0, "slant": 0, "size": 0}, "french", random.Random(0))
    with pytest.raises(ValueError, match="images"):
        captions.thickness(torch.zeros(28, 28))
