"""What every benchmark ends with: its table printed, and its JSON written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path


def finish(rows: list[tuple[str, str]], payload: dict, out: Path) -> None:
    """Print ``rows`` (label, value) as two aligned columns, then write ``payload`` to ``out`` (via a
    temporary file and a rename, so an interrupted run never leaves half a JSON)."""
    width = max(len(label) for label, _ in rows)
    print("\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
