"""Small shared helpers: seeding, the FAST flag, bundled-data paths, atomic writes."""
from __future__ import annotations

import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

#: Folder with the bundled, offline sample data (``data_samples/`` at the repo root).
#: Override with the ``EMOZONE_DATA`` environment variable.
DATA_DIR = Path(os.environ.get("EMOZONE_DATA", Path(__file__).resolve().parent.parent / "data_samples"))

#: True when ``EMOZONE_FAST=1``: notebooks and demos shrink sizes and iterations
#: (never their checks). CI sets it.
FAST = os.environ.get("EMOZONE_FAST", "0") not in ("", "0", "false", "False")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so runs repeat exactly on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_path(name: str) -> Path:
    """Path of a bundled sample file, e.g. ``data_path("arctic_a0009.wav")``.

    Raises:
        FileNotFoundError: naming the file and the data folder searched.
    """
    p = DATA_DIR / name
    if not p.exists():
        available = sorted(x.name for x in DATA_DIR.iterdir()) if DATA_DIR.is_dir() else []
        raise FileNotFoundError(
            f"bundled sample {name!r} not found in {DATA_DIR}; available: {available}"
        )
    return p


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Write to a temporary file beside ``path`` and rename it into place.

    A crash mid-write never leaves a truncated ``path`` behind: either the old
    file or the complete new one is there.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
