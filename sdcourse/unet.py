"""A small UNet that predicts the noise eps in x_t (lesson 02; sampled in lessons 03 and 04).

    eps_theta(x_t, t, y) : (B, 1, 28, 28) x (B,) x (B,) -> (B, 1, 28, 28)

The denoiser of Ho et al. 2020 (arXiv:2006.11239, Sec. 4 and Appendix B), shrunk for MNIST on a
CPU: residual blocks with GroupNorm (Wu and He 2018) that add a projection of the time embedding,
a downsampling path 28 -> 14 -> 7 and an upsampling path back with one skip connection per level
(Ronneberger et al. 2015, arXiv:1505.04597), and self-attention only at 7x7, where it is cheap.

The timestep t enters through the sinusoidal embedding of the Transformer (Vaswani et al. 2017,
arXiv:1706.03762, Sec. 3.5) followed by a two-layer MLP. The class label y (0..9) enters through a
learned embedding added to it; the extra entry ``NULL_LABEL`` = 10 means "no label", so one model
is both conditional and unconditional (classifier-free guidance, Ho and Salimans 2022,
arXiv:2207.12598). ``labels=None`` means the null label for every image.

Why it is faster than ``diffusers.UNet2DModel`` of the same size on a CPU: its parameters sit at
the 7x7 level (many channels, few pixels) while the 28x28 level keeps few channels and a single
residual block, attention runs only on 49 tokens, and the model runs in channels-last memory
format (see ``bench/ddpm_cpu.py`` for the measurement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from . import validate
from .attention import SelfAttention

Tensor = torch.Tensor
NULL_LABEL = 10  # the class-embedding index meaning "no label" (classifier-free guidance)


@dataclass(frozen=True)
class UNetConfig:
    """The UNet's shape. Presets: ``UNetConfig.tiny()`` (tests), ``.cpu()`` (default), ``.gpu()``."""

    image_size: int = 28  # MNIST digits are 28x28; must be divisible by 2^(levels - 1)
    in_channels: int = 1  # grayscale
    channels: tuple[int, ...] = (16, 32, 64)  # per level (28, 14, 7): capacity goes where pixels are few
    blocks_per_level: int = 1  # residual blocks per level on each path; 1 keeps the 28x28 cost low
    attention_levels: tuple[bool, ...] = (False, False, True)  # attention at 7x7 only (49 tokens)
    attention_heads: int = 4  # heads of each SelfAttention; channels must divide by it
    num_classes: int = 10  # digits 0..9, plus one "no label" entry; 0 = unconditional model
    groups: int = 8  # GroupNorm groups; every channel count must divide by it
    dropout: float = 0.0  # inside residual blocks; Ho et al. use 0.1 on CIFAR-10, MNIST needs none

    def __post_init__(self):
        levels = len(self.channels)
        if levels < 1 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels!r}")
        if len(self.attention_levels) != levels:
            raise ValueError(
                f"attention_levels must have one entry per level ({levels}), got {self.attention_levels!r}"
            )
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size={self.image_size} must be divisible by 2^(levels - 1) = {2 ** (levels - 1)}"
            )
        validate.integer("groups", self.groups, low=1)
        validate.integer("attention_heads", self.attention_heads, low=1)
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}")
        for c in self.channels:
            if c % self.groups:
                raise ValueError(f"channels {self.channels} must all divide by groups={self.groups}")
            if c % self.attention_heads:
                raise ValueError(
                    f"channels {self.channels} must all divide by attention_heads={self.attention_heads}"
                )
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def tiny(cls) -> UNetConfig:
        """A few thousand parameters: for tests and fast-mode demos, not for good digits."""
        return cls(channels=(8, 16, 16), attention_heads=2, groups=4)

    @classmethod
    def cpu(cls) -> UNetConfig:
        """The shipped MNIST model (0.4 M parameters): about 300 images/s of training on two CPU cores."""
        return cls()

    @classmethod
    def gpu(cls) -> UNetConfig:
        """Wider and deeper, for a GPU: better digits for the same wall time."""
        return cls(channels=(64, 128, 256), blocks_per_level=2, attention_heads=8, dropout=0.1)

    @classmethod
    def preset(cls, name: str) -> UNetConfig:
        presets = {"tiny": cls.tiny, "cpu": cls.cpu, "gpu": cls.gpu}
        if name not in presets:
            raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
        return presets[name]()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        """Build from a JSON dict (lists become tuples); unknown keys are a ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown UNetConfig fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of timesteps t (B,), integer or fractional -> (B, dim) (Vaswani et al. 2017, Sec. 3.5):

        emb[i] = sin(t / max_period^(i / half)),  emb[half + i] = cos(t / max_period^(i / half))
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (half,)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, dim)


class TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time(+class) embedding added in between (Ho et al. App. B)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, out_ch) -> (B, out_ch, 1, 1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """GroupNorm then multi-head self-attention over the H*W positions, added back (residual)."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = SelfAttention(channels, heads=heads, dim_head=channels // heads)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)
        out = self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)  # (B, HW, C) -> (B, C, H, W)
        return x + out


