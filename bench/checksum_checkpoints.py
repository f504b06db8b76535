"""Store the SHA-256 of each shipped checkpoint's tensors in its metadata (issue 19), tensors untouched.

    python bench/checksum_checkpoints.py

Re-saves every ``checkpoints/*.safetensors`` through ``checkpoint.save`` (which adds ``sha256``)
and then checks that every tensor reads back bitwise identical to before; prints one line a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdcourse import checkpoint, config  # noqa: E402


def main() -> None:
    for path in sorted(config.CHECKPOINTS_DIR.glob("*.safetensors")):
        before, meta = checkpoint.load(path)
        meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
        checkpoint.save(path, before, meta)
        after, saved = checkpoint.load(path)  # verifies the new checksum
        same = before.keys() == after.keys() and all(
            before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]) for k in before)
        if not same:
            raise SystemExit(f"{path}: tensors changed on re-save")
        print(f"{path.name}: {len(after)} tensors bitwise identical, sha256 {saved['sha256'][:16]}...")


if __name__ == "__main__":
    main()
