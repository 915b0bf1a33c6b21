"""Shared test settings.

Property tests (hypothesis) run the same examples on every run (``derandomize``, no
example database on disk), so CI never meets a new case by chance. To explore new
random examples locally: ``HYPOTHESIS_PROFILE=explore pytest tests``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def one_thread():
    """One torch thread for the test: small models and renders run fastest so, and do not thrash a
    shared 2-core CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
