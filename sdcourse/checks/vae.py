"""Lesson 05 (the VAE): checks for the reparameterization trick (Kingma and Welling 2013, Eq. 10),
the KL divergence to the standard normal prior and the negative ELBO, against ``sdcourse.vae``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..vae import kl_divergence, negative_elbo, reparameterize
from .core import call, compare, exercise, generator, passed

__all__ = ["check_kl_divergence", "check_negative_elbo", "check_reparameterize"]


def _random_gaussian(gen: torch.Generator, trial: int) -> tuple[Tensor, Tensor]:
    """mean and logvar of a spatial latent (B, 4, 7, 7) on even trials, a 2-D one (B, 2) on odd."""
    batch = int(torch.randint(2, 7, (1,), generator=gen))
    shape = (batch, 4, 7, 7) if trial % 2 == 0 else (batch, 2)
    mean = torch.randn(shape, generator=gen)
    logvar = torch.empty(shape).uniform_(-3.0, 1.5, generator=gen)
    return mean, logvar


@exercise("reparameterize")
def check_reparameterize(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar, eps) -> z = mean + exp(logvar / 2) * eps`` (Kingma and Welling, Eq. 10)."""
    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        eps = torch.randn(mean.shape, generator=gen)
        got = call(fn, mean.clone(), logvar.clone(), eps.clone(), what="reparameterize")
        compare("z", got, reparameterize(mean, logvar, eps), context=f"shape {tuple(mean.shape)}", mistakes={
            "used logvar as the standard deviation; sigma = exp(logvar / 2).": mean + logvar * eps,
            "used exp(logvar) (the variance) as the standard deviation; sigma = exp(0.5 * logvar).":
                mean + logvar.exp() * eps,
            "forgot to add the mean: z = mean + sigma * eps.": (0.5 * logvar).exp() * eps,
            "returned the mean: the sample needs the noise term sigma * eps.": mean,
        })
    passed("reparameterize", trials)


@exercise("kl_divergence")
def check_kl_divergence(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, I))`` per sample, shape (B,)."""
    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        got = call(fn, mean.clone(), logvar.clone(), what="kl_divergence")
        per_dim = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar)
        compare("kl", got, kl_divergence(mean, logvar), context=f"shape {tuple(mean.shape)}", mistakes={
            "the sign is flipped: KL = -1/2 sum(1 + logvar - mean^2 - exp(logvar)) is never negative.":
                -per_dim.flatten(1).sum(1),
            "missing the factor 1/2.": 2 * per_dim.flatten(1).sum(1),
            "averaged over the latent dimensions; the KL of independent dimensions is their sum.":
                per_dim.flatten(1).mean(1),
            "used logvar as log sigma (the standard deviation); logvar is log sigma^2, so sigma^2 = exp(logvar).":
                0.5 * (mean ** 2 + (2 * logvar).exp() - 1 - 2 * logvar).flatten(1).sum(1),
            "forgot the mean^2 term.": 0.5 * (logvar.exp() - 1 - logvar).flatten(1).sum(1),
        }, rtol=1e-4, atol=1e-4)
    passed("kl_divergence", trials)


@exercise("negative_elbo")
def check_negative_elbo(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x, x_hat, mean, logvar, beta) -> -ELBO`` per sample (B,): the sum of squared errors
    over pixels plus beta times the KL (a Gaussian decoder with fixed variance sigma^2 = 1/2, so
    ||x - x_hat||^2 / (2 sigma^2) is the plain sum)."""
    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        b = mean.shape[0]
        x = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        x_hat = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        beta = float(torch.empty(1).uniform_(0.1, 4.0, generator=gen))
        got = call(fn, x.clone(), x_hat.clone(), mean.clone(), logvar.clone(), beta, what="negative_elbo")
        sse = (x - x_hat).pow(2).flatten(1).sum(1)
        kl = kl_divergence(mean, logvar)
        compare("negative ELBO", got, negative_elbo(x, x_hat, mean, logvar, beta),
                context=f"beta={beta:.3g}, latent shape {tuple(mean.shape)}", mistakes={
                    "subtracted the KL: the negative ELBO adds it (a penalty for leaving the prior).": sse - beta * kl,
                    "forgot beta on the KL term.": sse + kl,
                    "put beta on the reconstruction instead of the KL.": beta * sse + kl,
                    "used the mean squared error; the Gaussian log-likelihood sums over pixels.":
                        (x - x_hat).pow(2).flatten(1).mean(1) + beta * kl,
                    "returned the batch mean; return one value per sample, shape (B,).": (sse + beta * kl).mean(),
                    "halved the squared errors: 0.5 * SSE is -log p(x | z) for a decoder of variance "
                    "sigma^2 = 1; this course's decoder has sigma^2 = 1/2, so ||x - x_hat||^2 / (2 sigma^2) is "
                    "the full sum (lesson 05).": 0.5 * sse + beta * kl,
                    "halved both terms: 0.5 * SSE + 0.5 * beta * KL is half the loss (sigma^2 = 1 again); with "
                    "sigma^2 = 1/2 it is SSE + beta * KL.": 0.5 * (sse + beta * kl),
                }, rtol=1e-4, atol=1e-3)
    passed("negative_elbo", trials)
