"""Output paths checked before the work starts: a bad ``--out`` fails in the first second, not the last.

``output_file(option, path, suffixes)`` returns the path when it can be written (its folder is
created) and otherwise raises a ValueError naming the option: a directory, a missing or unknown
extension, a folder that cannot be created. ``input_file`` refuses a missing path, a directory and
a FIFO (which would block the reader forever).
"""

from __future__ import annotations

from pathlib import Path


def output_file(option: str, path, suffixes: tuple[str, ...]) -> Path:
    """``path`` as a Path whose folder exists, or a ValueError naming ``option`` and what is allowed."""
    path = Path(path).expanduser()
    allowed = " or ".join(suffixes)
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a directory; give a file name ending in {allowed}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {str(path)!r} must end in {allowed}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{option} {str(path)!r}: cannot create its folder ({err.strerror})") from err
    return path


def input_file(option: str, path) -> Path:
    """``path`` as a Path if it is an existing regular file, else a ValueError naming ``option``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{option} {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{option} {str(path)!r} is not a regular file")
    return path
