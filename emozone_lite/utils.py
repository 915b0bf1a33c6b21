"""Small shared helpers: seeding, the FAST flag, where data / caches / outputs live, atomic writes.

Nothing here is frozen at import: every function reads the environment when it is
called, so a user can change ``EMOZONE_FAST``, ``EMOZONE_DATA``, ``EMOZONE_CACHE`` or
``EMOZONE_OUTPUTS`` at any time (``os.environ[...] = ...`` in a notebook works).

=================== ======================================================= ==========================
variable            meaning                                                 default
=================== ======================================================= ==========================
``EMOZONE_FAST``    ``1``/``true``/``yes``/``on``: shrink sizes and          off
                    iterations (never the checks); CI sets it
``EMOZONE_DATA``    folder of the bundled sample data                       the installed package data
``EMOZONE_CACHE``   cached teacher datasets and trained models              the user cache folder
                                                                            (``~/.cache/emozone-lite``)
``EMOZONE_OUTPUTS`` where the studio and notebooks write videos             ``./outputs``
=================== ======================================================= ==========================
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ENV_FAST",
    "ENV_DATA",
    "ENV_CACHE",
    "ENV_OUTPUTS",
    "fast_mode",
    "data_dir",
    "data_path",
    "cache_dir",
    "outputs_dir",
    "seed_everything",
    "get_device",
    "atomic_write",
    "environment_report",
]

ENV_FAST = "EMOZONE_FAST"
ENV_DATA = "EMOZONE_DATA"
ENV_CACHE = "EMOZONE_CACHE"
ENV_OUTPUTS = "EMOZONE_OUTPUTS"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def fast_mode() -> bool:
    """True when ``EMOZONE_FAST`` is set to ``1``/``true``/``yes``/``on`` (any case).

    The one place the flag is parsed. Notebooks and demos shrink sizes and iterations
    under it (never their checks); CI sets it.

    Raises:
        ValueError: for any other value, naming it (a typo must not silently run the
            full configuration).
    """
    raw = os.environ.get(ENV_FAST, "")
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{ENV_FAST}={raw!r} is not understood; use 1 (fast) or 0 (full)")


def _packaged_data_dir() -> Path | None:
    """Folder of the ``emozone_lite.data`` package (``data_samples/`` of the source tree)."""
    try:
        from importlib.resources import files

        p = Path(str(files("emozone_lite.data")))
    except (ModuleNotFoundError, TypeError):
        return None
    return p if p.is_dir() else None


def data_dir() -> Path:
    """Folder with the bundled, offline sample data.

    ``EMOZONE_DATA`` when set; else the installed package data (``emozone_lite.data``,
    which is ``data_samples/`` of a source checkout or an editable install); else
    ``data_samples/`` beside the package (a checkout used through ``PYTHONPATH``).
    """
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env)
    packaged = _packaged_data_dir()
    if packaged is not None:
        return packaged
    return Path(__file__).resolve().parent.parent / "data_samples"


def data_path(name: str) -> Path:
    """Path of a bundled sample file, e.g. ``data_path("arctic_a0009.wav")``.

    Raises:
        FileNotFoundError: naming the file and the data folder searched.
    """
    root = data_dir()
    p = root / name
    if not p.exists():
        available = sorted(x.name for x in root.iterdir() if not x.name.startswith(("_", "."))) if root.is_dir() else []
        raise FileNotFoundError(f"bundled sample {name!r} not found in {root}; available: {available}")
    return p


def cache_dir() -> Path:
    """Where teacher datasets and trained models are cached: ``EMOZONE_CACHE`` when set,
    else the user cache folder (``platformdirs.user_cache_dir("emozone-lite")``,
    ``~/.cache/emozone-lite`` on Linux). Never inside the installed package."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("emozone-lite", appauthor=False))


def outputs_dir() -> Path:
    """Where videos and reports go by default: ``EMOZONE_OUTPUTS`` when set, else
    ``outputs/`` in the current folder."""
    env = os.environ.get(ENV_OUTPUTS)
    return Path(env) if env else Path.cwd() / "outputs"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so runs repeat exactly on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment_report() -> str:
    """One line per fact a lesson depends on: versions, device, render backend, data, FAST.

    What each notebook's launch cell prints, so a student (or a teacher reading a screenshot)
    sees at once whether this kernel is the one the lesson expects. Reads nothing from the
    network and changes nothing.

    Examples:
        >>> "emozone-lite" in environment_report()
        True
    """
    import platform
    import sys

    from . import __version__

    device = get_device()
    backend = "gsplat (CUDA)" if device.type == "cuda" else "cpu (numba)"
    try:
        data = data_dir()
        n_files = sum(1 for _ in data.iterdir()) if data.is_dir() else 0
        data_line = f"{data} ({n_files} entries)" if n_files else f"{data} (missing: reinstall emozone-lite)"
    except OSError as e:
        data_line = f"unreadable ({e})"
    lines = [
        f"emozone-lite {__version__} · Python {platform.python_version()} · torch {torch.__version__}",
        f"device: {device} · render backend: {backend} · threads: {torch.get_num_threads()}",
        f"bundled data: {data_line}",
        f"EMOZONE_FAST={os.environ.get(ENV_FAST, '')!r} → {'FAST (small sizes)' if fast_mode() else 'full sizes'}",
    ]
    if "google.colab" in sys.modules:
        lines.append("running in Google Colab")
    return "\n".join(lines)


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


def __getattr__(name: str):
    # Old names, computed when read (never frozen at import): ``utils.DATA_DIR``, ``utils.FAST``.
    if name == "DATA_DIR":
        return data_dir()
    if name == "FAST":
        return fast_mode()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
