"""CLIP's tokenizer, built offline from the BPE vocabulary that ``open-clip-torch`` ships (lesson 08).

Stable Diffusion 1.x reads prompts with the tokenizer of OpenAI's CLIP ViT-L/14 (Radford et al.
2021, arXiv:2103.00020): lower-cased text, split into words, each word into byte-level BPE pieces
(Sennrich et al. 2016, arXiv:1508.07909), framed by ``<|startoftext|>`` (id 49406) and
``<|endoftext|>`` (id 49407), and padded or truncated to 77 tokens. The vocabulary is 49,408
entries: 256 bytes, the same 256 bytes ending a word (``</w>``), 48,894 merges, and the two markers.

The merges file is the same one OpenAI published; ``open_clip`` keeps a copy inside its PyPI package,
so ``clip_tokenizer()`` builds a ``transformers.CLIPTokenizer`` with ids identical to
``open_clip.tokenize`` (and to the ``tokenizer/`` folder of every SD 1.x repository) with no
download. Padding follows SD 1.5's ``tokenizer_config.json`` (pad with ``<|endoftext|>``);
``open_clip`` pads with 0, so the two agree up to and including the first ``<|endoftext|>``.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache

MODEL_MAX_LENGTH = 77  # CLIP's text transformer has 77 position embeddings
VOCAB_SIZE = 49_408  # 256 bytes + 256 word-final bytes + 48,894 merges + 2 markers
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_NUM_MERGES = 49_152 - 256 - 2  # open_clip/OpenAI: the merges file's first line is a header


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = keep[:]
    shifted = 0
    for byte in range(256):
        if byte not in keep:  # whitespace and control bytes move past 255 so each byte prints
            keep.append(byte)
            chars.append(256 + shifted)
            shifted += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def bpe_path() -> str:
    """The gzipped BPE merges file inside ``open_clip`` (``bpe_simple_vocab_16e6.txt.gz``)."""
    import open_clip.tokenizer  # lazy: open_clip imports torchvision and timm; only the file's path is needed

    return os.path.join(
        os.path.dirname(open_clip.tokenizer.__file__), "bpe_simple_vocab_16e6.txt.gz"
    )


@lru_cache(maxsize=2)
def clip_tokenizer(model_max_length: int = MODEL_MAX_LENGTH):
    """The CLIP tokenizer, built offline: a ``transformers.CLIPTokenizer`` with 49,408 ids."""
    from transformers import CLIPTokenizer  # lazy: transformers takes seconds to import

    lines = gzip.open(bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = (
        byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS, EOS]
    )
    vocab = {token: index for index, token in enumerate(tokens)}
    assert len(vocab) == VOCAB_SIZE, f"expected {VOCAB_SIZE} tokens, built {len(vocab)}"
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=model_max_length,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
    )


def load_tokenizer(model_id: str | None = None, online: bool = False):
    """A model's own tokenizer from the hub when ``model_id`` is given and ``online``; else the offline one.

    Any failure on the hub (no network, no ``tokenizer/`` folder) falls back to ``clip_tokenizer()``,
    which gives the same ids for every SD 1.x model.
    """
    if model_id is not None and online:
        try:
            from transformers import CLIPTokenizer  # lazy: transformers takes seconds to import

            tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer")
        except Exception:  # offline after all, or a repository without a tokenizer folder
            tokenizer = None
        # transformers 5 returns an empty 2-token tokenizer, without an error, when nothing was found
        if tokenizer is not None and len(tokenizer) == VOCAB_SIZE:
            return tokenizer
    return clip_tokenizer()


def truncated_part(tokenizer, prompt: str) -> str:
    """The text of ``prompt`` that falls beyond the tokenizer's 77 tokens ("" when it fits)."""
    ids = tokenizer(prompt, truncation=False).input_ids  # [BOS, w_1 .. w_n, EOS]
    keep = tokenizer.model_max_length - 2  # 75 words fit between the two markers
    if len(ids) - 2 <= keep:
        return ""
    return tokenizer.decode(ids[1 + keep : -1])


def piece_bytes(piece: str) -> bytes:
    """The UTF-8 bytes a BPE piece stands for ("ä¸" -> b"\\xe4\\xb8"; the ``</w>`` word end is dropped)."""
    decode = {char: byte for byte, char in _bytes_to_unicode().items()}
    return bytes(decode[c] for c in piece.removesuffix("</w>"))
