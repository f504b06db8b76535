"""Classifier-free guidance: the combination, the batched forward pass, the guided sampler, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdcourse.checks import ToyConditionalEps
from sdcourse.guidance import (
    NULL_LABEL,
    GuidedModel,
    classifier_free_guidance,
    digit_labels,
    guidance_scale_value,
    guided_eps,
)
from sdcourse.samplers import DDIMSampler, DDPMSampler, sample
from sdcourse.schedules import NoiseSchedule


def _inputs(batch=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 1, 28, 28, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)
    return x_t, t, labels


# ---- the combination ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 15.0])
def test_combination_equals_float64_formula(scale):
    gen = torch.Generator().manual_seed(1)
    u, c = torch.randn(2, 3, 4, 8, 8, generator=gen)
    got = classifier_free_guidance(u, c, scale)
    w = scale - 1  # the paper's w: eps = (1 + w) eps_cond - w eps_uncond (Eq. 6, Ho and Salimans 2022)
    expected = (1 + w) * c.double() - w * u.double()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-6)


def test_scale_one_is_conditional_and_zero_is_unconditional():
    gen = torch.Generator().manual_seed(2)
    u, c = torch.randn(2, 5, 1, 28, 28, generator=gen)
    assert torch.equal(classifier_free_guidance(u, c, 0.0), u)
    torch.testing.assert_close(classifier_free_guidance(u, c, 1.0), c, atol=1e-6, rtol=0)


# ---- one batched forward pass -------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, 7.5])
def test_batched_pass_equals_two_separate_passes(scale):
    model = ToyConditionalEps(seed=3)
    x_t, t, labels = _inputs()
    got = guided_eps(model, x_t, t, labels, scale)
    assert model.calls == [8], "one forward pass on the doubled batch"
    eps_uncond = model(x_t, t, torch.full_like(labels, NULL_LABEL))
    eps_cond = model(x_t, t, labels)
    torch.testing.assert_close(got, eps_uncond + scale * (eps_cond - eps_uncond), atol=1e-6, rtol=1e-6)


def test_batched_pass_puts_the_unconditional_half_first():
    seen = []

    def model(x, t, labels):
        seen.append(labels.clone())
        return x

    x_t, t, labels = _inputs(batch=3)
    guided_eps(model, x_t, t, labels, 2.0)
    assert seen[0].tolist() == [NULL_LABEL] * 3 + labels.tolist()


def test_negative_label_replaces_the_null_label():
    model = ToyConditionalEps(seed=4)
    x_t, t, labels = _inputs()
    negative = torch.tensor([3, 3, 5, 1])
    got = guided_eps(model, x_t, t, labels, 4.0, negative_labels=negative)
    eps_neg, eps_cond = model(x_t, t, negative), model(x_t, t, labels)
    torch.testing.assert_close(got, eps_neg + 4.0 * (eps_cond - eps_neg), atol=1e-6, rtol=1e-6)
    # an int is broadcast over the batch
    torch.testing.assert_close(
        guided_eps(model, x_t, t, labels, 4.0, negative_labels=3),
        guided_eps(model, x_t, t, labels, 4.0, negative_labels=torch.full_like(labels, 3)),
    )


def test_scalar_t_and_label_are_broadcast():
    model = ToyConditionalEps(seed=5)
    x_t, _, _ = _inputs(batch=2)
    torch.testing.assert_close(
        guided_eps(model, x_t, torch.tensor(500), 7, 2.0),
        guided_eps(model, x_t, torch.tensor([500, 500]), torch.tensor([7, 7]), 2.0),
    )


# ---- the guided sampler -------------------------------------------------------------------------


@pytest.mark.parametrize("make_sampler", [lambda s: DDIMSampler(s, 10), lambda s: DDPMSampler(s)])
def test_guided_sampler_at_scale_one_gives_the_conditional_samples(make_sampler):
    schedule = NoiseSchedule.linear(100)
    model, labels = ToyConditionalEps(seed=6), torch.tensor([0, 4, 9])
    kwargs = dict(shape=(3, 1, 28, 28), labels=labels, progress=False)
    plain = sample(model, make_sampler(schedule), generator=torch.Generator().manual_seed(7), **kwargs)
    guided = sample(GuidedModel(model, 1.0), make_sampler(schedule), generator=torch.Generator().manual_seed(7),
                    **kwargs)
    assert torch.equal(guided, plain)


def test_guided_sampler_at_scale_zero_gives_the_unconditional_samples():
    schedule = NoiseSchedule.linear(1000)
    model, labels = ToyConditionalEps(seed=8), torch.tensor([2, 2])
    null = torch.full_like(labels, NULL_LABEL)
    plain = sample(model, DDIMSampler(schedule, 10), (2, 1, 28, 28), labels=null,
                   generator=torch.Generator().manual_seed(9), progress=False)
    guided = sample(GuidedModel(model, 0.0), DDIMSampler(schedule, 10), (2, 1, 28, 28), labels=labels,
                    generator=torch.Generator().manual_seed(9), progress=False)
    assert torch.equal(guided, plain)


@pytest.mark.parametrize("negative", [None, 6])
def test_guided_sampler_equals_a_hand_written_loop_with_two_passes(negative):
    schedule, scale = NoiseSchedule.linear(1000), 3.0
    model, labels = ToyConditionalEps(seed=10), torch.tensor([1, 8])
    got = sample(GuidedModel(model, scale, negative_label=negative), DDIMSampler(schedule, 8), (2, 1, 28, 28),
                 labels=labels, generator=torch.Generator().manual_seed(11), progress=False)
    sampler, gen = DDIMSampler(schedule, 8), torch.Generator().manual_seed(11)
    x = torch.randn(2, 1, 28, 28, generator=gen)
    other = torch.full_like(labels, NULL_LABEL if negative is None else negative)
    for t in sampler.timesteps:
        t_batch = torch.full((2,), int(t))
        u, c = model(x, t_batch, other), model(x, t_batch, labels)
        x = sampler.step(u + scale * (c - u), t, x, generator=gen).prev_sample
    torch.testing.assert_close(got, x, atol=1e-5, rtol=1e-5)


def test_guidance_moves_samples_towards_the_label():
    # The stand-in's eps depends on the label; larger scales push the guided eps further from the
    # unconditional one, along the conditional direction.
    model = ToyConditionalEps(seed=12)
    x_t, t, labels = _inputs()
    u = model(x_t, t, torch.full_like(labels, NULL_LABEL))
    distances = [(guided_eps(model, x_t, t, labels, s) - u).norm().item() for s in (0.0, 1.0, 3.0)]
    assert distances[0] == 0 and distances[0] < distances[1] < distances[2]


def test_guided_model_repr_and_parameters():
    model = ToyConditionalEps()
    guided = GuidedModel(model, 7.5, negative_label=3)
    assert repr(guided) == "GuidedModel(ToyConditionalEps, guidance_scale=7.5, negative_label=3)"
    assert list(guided.parameters()) == list(model.parameters())


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [-0.5, float("nan"), float("inf"), True, "3"])
def test_bad_scale(scale):
    model = ToyConditionalEps()
    x_t, t, labels = _inputs(batch=2)
    with pytest.raises(ValueError, match="guidance_scale"):
        GuidedModel(model, scale)
    with pytest.raises(ValueError, match="guidance_scale"):
        guided_eps(model, x_t, t, labels, scale)


def test_negative_scale_in_the_combination():
    with pytest.raises(ValueError, match=r"guidance_scale must be .*>= 0.*-1"):
        classifier_free_guidance(torch.zeros(2), torch.zeros(2), -1)


@pytest.mark.parametrize("bad, shown", [(10, "10"), (-1, "-1"), (torch.tensor([3, 12]), "12"), (2.0, "float")])
def test_bad_labels(bad, shown):
    model = ToyConditionalEps()
    x_t, t, _ = _inputs(batch=2)
    with pytest.raises(ValueError, match=rf"labels must be .*{shown}"):
        guided_eps(model, x_t, t, bad, 3.0)
    with pytest.raises(ValueError, match=rf"labels must be .*{shown}"):
        GuidedModel(model, 3.0)(x_t, t, bad)


def test_labels_none_is_refused():
    x_t, t, _ = _inputs(batch=2)
    with pytest.raises(ValueError, match="labels must be digits 0..9 for guidance, got None"):
        GuidedModel(ToyConditionalEps(), 3.0)(x_t, t, None)


def test_labels_of_the_wrong_shape():
    x_t, t, _ = _inputs(batch=2)
    with pytest.raises(ValueError, match=r"labels must be an int or have shape \(B,\) = \(2,\), got \(3,\)"):
        guided_eps(ToyConditionalEps(), x_t, t, torch.tensor([1, 2, 3]), 3.0)


@pytest.mark.parametrize("bad", [10, -1, True])
def test_bad_negative_label(bad):
    model = ToyConditionalEps()
    x_t, t, labels = _inputs(batch=2)
    with pytest.raises(ValueError, match=rf"negative_label must be .*{bad}"):
        GuidedModel(model, 3.0, negative_label=bad)
    if not isinstance(bad, bool):
        with pytest.raises(ValueError, match=rf"negative_labels must be .*{bad}"):
            guided_eps(model, x_t, t, labels, 3.0, negative_labels=bad)


def test_numpy_scalars_and_0d_tensors_are_numbers_and_labels():
    assert guidance_scale_value(np.float32(2.0)) == 2.0 and isinstance(guidance_scale_value(np.float32(2.0)), float)
    assert guidance_scale_value(torch.tensor(3.0)) == 3.0 and guidance_scale_value(np.int64(1)) == 1.0
    model = ToyConditionalEps()
    x_t, t, labels = _inputs(batch=2)
    guided = GuidedModel(model, np.float32(3.0))(x_t, t, labels)
    torch.testing.assert_close(guided, GuidedModel(model, 3.0)(x_t, t, labels))
    assert digit_labels(np.int64(4), 3, torch.device("cpu")).tolist() == [4, 4, 4]
    assert digit_labels(torch.tensor(7), 2, torch.device("cpu")).dtype == torch.int64
    assert GuidedModel(model, 3.0, negative_label=np.int64(9)).negative_label.tolist() == 9


# ---- with the real toy UNet (a tiny, randomly initialised one) ---------------------------------


@pytest.fixture
def tiny_unet():
    from sdcourse import unet

    torch.manual_seed(0)
    model = unet.UNet(unet.UNetConfig.tiny()).eval()
    for p in model.parameters():  # the zero-initialised output layer would make every eps 0
        torch.nn.init.normal_(p, std=0.2)
    assert unet.NULL_LABEL == NULL_LABEL
    return model


@torch.no_grad()
def test_unet_batched_pass_equals_two_separate_passes(tiny_unet):
    x_t, t, labels = _inputs(batch=3, seed=13)
    got = guided_eps(tiny_unet, x_t, t, labels, 5.0, negative_labels=torch.tensor([0, 1, 2]))
    eps_neg, eps_cond = tiny_unet(x_t, t, torch.tensor([0, 1, 2])), tiny_unet(x_t, t, labels)
    assert not torch.allclose(eps_neg, eps_cond, atol=1e-3)  # the label matters
    torch.testing.assert_close(got, eps_neg + 5.0 * (eps_cond - eps_neg), atol=1e-4, rtol=1e-4)
    eps_null = tiny_unet(x_t, t, None)  # labels=None means the null label
    torch.testing.assert_close(guided_eps(tiny_unet, x_t, t, labels, 0.0), eps_null, atol=1e-5, rtol=1e-5)


def test_unet_guided_sampler_at_scale_one_gives_the_conditional_samples(tiny_unet):
    sampler, labels = DDIMSampler(NoiseSchedule.linear(1000), 4), torch.tensor([3, 7])
    plain = sample(tiny_unet, sampler, (2, 1, 28, 28), labels=labels, generator=torch.Generator().manual_seed(14),
                   progress=False)
    guided = sample(GuidedModel(tiny_unet, 1.0), sampler, (2, 1, 28, 28), labels=labels,
                    generator=torch.Generator().manual_seed(14), progress=False)
    assert torch.equal(guided, plain)
