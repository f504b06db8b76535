"""The variational autoencoder (lesson 05) whose latents the diffusion model of lesson 07 denoises.

Kingma and Welling 2014, "Auto-Encoding Variational Bayes" (arXiv:1312.6114). An encoder maps an
image x to the parameters of a diagonal Gaussian q(z | x) = N(mean, exp(logvar)); a decoder maps a
latent z back to an image. Training minimises the negative evidence lower bound (ELBO, Eq. 3):

    -ELBO(x) = E_q[-log p(x | z)] + beta * KL(q(z | x) || N(0, I))
             =   reconstruction   + beta * KL

- reconstruction: a Gaussian decoder with fixed variance 1/2, p(x | z) = N(x; decoder(z), I / 2), so
  -log p(x | z) is the sum of squared errors over pixels (one sample of z) plus a constant that no
  gradient and no comparison here sees (``reconstruction_error``).
- KL: closed form for two Gaussians (Appendix B), summed over the latent dimensions. beta = 1 is the
  true ELBO; beta != 1 trades reconstruction for a smoother latent space (Higgins et al. 2017).
- z = mean + exp(logvar / 2) * eps with eps ~ N(0, I) (the reparameterization trick, Eq. 10 with
  g(eps, x) = mu + sigma * eps), so gradients flow through the sample into the encoder.

Two shapes, one interface (``encode(x) -> (mean, logvar)``, ``decode(z) -> x_hat``):
- ``ConvVAE``: a spatial latent like Stable Diffusion's (Rombach et al. 2022, arXiv:2112.10752):
  1x28x28 -> 4x7x7, a downsampling factor of 4 (SD: 3x512x512 -> 4x64x64, factor 8).
- ``MLPVAE``: a fully connected VAE with a 2-D latent, small enough to draw its latent space.

The latent scaling factor: SD multiplies its latents by 0.18215, one over the standard deviation of
the latents of a batch of training images, so the diffusion model sees unit-variance data (the
assumption its noise schedule is built on). ``latent_scaling_factor`` computes ours the same way,
``runs.train_vae`` stores it, ``checkpoint.load_model`` sets it, ``encode_latents`` / ``decode_latents``
use it. Lesson 05's beta sweep, 2-D latent grid and interpolation are in ``experiments.vae_lesson``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from . import validate

Tensor = torch.Tensor
LOGVAR_RANGE = (-30.0, 20.0)  # the clamp diffusers' DiagonalGaussianDistribution applies (no exp overflow)


@dataclass(frozen=True)
class VAEConfig:
    """The convolutional VAE with a spatial latent (the shape of SD's VAE, shrunk for MNIST)."""

    image_size: int = 28  # MNIST digits are 28x28; must be divisible by 2^(len(channels))
    in_channels: int = 1  # grayscale
    latent_channels: int = 4  # SD's VAE has 4 latent channels; 4x7x7 = 196 numbers for 784 pixels
    channels: tuple[int, ...] = (16, 32)  # per downsampling (28 -> 14 -> 7): factor 2^len = 4; CPU-sized
    groups: int = 8  # GroupNorm groups, as in SD's ResnetBlock2D; channels must divide by it
    beta: float = 1.0  # weight of the KL term; 1 = the ELBO of Kingma and Welling

    def __post_init__(self):
        if not self.channels or any(int(c) < 1 or c % self.groups for c in self.channels):
            raise ValueError(f"channels must be positive and divide by groups={self.groups}, got {self.channels!r}")
        for name in ("image_size", "in_channels", "latent_channels"):
            validate.integer(name, getattr(self, name), low=1)
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(f"image_size={self.image_size} must be a multiple of 2^len(channels) = {self.factor}")
        _check_beta(self.beta)

    @property
    def factor(self) -> int:
        """The downsampling factor: image_size / latent_size (4 here, 8 in SD)."""
        return 2 ** len(self.channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.image_size // self.factor, self.image_size // self.factor)


@dataclass(frozen=True)
class MLPVAEConfig:
    """The fully connected VAE with a tiny latent, for drawing the latent space."""

    image_size: int = 28  # MNIST
    in_channels: int = 1  # grayscale
    hidden: tuple[int, ...] = (512, 256)  # hidden widths of the encoder (the decoder mirrors them)
    latent_dim: int = 2  # 2 so that the whole latent space fits on one page
    beta: float = 1.0  # weight of the KL term; 1 = the ELBO

    def __post_init__(self):
        for name in ("image_size", "in_channels", "latent_dim"):
            validate.integer(name, getattr(self, name), low=1)
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {self.hidden!r}")
        _check_beta(self.beta)

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.latent_dim,)


def _check_beta(beta: float) -> float:
    return validate.number("beta", beta, low=0, meaning="(0: a plain autoencoder, 1: the ELBO)")


# ---- the objective ----------------------------------------------------------------------------


def reparameterize(mean: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mean + sigma * eps with sigma = exp(logvar / 2) (Kingma and Welling 2014, Eq. 10).

    One shape, e.g. (B, 4, 7, 7); ``eps`` ~ N(0, I) from the caller may be (S, B, 4, 7, 7) (Monte Carlo).
    """
    validate.same_real_shape("logvar", logvar, "mean", mean)  # no silent broadcasting
    validate.same_shape("eps", validate.floating_tensor("eps", eps), "mean", mean, leading=True)
    return mean + torch.exp(0.5 * logvar) * eps  # sigma = sqrt(exp(logvar))


def sample_posterior(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One sample z ~ q(z | x) = N(mean, exp(logvar)): ``reparameterize`` with eps ~ N(0, I) from ``generator``."""
    eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)  # drawn on the CPU
    return reparameterize(mean, logvar, eps)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample: (B, ...) -> (B,), summed over latent dims.

    Closed form (Kingma and Welling 2014, Appendix B): -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    validate.same_real_shape("logvar", logvar, "mean", mean)  # no silent broadcasting
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)  # Appendix B, per latent dimension
    return kl.flatten(1).sum(1)  # (B, ...) -> (B,)