class Level(nn.Module):
    """One resolution of one path: residual blocks, each followed by attention when asked."""

    def __init__(self, in_ch: int, out_ch: int, cfg: UNetConfig, emb_dim: int, attention: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            TimeResBlock(in_ch if i == 0 else out_ch, out_ch, emb_dim, cfg.groups, cfg.dropout)
            for i in range(cfg.blocks_per_level)
        )
        self.attns = nn.ModuleList(
            AttnBlock(out_ch, cfg.attention_heads, cfg.groups) if attention else nn.Identity()
            for _ in range(cfg.blocks_per_level)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for block, attn in zip(self.blocks, self.attns, strict=True):
            x = attn(block(x, emb))
        return x


class UNet(nn.Module):
    """eps_theta(x_t, t, labels): the noise predicted in x_t. See the module docstring."""

    num_train_timesteps = 1000  # T: DDPM's t is in [0, T), a flow's t * T in [0, T] (lesson 12); beyond is refused

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        ch = cfg.channels
        emb_dim = 4 * ch[0]  # Ho et al.'s time-embedding width: 4x the base channels
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # num_classes digits plus the NULL_LABEL entry ("no label"), for classifier-free guidance.
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None

        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(Level(prev, c, cfg, emb_dim, cfg.attention_levels[i]))
            last = i == len(ch) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            prev = c
        self.mid = Level(ch[-1], ch[-1], cfg, emb_dim, attention=True)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            # Input: the path so far concatenated with this level's skip (U-Net, Ronneberger et al.).
            self.up.append(Level(prev + ch[i], ch[i], cfg, emb_dim, cfg.attention_levels[i]))
            self.upsample.append(
                nn.Identity() if i == 0 else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1))
            )
            prev = ch[i - 1] if i else ch[0]
        self.norm_out = nn.GroupNorm(cfg.groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start by predicting eps = 0: a stable first step
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def from_config(cls, model_config: dict) -> UNet:
        """A fresh UNet from a card's ``model_config`` (what ``checkpoint.load_model`` calls)."""
        return cls(UNetConfig.from_dict(model_config)).to(memory_format=torch.channels_last)

    def embed(self, t: Tensor, labels: Tensor | None, batch: int) -> Tensor:
        """Time embedding MLP(sinusoid(t)), plus the class embedding of ``labels``: (B, 4*C0)."""
        emb = self.time_mlp(timestep_embedding(t, self.config.channels[0]))  # (B, emb_dim)
        if self.class_emb is None:
            if labels is not None:
                raise ValueError("this UNet is unconditional (num_classes=0); pass labels=None")
            return emb
        if labels is None:
            labels = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=t.device)
        return emb + self.class_emb(labels)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict eps from x_t (B, C, H, W), t (B,) or scalar (integer, or fractional), labels (B,) in 0..num_classes.

        ``labels`` entries equal to ``NULL_LABEL`` (= num_classes = 10), or ``labels=None``, mean
        "no label". Returns eps (B, C, H, W) in x_t's memory format.
        """
        t, labels = self._check_inputs(x_t, t, labels)
        emb = self.embed(t, labels, x_t.shape[0])
        h = self.conv_in(x_t)
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            h = level(h, emb)
            skips.append(h)
            h = down(h)  # (B, C, H, W) -> (B, C, H/2, W/2), except at the last level
        h = self.mid(h, emb)
        for level, up in zip(self.up, self.upsample, strict=True):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)  # (B, C + C_skip, H, W) -> (B, C, H, W)
            h = up(h)  # (B, C, H, W) -> (B, C_next, 2H, 2W), except at the top level
        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_inputs(self, x_t: Tensor, t, labels):
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != expected:
            raise ValueError(f"x_t must have shape (B, {', '.join(map(str, expected))}), got {tuple(x_t.shape)}")
        validate.floating_tensor("x_t", x_t)
        batch = x_t.shape[0]
        if t is None or isinstance(t, bool | str):
            raise ValueError(f"t must be a number or a tensor of timesteps in [0, {self.num_train_timesteps}], "
                             f"got {t!r}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dtype == torch.bool or t.is_complex():  # fractional t is fine: the solvers of lesson 11 use it
            raise ValueError(f"t must be an integer or real tensor, got dtype {t.dtype}")
        inside = (t >= 0) & (t <= self.num_train_timesteps)  # NaN fails too
        if t.numel() and not bool(inside.all()):
            bad = t.flatten()[~inside.flatten()][0].item()
            raise ValueError(f"t must be in [0, {self.num_train_timesteps}] (integer or fractional), got {bad}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape (B,) = ({batch},), got {tuple(t.shape)}")
        if labels is not None:
            labels = torch.as_tensor(labels, device=x_t.device)
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
            if labels.ndim == 0:
                labels = labels.expand(batch)
            if labels.shape != (batch,):
                raise ValueError(f"labels must have shape (B,) = ({batch},), got {tuple(labels.shape)}")
            if cfg.num_classes and labels.numel():
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi > cfg.num_classes:
                    raise ValueError(
                        f"labels must be in 0..{cfg.num_classes - 1} (or {cfg.num_classes} = no label), "
                        f"got {lo if lo < 0 else hi}"
                    )
            labels = labels.long()
        return (t if t.is_floating_point() else t.long()), labels  # fractional t stays fractional (lesson 11)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
