"""Lesson 05's checks pass the reference answers and reject typical wrong ones, naming the cause."""

from __future__ import annotations

import pytest
import torch

from sdcourse import checks, vae


def _kl(mean, logvar):
    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1)


def test_checks_pass_the_reference_and_handwritten_answers():
    checks.check_reparameterize(vae.reparameterize, seed=0)
    checks.check_reparameterize(lambda m, lv, e: m + lv.mul(0.5).exp() * e, seed=1)
    checks.check_kl_divergence(vae.kl_divergence, seed=0)
    checks.check_kl_divergence(lambda m, lv: -0.5 * torch.sum(1 + lv - m ** 2 - lv.exp(), dim=list(range(1, m.ndim))),
                               seed=1)
    checks.check_negative_elbo(vae.negative_elbo, seed=0)
    checks.check_negative_elbo(lambda x, xh, m, lv, b: ((x - xh) ** 2).sum((1, 2, 3)) + b * _kl(m, lv).sum(1), seed=1)


@pytest.mark.parametrize("wrong,cause", [
    (lambda m, lv, e: m + lv * e, "logvar as the standard deviation"),
    (lambda m, lv, e: m + lv.exp() * e, "exp(logvar) (the variance)"),
    (lambda m, lv, e: lv.mul(0.5).exp() * e, "forgot to add the mean"),
    (lambda m, lv, e: m, "returned the mean"),
])
def test_check_reparameterize_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_reparameterize(wrong, seed=2)
    assert cause in str(err.value)


@pytest.mark.parametrize("wrong,cause", [
    (lambda m, lv: -_kl(m, lv).sum(1), "sign is flipped"),
    (lambda m, lv: 2 * _kl(m, lv).sum(1), "missing the factor 1/2"),
    (lambda m, lv: _kl(m, lv).mean(1), "averaged over the latent dimensions"),
    (lambda m, lv: _kl(m, 2 * lv).sum(1), "logvar as log sigma"),
    (lambda m, lv: _kl(0 * m, lv).sum(1), "mean^2"),
    (lambda m, lv: _kl(m, lv).sum(), "expected shape"),
])
def test_check_kl_divergence_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_kl_divergence(wrong, seed=3)
    assert cause in str(err.value)


def _sse(x, xh):
    return ((x - xh) ** 2).flatten(1).sum(1)


@pytest.mark.parametrize("wrong,cause", [
    (lambda x, xh, m, lv, b: _sse(x, xh) - b * _kl(m, lv).sum(1), "subtracted the KL"),
    (lambda x, xh, m, lv, b: _sse(x, xh) + _kl(m, lv).sum(1), "forgot beta"),
    (lambda x, xh, m, lv, b: b * _sse(x, xh) + _kl(m, lv).sum(1), "beta on the reconstruction"),
    (lambda x, xh, m, lv, b: ((x - xh) ** 2).flatten(1).mean(1) + b * _kl(m, lv).sum(1), "mean squared error"),
    (lambda x, xh, m, lv, b: (_sse(x, xh) + b * _kl(m, lv).sum(1)).mean(), "batch mean"),
])
def test_check_negative_elbo_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_negative_elbo(wrong, seed=4)
    assert cause in str(err.value)