def reconstruction_error(x: Tensor, x_hat: Tensor) -> Tensor:
    """-log p(x | z) up to a constant, per sample: the sum of squared errors (B, ...) -> (B,).

    A Gaussian decoder with fixed variance sigma^2 = 1/2: ||x - x_hat||^2 / (2 sigma^2) = ||x - x_hat||^2,
    which is -log N(x; x_hat, I / 2) minus the constant (D / 2) log(pi): 448.7 nats for D = 784 pixels.
    """
    return (x - x_hat).pow(2).flatten(1).sum(1)  # (B, C, H, W) -> (B,)


def negative_elbo(x: Tensor, x_hat: Tensor, mean: Tensor, logvar: Tensor, beta: float = 1.0) -> Tensor:
    """-ELBO per sample (B,): reconstruction_error(x, x_hat) + beta * kl_divergence(mean, logvar)."""
    _check_beta(beta)
    return reconstruction_error(x, x_hat) + beta * kl_divergence(mean, logvar)  # Eq. 3 with one z sample


class ELBOTerms(NamedTuple):
    loss: Tensor  # mean over the batch of the negative ELBO (what the optimizer minimises)
    reconstruction: Tensor  # (B,) sum of squared errors
    kl: Tensor  # (B,) KL to the prior


def vae_loss(model: VAE, x: Tensor, generator: torch.Generator | None = None, beta: float | None = None) -> ELBOTerms:
    """One-sample estimate of the negative ELBO for a batch x (B, C, H, W); eps drawn from ``generator``."""
    beta = _check_beta(model.config.beta if beta is None else beta)
    validate.nonempty("x", x)
    mean, logvar = model.encode(x)
    x_hat = model.decode(sample_posterior(mean, logvar, generator))
    rec, kl = reconstruction_error(x, x_hat), kl_divergence(mean, logvar)
    return ELBOTerms((rec + beta * kl).mean(), rec, kl)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus a skip: the ResnetBlock2D of SD's VAE without time."""

    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class VAE(nn.Module):
    """Shared interface: ``encode``, ``decode``, ``forward``, input checks and the scaling factor."""

    config: VAEConfig | MLPVAEConfig
    flat: bool = False  # True: the encoder takes flattened images, the decoder returns them flat
    scaling_factor: float = 1.0  # set from the checkpoint by ``checkpoint.load_model`` (SD: 0.18215)

    @classmethod
    def from_config(cls, model_config: dict) -> VAE:
        """A fresh VAE of this class from a card's ``model_config`` (what ``checkpoint.load_model`` calls)."""
        return build(next(v for v, (model_cls, _) in VARIANTS.items() if model_cls is cls), model_config)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) in [-1, 1] -> (mean, logvar) of q(z | x), each (B, *latent_shape)."""
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[2:] != (s, s):
            raise ValueError(f"images must have shape (B, {c}, {s}, {s}) for this VAE, got {tuple(x.shape)}")
        # the MLP sees (B, C*H*W); (B, 2L, ...) -> 2 x (B, L, ...)
        mean, logvar = self.encoder(x.flatten(1) if self.flat else x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        """z (B, *latent_shape) -> x_hat (B, C, H, W) in [-1, 1]."""
        shape, c, s = tuple(self.config.latent_shape), self.config.in_channels, self.config.image_size
        if z.ndim != 1 + len(shape) or tuple(z.shape[1:]) != shape:
            raise ValueError(f"latents must have shape (B, {', '.join(map(str, shape))}), got {tuple(z.shape)}")
        return self.decoder(z).view(len(z), c, s, s)  # the MLP's (B, C*H*W) -> (B, C, H, W)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C, H, W) -> (x_hat, mean, logvar), with one reparameterized sample of z."""
        mean, logvar = self.encode(x)
        return self.decode(sample_posterior(mean, logvar, generator)), mean, logvar


