"""Per-frame ownership records of the monitor (EL2 data, vectorized numpy arrays).

``frame_ipa[pfn]`` is the IPA page a frame belongs to in the normal world: mapped there
while the frame is NORMAL, *held* (unmapped, reserved for its return) while the frame is
Flex-Mem or lent to the NPU sandbox. ``ipa_holder[ipa]`` is the reverse for held IPAs.
"""

from __future__ import annotations

import enum

import numpy as np

from flexserve.soc.constants import NO_FRAME


class FrameState(enum.IntEnum):
    NORMAL = 0          # normal-world memory (mapped at frame_ipa, or detached)
    FLEX_PROTECTED = 1  # Flex-Mem, owned by a secure owner, not mapped into the TA
    FLEX_MAPPED = 2     # Flex-Mem, mapped into the owner's TA
    NPU_SANDBOX = 3     # NPU driver page lent to the sandbox while the NPU is secure
    RESERVED = 4        # firmware / TEE memory: never normal, never Flex-Mem
    TZASC_SECURE = 5    # in a dynamically assigned TZASC region (strawman designs)


FLEX_STATES = (FrameState.FLEX_PROTECTED, FrameState.FLEX_MAPPED)
HELD_STATES = (*FLEX_STATES, FrameState.NPU_SANDBOX)
NO_OWNER = 0
MAX_OWNER_ID = 255


class FrameLedger:
    """Views over EL2 memory; all queries take and return numpy arrays."""

    def __init__(self, state: np.ndarray, owner: np.ndarray, frame_ipa: np.ndarray,
                 ipa_holder: np.ndarray) -> None:
        self.state = state
        self.owner = owner
        self.frame_ipa = frame_ipa
        self.ipa_holder = ipa_holder

    @property
    def frame_count(self) -> int:
        return int(self.state.size)

    def reset(self) -> None:
        self.state[:] = FrameState.NORMAL
        self.owner[:] = NO_OWNER
        self.frame_ipa[:] = NO_FRAME
        self.ipa_holder[:] = NO_FRAME

    def states_are(self, frames: np.ndarray, *states: FrameState) -> bool:
        return bool(np.all(np.isin(self.state[frames], np.array(states, dtype=np.uint8))))

    def owned_by(self, frames: np.ndarray, owner: int, *states: FrameState) -> bool:
        return self.states_are(frames, *states) and bool(np.all(self.owner[frames] == owner))

    def frames_of(self, owner: int) -> np.ndarray:
        flex = np.isin(self.state, np.array(FLEX_STATES, dtype=np.uint8))
        return np.flatnonzero(flex & (self.owner == owner))

    def flex_frame_count(self) -> int:
        return int(np.count_nonzero(np.isin(self.state, np.array(FLEX_STATES, dtype=np.uint8))))

    def hold(self, frames: np.ndarray, state: FrameState, owner: int) -> None:
        """Record frames as held (their IPA stays reserved for their return)."""
        self.ipa_holder[self.frame_ipa[frames]] = frames
        self.state[frames] = state
        self.owner[frames] = owner

    def unhold(self, frames: np.ndarray) -> np.ndarray:
        """Return held frames to NORMAL; gives the IPA pages they go back to."""
        ipa_pages = self.frame_ipa[frames].astype(np.int64)
        self.ipa_holder[ipa_pages] = NO_FRAME
        self.state[frames] = FrameState.NORMAL
        self.owner[frames] = NO_OWNER
        return ipa_pages
