"""Data-parallel training over several processes: PyTorch's DistributedDataParallel under ``torchrun``.

    torchrun --nproc_per_node=2 -m emozone_lite train --config cfg.json --out runs/mine

``torchrun`` starts the processes and gives each its place in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`environment` reads it,
:func:`process_group` joins the others. :func:`emozone_lite.train.train` then trains as in one
process with three differences:

* every process draws the **same global batch** (the batch sampler's ``random.Random(seed)`` is
  the same everywhere) and computes the loss on **its share** of it only: a contiguous slice
  (:func:`shard`) of the photometric images (frame × view), of the speech-loss frames and of the
  expression-loss frames. Each term of the loss is a mean over such items, so a share's term is
  the mean over its items times (its items / all items), and the shares add up to the loss of the
  whole batch in one process (:class:`emozone_lite.train.StepLoss` says term by term why);
* the step's loss is one ``nn.Module`` (:class:`~emozone_lite.train.StepLoss`) wrapped in
  ``DistributedDataParallel``; its forward goes through the wrapper, so backward averages the
  gradients over the processes. Every parameter takes part in every process's backward (a
  zero-weighted sum of all parameters is added), so DDP needs no ``find_unused_parameters`` even
  where a share is empty or reaches part of the network only (the speech loss reads the vertex
  offsets, not the scale and rotation heads). Each process backpropagates ``world_size ×`` its share, so the
  average is the gradient of the one-process loss, and the optimisers, fed the same gradient, keep
  the parameters the same everywhere (``tests/test_distributed.py`` holds the result to one
  process's, within float tolerance);
* only rank 0 writes the checkpoint and shows progress; on resume every process reads the
  checkpoint and replays the batch sampler to its step.

Several GPU machines: the same command on each of ``N`` machines,
``torchrun --nnodes=N --node_rank=<0…N-1> --master_addr=<rank 0's host> --master_port=29500
--nproc_per_node=G -m emozone_lite train --config cfg.json``, makes ``N × G`` processes; the
gradients travel over NCCL when they are CUDA tensors (:func:`backend` picks gloo for CPU tensors
and NCCL for CUDA ones). The training loop itself keeps the model on the CPU today (as in one
process), so on GPU machines it is gloo that carries the gradients until the loop places the model
on ``cuda:LOCAL_RANK``; each machine builds or loads the teacher dataset into its own cache (local
rank 0 builds it, the others wait). The global batch does not grow with the processes: more
processes split the same batch finer.

On one CPU machine the processes share its cores: under ``emozone-lite train`` each gets
``cpu_count // processes`` threads (:func:`threads_per_process`), and no speed-up is to be expected from the split: the same work is
done, plus the gradients' all-reduce. Measured on 2 cores beside another job (load ≈ 5), 30 steps
of 800 Gaussians at 32², 2 frames × 2 views, median time per step: 19–27 steps/s in one process
(2 threads), 14–15 steps/s in two (1 thread each; three runs each).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["DistEnv", "environment", "backend", "process_group", "shard", "threads_per_process"]


@dataclass(frozen=True)
class DistEnv:
    """This process's place among the ``torchrun`` processes.

    Attributes:
        rank: 0 … ``world_size - 1`` over all machines (rank 0 writes).
        world_size: processes in all.
        local_rank: 0 … ``local_world_size - 1`` on this machine.
        local_world_size: processes on this machine.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def environment(environ: dict | None = None) -> DistEnv | None:
    """The ``torchrun`` environment of this process, or ``None`` for one process (no
    ``WORLD_SIZE``, or ``WORLD_SIZE=1``: then training is exactly the one-process training).

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 with ``RANK`` missing or the variables not integers.

    Examples:
        >>> environment({}) is None
        True
        >>> environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        DistEnv(rank=1, world_size=2, local_rank=1, local_world_size=2)
    """
    env = os.environ if environ is None else environ
    world = _integer(env, "WORLD_SIZE", 1)
    if world <= 1:
        return None
    if "RANK" not in env:
        raise ValueError(f"WORLD_SIZE={world} is set but RANK is not; start the processes with torchrun")
    rank = _integer(env, "RANK")
    local_rank = _integer(env, "LOCAL_RANK", rank)
    local_world = _integer(env, "LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise ValueError(f"RANK={rank} must lie in [0, {world}) and LOCAL_RANK={local_rank} in [0, {local_world})")
    return DistEnv(rank, world, local_rank, local_world)


def _integer(env, key: str, default: int | None = None) -> int:
    if key not in env and default is not None:
        return default
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"{key} must be an integer (as torchrun sets it), got {env[key]!r}") from None


def backend() -> str:
    """The process group backend: gloo for CPU tensors, and NCCL for CUDA tensors when CUDA
    is available (``"cpu:gloo,cuda:nccl"``)."""
    import torch

    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def process_group(env: DistEnv) -> Iterator[None]:
    """Join the processes of ``env`` (rendezvous at ``MASTER_ADDR:MASTER_PORT``, as torchrun sets
    them) for the ``with`` block, and leave afterwards; a group that is already up is used as it is
    (and left up)."""
    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise ValueError(
                f"a process group of {dist.get_world_size()} processes (rank {dist.get_rank()}) is up, "
                f"but the environment says {env.world_size} (rank {env.rank})"
            )
        yield
        return
    dist.init_process_group(backend(), rank=env.rank, world_size=env.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(n: int, rank: int, world_size: int) -> range:
    """The contiguous share ``range`` of ``n`` items that ``rank`` of ``world_size`` takes: sizes
    differ by one at most, the shares cover ``range(n)`` once, in order (some may be empty).

    Examples:
        >>> [list(shard(5, r, 2)) for r in range(2)]
        [[0, 1], [2, 3, 4]]
        >>> [list(shard(1, r, 2)) for r in range(2)]
        [[], [0]]
    """
    return range(rank * n // world_size, (rank + 1) * n // world_size)


def threads_per_process(env: DistEnv | None = None) -> int:
    """Threads for each of the processes on this machine: ``cpu_count // local_world_size`` (1 at least)."""
    env = environment() if env is None else env
    return max(1, (os.cpu_count() or 1) // (env.local_world_size if env is not None else 1))
