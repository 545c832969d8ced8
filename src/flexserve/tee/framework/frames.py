"""Byte access to a TA's Flex-Mem frames in whole-frame batches.

:class:`FrameSink` is the :class:`~flexserve.tee.sealing.ByteSink` the decryption writes
verified plaintext into; :func:`read_back` returns the bytes held by the frames (what the
engine builds its weights from). Both go through the monitor's secure port, which checks
on every call that the frames are this owner's and mapped into the TA.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.secure_port import FlexBuffer, SecureWorldPort
from flexserve.soc.constants import FRAME_SIZE_BYTES


class FrameSink:
    """Writes frame-aligned ranges as whole frames (the tail of the last frame is zero)."""

    def __init__(self, port: SecureWorldPort, owner: int, frames: np.ndarray) -> None:
        self.port, self.owner, self.frames = port, owner, frames
        self._bytewise = FlexBuffer(port, owner, frames)

    @property
    def size_bytes(self) -> int:
        return int(self.frames.size) * FRAME_SIZE_BYTES

    def write(self, offset: int, data: bytes) -> None:
        if offset % FRAME_SIZE_BYTES or offset + len(data) > self.size_bytes or not data:
            self._bytewise.write(offset, data)
            return
        first = offset // FRAME_SIZE_BYTES
        count = -(-len(data) // FRAME_SIZE_BYTES)
        block = np.zeros(count * FRAME_SIZE_BYTES, dtype=np.uint8)
        block[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        self.port.write_frames(self.owner, self.frames[first : first + count],
                               block.reshape(count, FRAME_SIZE_BYTES))


def read_back(port: SecureWorldPort, owner: int, frames: np.ndarray, n_bytes: int) -> np.ndarray:
    """The first ``n_bytes`` held by ``frames`` (a private host copy of the frames)."""
    return port.read_frames(owner, frames).reshape(-1)[:n_bytes]
