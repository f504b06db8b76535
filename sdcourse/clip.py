"""A tiny CLIP for digits: a text transformer and an image encoder trained together (lesson 09).

CLIP (Radford et al. 2021, arXiv:2103.00020) embeds images and texts in one space: for a batch
of N (image, caption) pairs with unit embeddings u_i (image) and v_j (text), the logits are
L_ij = exp(tau) u_i . v_j and the InfoNCE loss (van den Oord et al. 2018, arXiv:1807.03748) is
the mean of the two cross-entropies with the matching pair as the target,

    loss = ( CE(L, diag) + CE(L^T, diag) ) / 2.

The text tower is a small ``transformers.CLIPTextModel`` reading the course's offline CLIP
tokenizer (``sd.tokenizer``), so it drops into a ``StableDiffusionPipeline`` as its text
encoder; its pooled output (the ``<|endoftext|>`` token) is projected to the shared space. The
image tower is a small CNN on 32x32 digits. Zero-shot classification picks the class whose
prompt embedding is nearest to the image's (Radford et al. section 3.1.2).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .sd.tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

Tensor = torch.Tensor
TEXT = {"hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4}


def text_config(**overrides):
    """``CLIPTextConfig`` with CLIP's 49,408 ids and 77 positions and a small transformer."""
    from transformers import CLIPTextConfig  # lazy: transformers takes seconds to import

    return CLIPTextConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=MODEL_MAX_LENGTH, hidden_act="quick_gelu",
                          bos_token_id=49_406, eos_token_id=49_407, pad_token_id=49_407, **{**TEXT, **overrides})


def tokenize(prompts: list[str]) -> Tensor:
    """Token ids (N, 77) as a ``StableDiffusionPipeline`` makes them (padded with <|endoftext|>)."""
    return clip_tokenizer()(prompts, padding="max_length", max_length=MODEL_MAX_LENGTH, truncation=True,
                            return_tensors="pt").input_ids


class ImageEncoder(nn.Module):
    """32x32 grey digits -> ``dim`` features: three stride-2 convolutions and a linear layer."""

    def __init__(self, dim: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, 2, 1), nn.SiLU(), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.SiLU(), nn.Flatten(), nn.Linear(2 * width * 16, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TinyCLIP(nn.Module):
    """Text tower (``CLIPTextModel``) + image tower, both projected to ``embed_dim`` unit vectors."""

    def __init__(self, embed_dim: int = 64, **text_overrides):
        super().__init__()
        from transformers import CLIPTextModel  # lazy: transformers takes seconds to import

        self.text_model = CLIPTextModel(text_config(**text_overrides))
        width = self.text_model.config.hidden_size
        self.text_projection = nn.Linear(width, embed_dim, bias=False)
        self.image_encoder = ImageEncoder(embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def encode_text(self, ids: Tensor) -> Tensor:
        return F.normalize(self.text_projection(self.text_model(input_ids=ids).pooler_output), dim=-1)

    def encode_image(self, images: Tensor) -> Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)

    def forward(self, images: Tensor, ids: Tensor) -> Tensor:
        """The logits L_ij = exp(tau) u_i . v_j (images x texts), tau clamped at log 100 as in CLIP."""
        return self.log_scale.clamp(max=math.log(100)).exp() * self.encode_image(images) @ self.encode_text(ids).T


def info_nce(logits: Tensor) -> Tensor:
    """Symmetric InfoNCE: (CE(L, diag) + CE(L^T, diag)) / 2 for square logits L (images x texts)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be square (N, N), got shape {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def zero_shot(model: TinyCLIP, images: Tensor, prompts: list[str]) -> Tensor:
    """The index of the nearest of ``prompts`` for each image (N,): zero-shot classification."""
    texts = model.encode_text(tokenize(prompts))
    return (model.encode_image(images) @ texts.T).argmax(1)
