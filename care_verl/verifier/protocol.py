"""Length-prefixed pickle frames over pipes, with deadlines on the reading side.

The parent reads with `select.poll` (not `select.select`, which fails for fds above 1024,
common inside Ray workers), so a hung or dead worker turns into a TimeoutError or EOFError
instead of a blocked thread.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import time
from typing import Any, BinaryIO

__all__ = ["write_frame", "read_frame", "read_frame_until"]

_HEADER = struct.Struct(">Q")


def write_frame(stream: BinaryIO, obj: Any) -> None:
    """Pickle `obj` and write it as one frame, then flush."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> Any:
    """Blocking read of one frame (worker side). Raises EOFError when the pipe is closed."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("pipe closed")
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("pipe closed mid-frame")
    return pickle.loads(payload)


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        left_ms = (deadline - time.monotonic()) * 1000.0
        if left_ms <= 0:
            raise TimeoutError("worker did not answer in time")
        if not poller.poll(max(1, int(left_ms))):
            continue  # loop re-checks the deadline
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("worker pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_until(fd: int, deadline: float) -> Any:
    """Read one frame from raw fd `fd` before `deadline` (time.monotonic()); parent side."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))
