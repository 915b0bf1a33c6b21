"""emozone-lite: audio-driven 3D Gaussian talking heads with editable Action-Unit control.

A small teaching reproduction of EmoZone-Talker (SZ-PAB + CIT-AE). Each module
holds one idea; the notebooks in ``notebooks/`` walk through them in order.
"""
from __future__ import annotations

import os as _os

# torch (OpenMP) and the numba renderer each keep a thread pool; with the default
# active wait, idle threads spin and steal the cores from the other pool (several
# times slower CPU rendering on 2 cores). Must be set before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .utils import DATA_DIR, FAST, data_path, get_device, seed_everything

__version__ = "0.1.0"

__all__ = ["DATA_DIR", "FAST", "data_path", "get_device", "seed_everything", "__version__"]
