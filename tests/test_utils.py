"""utils and threads: the FAST flag, data / cache / output folders read at call time, the thread policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import emozone_lite
from emozone_lite import threads, utils


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("", False),
        ("0", False),
        ("False", False),
        ("off", False),
    ],
)
def test_fast_mode_parses_one_way(monkeypatch, raw, expected):
    monkeypatch.setenv("EMOZONE_FAST", raw)
    assert utils.fast_mode() is expected
    assert emozone_lite.FAST is expected and utils.FAST is expected  # old names, computed on access


def test_fast_mode_unset_and_bad(monkeypatch):
    monkeypatch.delenv("EMOZONE_FAST", raising=False)
    assert utils.fast_mode() is False
    monkeypatch.setenv("EMOZONE_FAST", "maybe")
    with pytest.raises(ValueError, match="EMOZONE_FAST='maybe'"):
        utils.fast_mode()


def test_folders_follow_the_environment_at_call_time(monkeypatch, tmp_path):
    monkeypatch.delenv("EMOZONE_DATA", raising=False)
    packaged = utils.data_dir()
    assert (packaged / "head.ply").is_file() and (packaged / "README.md").is_file()
    monkeypatch.setenv("EMOZONE_DATA", str(tmp_path))
    assert utils.data_dir() == tmp_path and emozone_lite.DATA_DIR == tmp_path
    with pytest.raises(FileNotFoundError, match=r"'head.ply' not found in"):
        utils.data_path("head.ply")
    monkeypatch.setenv("EMOZONE_CACHE", str(tmp_path / "c"))
    assert utils.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EMOZONE_CACHE")
    assert "emozone-lite" in str(utils.cache_dir()) and "site-packages" not in str(utils.cache_dir())
    monkeypatch.setenv("EMOZONE_OUTPUTS", str(tmp_path / "o"))
    assert utils.outputs_dir() == tmp_path / "o"
    monkeypatch.delenv("EMOZONE_OUTPUTS")
    monkeypatch.chdir(tmp_path)
    assert utils.outputs_dir() == tmp_path / "outputs"


def test_data_path_names_the_missing_file():
    with pytest.raises(FileNotFoundError, match="no_such_file.wav"):
        utils.data_path("no_such_file.wav")
    assert utils.data_path("arctic_a0009.wav").stat().st_size > 1000


def test_configure_threads_sets_counts_and_respects_the_users_policy(monkeypatch):
    import numba
    import torch

    n_t, n_n = torch.get_num_threads(), numba.get_num_threads()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice wins
    try:
        s = threads.configure_threads(1)
        assert s == {"wait_policy": "ACTIVE", "torch_threads": 1, "numba_threads": 1}
    finally:
        torch.set_num_threads(n_t)
        numba.set_num_threads(n_n)
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert threads.configure_threads()["wait_policy"] == "PASSIVE"
    assert (torch.get_num_threads(), numba.get_num_threads()) == (n_t, n_n), "threads=None must not change counts"
    with pytest.raises(ValueError, match="positive integer"):
        threads.configure_threads(0)
    with pytest.raises(ValueError, match="wait_policy"):
        threads.configure_threads(wait_policy="spin")


def test_cli_sets_the_wait_policy_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import sys, os; from emozone_lite import __main__ as m; assert 'torch' not in sys.modules;"
        "m.configure_threads(); import torch; print(os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"
