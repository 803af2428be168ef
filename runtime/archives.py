"""Reading `.npz` archives that may have come from elsewhere (results folders, checkpoints): the
size their members take once inflated is checked before any is read, since a few kilobytes of
compressed zeros can declare gigabytes."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

MAX_LOAD_BYTES = int(os.environ.get("PPLANG_MAX_LOAD_BYTES", 4 * 2**30))


def load_npz(path: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of the archive by name, read without pickles. ValueError when it is not a zip
    archive or would inflate past `limit` bytes (default MAX_LOAD_BYTES, or $PPLANG_MAX_LOAD_BYTES)."""
    limit = MAX_LOAD_BYTES if limit is None else limit
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(m.file_size for m in z.infolist())
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{Path(path).name} is not an .npz archive ({exc})") from None
    if total > limit:
        raise ValueError(f"{Path(path).name} would take {total / 2**30:.2f} GiB once read, more than the "
                         f"{limit / 2**30:.2f} GiB allowed (set PPLANG_MAX_LOAD_BYTES to allow more, if you "
                         "trust the file)")
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            try:
                out[name] = z[name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise ValueError(f"entry `{name}`: {exc}") from None
    return out
