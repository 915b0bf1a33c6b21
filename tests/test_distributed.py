"""Data-parallel training (DistributedDataParallel, :mod:`emozone_lite.distributed`): the shares of
a batch add up to the batch; 2 CPU processes on the same global batch follow 1 process; only rank 0
writes the checkpoint; a 2-process run resumes under torchrun through ``emozone-lite train``."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emozone_lite import distributed
from emozone_lite import train as T
from emozone_lite.model import ModelConfig

SMALL = ModelConfig(n_gaussians=800, d_model=16, hidden=32)
# 3 frames × 2 views: 6 images, 3 a process, so one frame's views are split between the processes;
# 5 speech frames over 2 clips (3 + 2; the split crosses a clip) and 3 expression frames split 1 + 2.
# Input AUs from noise: the detector would add ~15 s of rendering and reading to the dataset.
CFG = T.TrainConfig(steps=4, image_size=32, n_scripts=1, yaws=(0.0, 20.0), batch_frames=3, views_per_step=2,
                    ckpt_every=2, corpus_utterances=0, speech_batch=5, speech_clips=2, expression_batch=3,
                    au_input="noise")  # fmt: skip
ATTENTION_KEY_BIAS = ".self_attn.in_proj_bias"


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_training(got: dict, ref: dict, lr: float, steps: int) -> None:
    """Parameters within rtol 1e-4 / atol 1e-4 (1/50 of an Adam step at lr 5e-3): Adam scales each
    element's step by its own gradient's running size, so an element whose gradient is tiny takes the
    float noise of the sums along (measured: 3.5e-5 at most after 4 steps). The key third of the
    attention's in-projection bias has an exact gradient of 0 (softmax ignores a constant added to all of
    a query's logits): Adam moves it by noise alone, so it is held to ``lr · steps``."""
    for k, v in ref.items():
        g = got[k]
        if k.endswith(ATTENTION_KEY_BIAS):
            d = v.shape[0] // 3
            assert float((g[d : 2 * d] - v[d : 2 * d]).abs().max()) <= lr * steps, k
            g, v = torch.cat([g[:d], g[2 * d :]]), torch.cat([v[:d], v[2 * d :]])
        torch.testing.assert_close(g, v, rtol=1e-4, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The teacher dataset of CFG (built once, in the cache the CLI reads) and, for the workers, two
    files: photometric only, and with 2 corpus clips for the speech and expression losses (made here
    with ``corpus_clip``: ``corpus_utterances > 0`` would also render both ARCTIC test recordings)."""
    from emozone_lite.corpus import corpus_voices, load_corpus

    root = tmp_path_factory.mktemp("ddp")
    base = T.cached_dataset(CFG, progress=False, directory=root / "cache")
    utts = load_corpus(corpus_voices()[0], n=2)
    speech = [T.corpus_clip(u, None, CFG.au_noise, 500 + k, "none") for k, u in enumerate(utts)]
    scripts = [T.au_script(u.duration, 700 + k) for k, u in enumerate(utts)]
    expression = [T.corpus_clip(u, s, CFG.au_noise, 700 + k, "none") for k, (u, s) in enumerate(zip(utts, scripts))]
    photo = T.Dataset(base.train, [], base.cameras, base.holdout_every, base.train_frames, base.heldout_frames)
    full = T.Dataset(base.train, [], base.cameras, base.holdout_every, base.train_frames, base.heldout_frames,
                     speech, expression)  # fmt: skip
    files = {"photo": T.save_dataset(photo, root / "photo.pt"), "full": T.save_dataset(full, root / "full.pt")}
    return {"root": root, "cache": root / "cache", "data": {"photo": photo, "full": full}, "files": files}


def test_the_shares_of_a_batch_add_up_to_its_loss_and_gradient(datasets):
    """StepLoss of rank r of 2 (no processes needed): the shares' terms add up to the batch's, and
    the average of their backpropagated gradients (what DDP computes) is the batch's gradient."""
    from emozone_lite.head import load_head
    from emozone_lite.model import EmoZoneLite

    data = datasets["data"]["full"]
    torch.manual_seed(0)
    model = EmoZoneLite(SMALL, load_head())
    rng = random.Random(0)
    batch = T.draw_batch(rng, data, CFG)
    assert batch[3] is not None and batch[4] is not None
    with pytest.raises(ValueError, match="rank must lie"):
        T.StepLoss(model, data, CFG, rank=2, world=2)

    def run(rank, world):
        model.zero_grad(set_to_none=True)
        loss, terms = T.StepLoss(model, data, CFG, rank, world)(*batch)
        loss.backward()
        return terms, torch.cat([p.grad.flatten() for p in model.parameters()])

    for start in (True, False):  # at the start (zero-initialised heads) and off it (every parameter has a gradient)
        if not start:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1e-3 * torch.randn_like(p))
        whole, g1 = run(0, 1)
        shares = [run(r, 2) for r in range(2)]
        assert all(float(t[0]) > 0 for t, _ in shares), "both processes have a share"
        torch.testing.assert_close(shares[0][0] + shares[1][0], whole, rtol=1e-6, atol=1e-7)
        g2 = (shares[0][1] + shares[1][1]) / 2
        assert float((g2 - g1).norm() / g1.norm()) < 1e-5, start
        torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-6 * float(g1.abs().max()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, jobs: list, out: str) -> None:
    """One of the spawned processes: the torchrun environment by hand, one process group for all
    jobs; records its parameters, history and the checkpoints it wrote."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    from emozone_lite.threads import configure_threads

    configure_threads(1)
    saves: list[int] = []
    save = T.save_checkpoint
    T.save_checkpoint = lambda path, model, opt, step, *a: (saves.append(step), save(path, model, opt, step, *a))[1]
    with distributed.process_group(distributed.environment()):
        for name, data_file, cfg, out_dir in jobs:
            cfg = T.TrainConfig.from_dict(cfg)
            model, hist = T.train(SMALL, cfg, T.load_dataset(data_file, cfg), out_dir=out_dir, progress=False)
            torch.save({"params": _params(model), "history": hist, "saves": saves[:]}, f"{out}/{name}-rank{rank}.pt")
            saves.clear()


@pytest.fixture(scope="module")
def two_processes(datasets):
    """One launch of 2 spawned processes (gloo): both datasets for CFG's 4 steps, and the
    photometric run for 2 steps (resumed in the CLI test); with the 1-process references."""
    import torch.multiprocessing as mp

    root, files = datasets["root"], datasets["files"]
    short = {**CFG.to_dict(), "steps": 2}
    jobs = [(n, str(files[n]), CFG.to_dict(), str(root / "two" / n)) for n in ("photo", "full")]
    jobs.append(("short", str(files["photo"]), short, str(root / "two" / "short")))
    mp.spawn(_worker, args=(2, _free_port(), jobs, str(root)), nprocs=2, join=True)
    got = {(n, r): torch.load(root / f"{n}-rank{r}.pt", weights_only=True) for n, *_ in jobs for r in range(2)}
    ref, threads = {}, torch.get_num_threads()
    # 1 thread, as each worker: another thread count sums in another order, and at the start the landmark
    # loss's |x| sits exactly at 0 for the vertices the teacher does not move, where a last-digit difference
    # changes the subgradient (1 vs 2 threads in one process: parameters up to 0.02 apart after 4 steps)
    torch.set_num_threads(1)
    try:
        for n in ("photo", "full"):
            model, hist = T.train(SMALL, CFG, datasets["data"][n], out_dir=root / "one" / n, resume=False,
                                  progress=False)  # fmt: skip
            ref[n] = {"params": _params(model), "history": hist}
    finally:
        torch.set_num_threads(threads)
    return {"got": got, "ref": ref, "root": root}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["photo", "full"])
def test_two_processes_follow_one_process(two_processes, name):
    got, ref = two_processes["got"], two_processes["ref"][name]
    r0, r1 = got[name, 0], got[name, 1]
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), f"the processes' parameters differ: {k}"
    assert_same_training(r0["params"], ref["params"], CFG.lr, CFG.steps)
    for key in ("loss", "photo", "lmk", "speech", "expression"):  # the whole batch's losses, on every rank
        want = [h[key] for h in ref["history"]]
        for r in (r0, r1):
            np.testing.assert_allclose([h[key] for h in r["history"]], want, rtol=1e-4, atol=1e-6, err_msg=key)
    if name == "full":
        assert all(h["speech"] > 0 and h["expression"] > 0 for h in r0["history"])


@pytest.mark.slow
def test_only_rank_0_writes_the_checkpoint(two_processes):
    got, root = two_processes["got"], two_processes["root"]
    for name in ("photo", "full"):
        assert got[name, 0]["saves"] == [2, 4] and got[name, 1]["saves"] == [], name
        assert [p.name for p in (root / "two" / name).iterdir()] == ["checkpoint.pt"]
        ck = T.read_checkpoint(root / "two" / name / "checkpoint.pt")
        assert ck["step"] == CFG.steps and len(json.loads(ck["history"])) == CFG.steps
        assert_same_training(ck["model"], two_processes["ref"][name]["params"], CFG.lr, CFG.steps)


def _config_file(path: Path, cfg: T.TrainConfig) -> Path:
    path.write_text(json.dumps({"model": SMALL.to_dict(), "train": cfg.to_dict()}))
    return path


@pytest.mark.slow
def test_a_two_process_run_resumes_under_torchrun_with_the_cli(two_processes, datasets):
    """The 2-step run's checkpoint, given CFG's budget (as in test_train), resumed by
    ``torchrun --nproc_per_node=2 -m emozone_lite train``: both processes load it and replay the
    batches; the result is the uninterrupted 1-process run's."""
    run = two_processes["root"] / "two" / "short"
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2
    ck["train_config"] = CFG.to_dict()
    torch.save(ck, run / "checkpoint.pt")
    config = _config_file(two_processes["root"] / "run.json", CFG)
    env = {**os.environ, "EMOZONE_CACHE": str(datasets["cache"]), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "emozone_lite", "train", "--config", str(config), "--out", str(run), "--quiet"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("szpab+citae:")]
    assert len(lines) == 1 and "4 steps in 2 processes" in lines[0], out.stdout  # rank 0 alone reports
    resumed = T.read_checkpoint(run / "checkpoint.pt")
    assert resumed["step"] == CFG.steps
    ref = two_processes["ref"]["photo"]
    assert_same_training(resumed["model"], ref["params"], CFG.lr, CFG.steps)
    np.testing.assert_allclose([h["loss"] for h in json.loads(resumed["history"])],
                               [h["loss"] for h in ref["history"]], rtol=1e-4)  # fmt: skip


