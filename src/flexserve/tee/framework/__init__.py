"""The FlexServe Framework: a Trusted Application that serves sealed models securely.

See ``docs/secure-pipeline.md``: per layer, Flex-Mem allocation, ciphertext through the
normal world's file service, verify+decrypt into the layer's frames, weights built from those
frames; every stage is recorded for the timing model (:mod:`.trace`).
"""

from flexserve.tee.framework.request import GenerateAnswer, GenerateRequest
from flexserve.tee.framework.stream import StreamChunk
from flexserve.tee.framework.ta import (
    CMD_CLOSE_MODEL,
    CMD_GENERATE,
    CMD_OPEN_MODEL,
    CMD_STREAM_BEGIN,
    CMD_STREAM_CANCEL,
    CMD_STREAM_NEXT,
    FrameworkOptions,
    FrameworkTA,
)
from flexserve.tee.framework.trace import LayerTrace, RequestTrace, Stage, StageKind

__all__ = [
    "CMD_CLOSE_MODEL",
    "CMD_GENERATE",
    "CMD_OPEN_MODEL",
    "CMD_STREAM_BEGIN",
    "CMD_STREAM_CANCEL",
    "CMD_STREAM_NEXT",
    "FrameworkOptions",
    "FrameworkTA",
    "GenerateAnswer",
    "GenerateRequest",
    "LayerTrace",
    "RequestTrace",
    "Stage",
    "StageKind",
    "StreamChunk",
]
