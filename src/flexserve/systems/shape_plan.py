"""The request trace of a shape-only model, without bytes (timing-only mode).

The paper's models (Qwen3, Llama 3.x) are known by shape only. This module writes down, per
loadable unit of :func:`~flexserve.catalog.shapes.layer_sizes` (Q8_0 sizes), the same stages
the framework records when it runs a sealed model, with the counts its mechanisms report:

- alloc: ``rsmem_alloc`` of the layer's pages: the kernel allocates them, one FLEXMEM_PROTECT
  SMC changes one S2PT entry per page (TLB invalidations as the monitor counts them);
- io: the ciphertext (plaintext plus one GCM tag per chunk) read from flash by DMA into
  bounce pages, one request per chunk, copied into secure memory;
- decrypt: the plaintext written into the layer's frames;
- compute: one NPU job per layer with matrix work.

``tests/systems/test_shape_plan.py`` checks this, record for record, against the trace the
framework leaves when it really runs a sealed model.
"""

from __future__ import annotations

from flexserve.catalog.shapes import layer_sizes
from flexserve.engine.config import ModelConfig
from flexserve.monitor.core import MonitorConfig
from flexserve.soc.constants import FRAME_SIZE_BYTES
from flexserve.soc.work import WorkRecord
from flexserve.tee.framework.trace import LayerTrace, RequestTrace, Stage, StageKind
from flexserve.tee.sealing.format import DEFAULT_CHUNK_BYTES, TAG_BYTES
from flexserve.timing.compute import LayerKind, layer_kind


def _pages(n_bytes: int) -> int:
    return -(-n_bytes // FRAME_SIZE_BYTES)


def protect_record(pages: int, monitor: MonitorConfig | None = None) -> WorkRecord:
    """The monitor's work for one FLEXMEM_PROTECT of ``pages`` (docs/smc-abi.md)."""
    threshold = (monitor or MonitorConfig()).tlbi_range_threshold_pages
    tlbi = 2 * pages if pages <= threshold else 2
    return WorkRecord(frames_touched=pages, s2pt_entries_changed=pages, tlb_invalidations=tlbi,
                      smc_calls=1, world_switches=2)


def _chunk_sizes(plain: int, chunk_bytes: int) -> list[int]:
    """Plaintext bytes per chunk: full chunks, then the remainder (one chunk at least)."""
    full, rest = divmod(plain, chunk_bytes)
    return [chunk_bytes] * full + ([rest] if rest or not full else [])


def layer_trace(name: str, index: int, plain: int, has_matmul: bool,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> LayerTrace:
    """The stages of one sealed unit of ``plain`` plaintext bytes.

    Chunks start on frame boundaries (``chunk_bytes`` is a whole number of frames), so each
    chunk's bounce pages and the whole frames its plaintext is written into are counted per
    chunk, as the file service and the frame sink do.
    """
    sizes = _chunk_sizes(plain, chunk_bytes)
    chunks = len(sizes)
    cipher = plain + chunks * TAG_BYTES
    bounce_pages = sum(_pages(n + TAG_BYTES) for n in sizes)
    written_bytes = sum(_pages(n) for n in sizes) * FRAME_SIZE_BYTES
    pages = _pages(plain)
    trace = LayerTrace(name, index + 1, plain, cipher, chunks)
    trace.stages += [
        Stage(StageKind.ALLOC, name, plain, pages=pages, requests=1,
              work={"kernel": WorkRecord(pages_allocated=pages),
                    "monitor": protect_record(pages),
                    "secure": WorkRecord(frames_touched=pages)}),
        Stage(StageKind.IO, name, cipher, requests=chunks,
              work={"kernel": WorkRecord(pages_allocated=bounce_pages,
                                         pages_freed=bounce_pages),
                    "files": WorkRecord(frames_touched=bounce_pages, bytes_read_flash=cipher,
                                        bytes_dma=cipher),
                    "secure": WorkRecord(bytes_copied=cipher)}),
        Stage(StageKind.DECRYPT, name, plain, requests=chunks,
              work={"secure": WorkRecord(frames_touched=pages, bytes_copied=written_bytes)}),
        Stage(StageKind.COMPUTE, name, plain,
              requests=1 if has_matmul else 0),
    ]
    return trace


def shape_trace(shape: ModelConfig, prompt_tokens: int, generated_tokens: int,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> RequestTrace:
    """The trace a request of ``prompt_tokens`` would leave, from the model's shape alone."""
    layers = [layer_trace(layer.name, i, layer.q8_0_bytes,
                          layer_kind(layer) is not LayerKind.EMBED, chunk_bytes)
              for i, layer in enumerate(layer_sizes(shape))]
    return RequestTrace(shape.name or shape.architecture, shape, layers,
                        init_stages=[Stage(StageKind.INIT, "meta")],
                        prompt_tokens=prompt_tokens, generated_tokens=generated_tokens,
                        npu_mode_switches=2, npu_jobs=sum(s.requests for layer in layers
                                                          for s in layer.stages
                                                          if s.kind is StageKind.COMPUTE))


def with_resident_prefix(trace: RequestTrace, count: int) -> RequestTrace:
    """``trace`` with its first ``count`` layers already in secure memory: only their compute
    stage remains, as the framework records for a cache hit."""
    for layer in trace.layers[:count]:
        layer.stages = [s for s in layer.stages if s.kind is StageKind.COMPUTE]
    return trace