def test_the_cli_trains_one_process_from_a_json_or_yaml_config(datasets, tmp_path, monkeypatch, capsys):
    """``emozone-lite train`` in one process: the run ``train()`` makes, to the bit (the dataset
    from memory here; the torchrun test reads it from the cache); YAML reads like JSON."""
    from emozone_lite.__main__ import main

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(T, "cached_dataset", lambda cfg, progress=True: datasets["data"]["photo"])
    one = T.TrainConfig.from_dict({**CFG.to_dict(), "steps": 1})
    config = _config_file(tmp_path / "run.json", one)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "1 step in 1 process," in capsys.readouterr().out
    ref, _ = T.train(SMALL, one, datasets["data"]["photo"], resume=False, progress=False)
    got = T.read_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    for k, v in _params(ref).items():
        assert torch.equal(got[k], v), k
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("model:\n  n_gaussians: 800\n  d_model: 16\n  hidden: 32\ntrain:\n  steps: 2\n"
                         "  yaws: [0.0, 20.0]\n")  # fmt: skip
    mc, tc = T.read_config(yaml_file)
    assert mc == SMALL and tc == T.TrainConfig(steps=2, yaws=(0.0, 20.0))
    assert T.read_config(config) == (SMALL, one)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.json", None, "config file not found"),
        ("bad.json", '{"model": {', "is not valid JSON"),
        ("bad.yaml", "model: [1,", "is not valid YAML"),
        ("run.toml", "steps = 3", "is .json, .yaml or .yml"),
        ("list.json", "[1, 2]", "must hold"),
        ("section.json", '{"trian": {}}', "unknown sections \\['trian'\\]"),
        ("field.json", '{"train": {"stpes": 3}}', "unknown TrainConfig fields \\['stpes'\\]"),
        ("type.json", '{"train": {"steps": "ten"}}', "'steps' must be an integer"),
        ("yaws.json", '{"train": {"yaws": []}}', "'yaws' must be a non-empty list of numbers"),
        ("negative.json", '{"train": {"lr": -1}}', "'lr' must be positive"),
        ("zero.json", '{"model": {"hidden": 0}}', "'hidden' must be positive"),
        ("value.json", '{"model": {"fusion": "magic"}}', "fusion must be"),
    ],
)
def test_the_cli_refuses_a_bad_config_with_exit_code_2(tmp_path, capsys, name, text, message):
    import re

    from emozone_lite.__main__ import main

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emozone-lite train: error: ") and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_the_torchrun_environment_and_shares():
    assert distributed.environment({}) is None
    assert distributed.environment({"WORLD_SIZE": "1", "RANK": "0"}) is None  # one process: as without torchrun
    env = distributed.environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert env == distributed.DistEnv(rank=3, world_size=4, local_rank=1, local_world_size=2)
    with pytest.raises(ValueError, match="RANK is not"):
        distributed.environment({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK must be an integer"):
        distributed.environment({"WORLD_SIZE": "2", "RANK": "one"})
    with pytest.raises(ValueError, match="must lie in"):
        distributed.environment({"WORLD_SIZE": "2", "RANK": "2"})
    for n in range(7):
        for world in (1, 2, 3):
            parts = [list(distributed.shard(n, r, world)) for r in range(world)]
            assert sum(parts, []) == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert T._image_groups(3, 2, range(0, 3)) == [([0], [0, 1]), ([1], [0])]
    assert T._image_groups(3, 2, range(3, 6)) == [([1], [1]), ([2], [0, 1])]
    assert T._image_groups(3, 2, range(0, 6)) == [([0, 1, 2], [0, 1])]
    clips = [(0, torch.tensor([4, 5, 6])), (1, torch.tensor([7, 8]))]
    assert [(c, f.tolist()) for c, f in T._frames_share(clips, range(2, 5))] == [(0, [6]), (1, [7, 8])]
    assert T._frames_share(clips, range(0, 0)) == []
