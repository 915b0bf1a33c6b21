"""The toolkit's one thread policy for PyTorch and the numba CPU renderer.

Importing ``emozone_lite`` changes no environment variable and no thread count. The
CLI (``emozone-lite …``), the expression studio and the Makefile's environment apply
this policy explicitly; call :func:`configure_threads` yourself to do the same.

Why a policy at all: PyTorch and numba each keep an OpenMP-style thread pool. With
OpenMP's default *active* wait, threads that finished a parallel region spin for a
while, and on a 2-core machine they steal the cores the other pool needs — the CPU
renderer ran several times slower next to idle-but-spinning torch threads. A
*passive* wait (``OMP_WAIT_POLICY=PASSIVE``) makes idle threads sleep.

The wait policy is read once, when an OpenMP runtime is loaded (at ``import torch``),
so it only reaches the current process if it is set before torch is imported — the
CLI calls :func:`configure_threads` before its first torch import, and ``make`` exports
it for every process it starts (notebooks under ``make lab``, the tests). In a
notebook kernel that already imported torch it still applies to subprocesses.

This module imports neither torch nor numba at import time.
"""

from __future__ import annotations

import os
import sys

__all__ = ["WAIT_POLICY_ENV", "configure_threads", "thread_settings"]

#: The environment variable OpenMP runtimes read for their idle-wait policy.
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def thread_settings() -> dict[str, object]:
    """What is in force now: ``wait_policy`` (or ``None``), ``torch_threads`` and
    ``numba_threads`` (``None`` for a library not imported yet). Changes nothing."""
    torch = sys.modules.get("torch")
    numba = sys.modules.get("numba")
    return {
        "wait_policy": os.environ.get(WAIT_POLICY_ENV),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "numba_threads": numba.get_num_threads() if numba is not None else None,
    }


def configure_threads(threads: int | None = None, *, wait_policy: str | None = "PASSIVE") -> dict[str, object]:
    """Apply the toolkit's thread policy to this process (an explicit, process-wide change).

    Args:
        threads: if given, the number of threads PyTorch (``torch.set_num_threads``) and
            the numba renderer (``numba.set_num_threads``, capped at numba's pool size)
            use from now on. ``None`` leaves both counts as they are.
        wait_policy: ``OMP_WAIT_POLICY`` to set when it is not set already (a value the
            user exported wins); ``None`` leaves the environment alone. It reaches this
            process only if torch has not been imported yet (see the module docstring);
            subprocesses always inherit it.

    Returns:
        :func:`thread_settings` after the change.

    Raises:
        ValueError: ``threads`` is not a positive integer, or ``wait_policy`` is not
            ``"PASSIVE"`` / ``"ACTIVE"``.

    Examples:
        >>> from emozone_lite.threads import configure_threads
        >>> configure_threads(wait_policy=None)["wait_policy"] in (None, "PASSIVE", "ACTIVE", "passive", "active")
        True
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if wait_policy is not None:
        if str(wait_policy).upper() not in ("PASSIVE", "ACTIVE"):
            raise ValueError(f"wait_policy must be 'PASSIVE', 'ACTIVE' or None, got {wait_policy!r}")
        os.environ.setdefault(WAIT_POLICY_ENV, str(wait_policy).upper())
    if threads is not None:
        import numba
        import torch

        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return thread_settings()
