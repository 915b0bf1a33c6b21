"""emozone-lite: audio-driven 3D Gaussian talking heads with editable Action-Unit control.

A small teaching reproduction of EmoZone-Talker (SZ-PAB + CIT-AE). Each module
holds one idea; the notebooks in ``notebooks/`` walk through them in order.

Importing the package does nothing else: it sets no environment variable or thread
count and imports no heavy library (torch, numba) until a name that needs one is used.
Thread policy is an explicit call: :func:`emozone_lite.threads.configure_threads`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Names re-exported from :mod:`emozone_lite.utils`, loaded on first use.
_FROM_UTILS = (
    "cache_dir",
    "data_dir",
    "data_path",
    "environment_report",
    "fast_mode",
    "get_device",
    "outputs_dir",
    "seed_everything",
)
#: Old constants, computed when read: ``emozone_lite.FAST`` (= ``fast_mode()``), ``emozone_lite.DATA_DIR``.
_COMPUTED = ("FAST", "DATA_DIR")

__all__ = [*_FROM_UTILS, "__version__"]


def __getattr__(name: str):
    if name in _FROM_UTILS or name in _COMPUTED:
        return getattr(importlib.import_module(".utils", __name__), name)
    try:  # submodules: ``import emozone_lite; emozone_lite.render`` works as before
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FROM_UTILS, *_COMPUTED])
