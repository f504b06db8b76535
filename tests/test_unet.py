"""The toy UNet: shapes, conditioning, and input validation."""

from __future__ import annotations

import pytest
import torch

from sdcourse import checkpoint
from sdcourse.unet import NULL_LABEL, UNet, UNetConfig, timestep_embedding


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = UNet(UNetConfig.tiny())
    for p in net.conv_out.parameters():  # the zero-initialized output would hide the labels' effect
        torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def test_output_has_the_input_shape(model):
    x = torch.randn(3, 1, 28, 28)
    assert model(x, torch.tensor([0, 10, 999])).shape == (3, 1, 28, 28)


def test_labels_change_the_prediction_and_none_means_null(model):
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([500, 500])
    with torch.no_grad():
        a = model(x, t, torch.tensor([3, 3]))
        b = model(x, t, torch.tensor([7, 7]))
        null = model(x, t, torch.full((2,), NULL_LABEL))
        none = model(x, t, None)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(null, none)


def test_timestep_embedding_is_the_transformer_sinusoid():
    t = torch.tensor([0, 1, 250])
    emb = timestep_embedding(t, 8).double()
    for i, step in enumerate(t.tolist()):
        for k in range(4):
            freq = 10000 ** (-k / 4)
            assert emb[i, k].item() == pytest.approx(torch.sin(torch.tensor(step * freq)).item(), abs=1e-5)
            assert emb[i, 4 + k].item() == pytest.approx(torch.cos(torch.tensor(step * freq)).item(), abs=1e-5)


@pytest.mark.parametrize("labels", [torch.tensor([11, 0]), torch.tensor([-1, 0])])
def test_labels_outside_range_are_refused(model, labels):
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), labels)


def test_wrong_image_shape_is_refused(model):
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 1, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28), torch.tensor([1, 2]))


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="attention_heads"):
        UNetConfig(channels=(16, 32, 48), attention_heads=5, groups=1)
    with pytest.raises(ValueError, match="preset"):
        UNetConfig.preset("huge")



def test_fractional_timesteps_reach_the_embedding():
    """The solvers of lesson 11 and the flow of lesson 12 ask at fractional t: 500.5 is not 500."""
    model = checkpoint.load_model("ddpm_mnist").model  # trained: a fresh UNet's last layer is zero
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole, same, half = (model(x, torch.tensor([t, t]), None) for t in (500, 500.0, 500.5))
    torch.testing.assert_close(whole, same)  # an integer-valued float is that integer
    assert not torch.allclose(whole, half)
    assert model(x, torch.tensor([1000.0, 0.0]), None).shape == x.shape  # a flow's t = 1 is T
