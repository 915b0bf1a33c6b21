"""Notebook execution that never sleeps through a kernel message (a workaround, build-time only).

jupyter_client waits for a kernel's reply with one ``await socket.poll(timeout)`` on an asyncio zmq
socket, whose file descriptor is edge-triggered. Occasionally (seen here with pyzmq 27 and
ipykernel 7: a notebook that runs in 12 s took 1218 s, the kernel idle meanwhile) that wake-up is
missed and the poll returns only at its timeout, which for a notebook cell is the whole per-cell
limit (1200 s). This extension makes the channels poll in slices of at most one second, each
preceded by a zero-timeout poll (a plain ``zmq_poll``, which sees a message that a missed wake-up
left waiting), so such a stall costs a second. Messages, order and timeouts are unchanged.
"""

from __future__ import annotations

import time
from queue import Empty

SLICE_S = 1.0


def _patch() -> None:
    from jupyter_client.channels import AsyncZMQSocketChannel

    if getattr(AsyncZMQSocketChannel.get_msg, "_sliced", False):
        return

    async def get_msg(self, timeout: float | None = None):
        assert self.socket is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if await self.socket.poll(0):
                return await self._recv()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Empty
            step = SLICE_S if left is None else min(SLICE_S, left)
            if await self.socket.poll(max(1, int(step * 1000))):
                return await self._recv()

    get_msg._sliced = True
    AsyncZMQSocketChannel.get_msg = get_msg


def setup(app):
    _patch()
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