class ConvVAE(VAE):
    """x (B, 1, 28, 28) -> mean, logvar (B, 4, 7, 7) -> x_hat (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or VAEConfig()
        ch, g = cfg.channels, cfg.groups
        enc: list[nn.Module] = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        prev = ch[0]
        for c in ch:  # each level: a residual block, then a stride-2 conv halves the size
            enc += [ResBlock(prev, c, g), nn.Conv2d(c, c, 3, stride=2, padding=1)]
            prev = c
        # SD's encoder ends with norm, SiLU and a conv to 2 x latent_channels: mean and logvar
        enc += [ResBlock(prev, prev, g), nn.GroupNorm(g, prev), nn.SiLU(),
                nn.Conv2d(prev, 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1), ResBlock(ch[-1], ch[-1], g)]
        prev = ch[-1]
        for c in reversed(ch):  # each level: upsample x2 (nearest + conv, as SD's Upsample2D), a block
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(prev, prev, 3, padding=1),
                    ResBlock(prev, c, g)]
            prev = c
        dec += [nn.GroupNorm(g, prev), nn.SiLU(), nn.Conv2d(prev, cfg.in_channels, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)


def _mlp(widths: list[int]) -> list[nn.Module]:
    return [m for a, b in zip(widths[:-1], widths[1:], strict=True) for m in (nn.Linear(a, b), nn.SiLU())]


class MLPVAE(VAE):
    """x (B, 1, 28, 28) -> mean, logvar (B, 2) -> x_hat (B, 1, 28, 28) in [-1, 1]."""

    flat = True

    def __init__(self, config: MLPVAEConfig | None = None):
        super().__init__()
        self.config = cfg = config or MLPVAEConfig()
        pixels = cfg.in_channels * cfg.image_size ** 2
        self.encoder = nn.Sequential(*_mlp([pixels, *cfg.hidden]), nn.Linear(cfg.hidden[-1], 2 * cfg.latent_dim))
        self.decoder = nn.Sequential(*_mlp([cfg.latent_dim, *reversed(cfg.hidden)]),
                                     nn.Linear(cfg.hidden[0], pixels), nn.Tanh())


VARIANTS = {"vae": (ConvVAE, VAEConfig), "vae2d": (MLPVAE, MLPVAEConfig)}


def build(variant: str, model_config: dict | None = None) -> VAE:
    """``build("vae")`` (the spatial ConvVAE) or ``build("vae2d")`` (the 2-D MLPVAE), from a config dict."""
    model_cls, config_cls = VARIANTS[validate.one_of("variant", variant, sorted(VARIANTS))]
    values = model_config or {}
    unknown = sorted(set(values) - {f.name for f in fields(config_cls)})
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} fields {unknown}")
    return model_cls(config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}))


def config_dict(model: VAE) -> dict:
    return asdict(model.config)


# ---- latents for diffusion --------------------------------------------------------------------


@torch.no_grad()
def latent_scaling_factor(model: VAE, images: Tensor, batch_size: int = 500, seed: int = 0) -> float:
    """1 / std of the latents z ~ q(z | x) of ``images`` (N, C, H, W), as SD's 0.18215 was computed.

    Rombach et al. 2022, Sec. 4.3.2 / Appendix G: rescale "by the component-wise standard deviation"
    so the latents have unit variance, which the diffusion model's noise schedule assumes.
    """
    gen = torch.Generator().manual_seed(seed)
    zs = [sample_posterior(*model.encode(images[start:start + batch_size]), gen)
          for start in range(0, len(images), batch_size)]
    return 1.0 / torch.cat(zs).double().std().item()


@torch.no_grad()
def encode_latents(model: VAE, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images (B, C, H, W) -> scaled latents for diffusion: z * model.scaling_factor.

    With a ``generator``, z is a sample of q(z | x) (as SD's training does); without, its mean.
    """
    mean, logvar = model.encode(x)
    z = mean if generator is None else sample_posterior(mean, logvar, generator)
    return z * model.scaling_factor  # diffusers: latents = vae.encode(x).latent_dist.sample() * scaling_factor


@torch.no_grad()
def decode_latents(model: VAE, latents: Tensor) -> Tensor:
    """Scaled latents from diffusion -> images (B, C, H, W) in [-1, 1]: decode(latents / scaling_factor)."""
    return model.decode(latents / model.scaling_factor)  # diffusers: vae.decode(latents / scaling_factor)
