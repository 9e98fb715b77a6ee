"""Output paths checked before any work: a run should not train for an hour and then find it cannot save."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ensure_writable_folder(folder) -> Path:
    """Create `folder` if needed and prove a file can be written in it; ValueError in one line if not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".minids-write-test.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to {folder}: {e.strerror or e}") from None
    return folder


def ensure_writable_file(path) -> Path:
    """The file `path` can be (over)written: not a folder, and its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name for the checkpoint, e.g. {path / 'model.pt'}")
    ensure_writable_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot overwrite {path}: it is read-only")
    return path
