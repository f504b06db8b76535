"""bench/unet_speed.py's FLOP counts, the numerator and denominator of its utilization, against closed forms."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch.nn import functional as F

from sdcourse.unet import UNet, UNetConfig

_spec = importlib.util.spec_from_file_location("unet_speed", Path(__file__).parents[1] / "bench" / "unet_speed.py")
unet_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unet_speed)


def test_a_3x3_convolution_counts_2_b_cin_cout_9_h_w_forward_and_three_times_that_with_backward():
    b, c_in, c_out, size = 4, 3, 5, 6
    x = torch.randn(b, c_in, size, size, requires_grad=True)
    w = torch.randn(c_out, c_in, 3, 3, requires_grad=True)
    forward = 2 * b * c_out * size * size * c_in * 9  # one multiply-add per weight per output pixel
    assert unet_speed.counted_flops(lambda: F.conv2d(x, w, padding=1)) == forward
    # backward: the gradient of the input and of the weight, each as costly as the forward pass
    assert unet_speed.counted_flops(lambda: F.conv2d(x, w, padding=1).sum().backward()) == 3 * forward


def test_the_training_step_counts_three_times_the_forward_flops_of_the_unet():
    model = UNet(UNetConfig.tiny())
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 700]), torch.tensor([1, 10])
    forward = unet_speed.counted_flops(lambda: model(x, t, y))
    step = unet_speed.counted_flops(lambda: model(x, t, y).sum().backward())
    # the first conv's input gradient is not needed (the input does not require grad), so a bit under 3x
    assert 2.8 * forward < step <= 3 * forward
