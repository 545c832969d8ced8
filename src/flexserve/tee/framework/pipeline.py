"""The secure inference pipeline, per layer: alloc -> load -> decrypt -> install.

For each sealed unit (``embed``, ``blk.<i>``, ``output``) the framework

1. allocates secure memory for the layer from the device's pool (:mod:`.memory`: Flex-Mem
   through ``rsmem_alloc``, or a TZASC region for the strawman designs);
2. reads each ciphertext chunk from flash through the normal world's file service and copies
   it into secure memory;
3. verifies and decrypts the chunk straight into the layer's frames;
4. builds the layer's weights from the bytes read back from those frames and installs them.

Every step is recorded in the :class:`~flexserve.tee.framework.trace.LayerTrace` with the
work the mechanisms reported. Failures are the caller's to clean up (the pool's
``release_all``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexserve.engine.layers import LayerGroup, load_group
from flexserve.engine.model import Transformer
from flexserve.soc.work import WorkRecord
from flexserve.tee.framework.files import ServiceBlobReader
from flexserve.tee.framework.memory import LayerSpan, SecurePool
from flexserve.tee.framework.meter import WorkMeter, add_work
from flexserve.tee.framework.trace import LayerTrace, Stage, StageKind
from flexserve.tee.sealing import SealedModel, SealedUnit
from flexserve.tee.sealing.buffers import ByteSink


@dataclass
class _StageTotals:
    n_bytes: int = 0
    requests: int = 0
    work: dict[str, WorkRecord] = field(default_factory=dict)


class LayerLoader:
    """Loads one sealed unit at a time into Flex-Mem and into the transformer."""

    def __init__(self, pool: SecurePool, sealed: SealedModel, reader: ServiceBlobReader,
                 meter: WorkMeter) -> None:
        self.pool, self.sealed, self.reader, self.meter = pool, sealed, reader, meter

    @staticmethod
    def new_trace(unit: SealedUnit) -> LayerTrace:
        return LayerTrace(unit.name, unit.index, unit.n_bytes, unit.ciphertext_bytes,
                          len(unit.chunks))

    def load(self, unit: SealedUnit, group: LayerGroup, transformer: Transformer,
             trace: LayerTrace | None = None) -> LayerTrace:
        """Load ``unit`` into ``transformer``; stages go to ``trace`` (also on failure).

        What it allocated stays in the pool (the caller releases the pool)."""
        trace = trace if trace is not None else self.new_trace(unit)
        span = self._alloc(unit, trace)
        self._load_and_decrypt(unit, span, trace)
        transformer.install_group(group.name, load_group(group, span.read(unit.n_bytes),
                                                         transformer.weight_format))
        return trace

    def _alloc(self, unit: SealedUnit, trace: LayerTrace) -> LayerSpan:
        before = self.meter.snapshot()
        span = self.pool.allocate(unit.n_bytes, unit.name)
        trace.stages.append(Stage(StageKind.ALLOC, unit.name, unit.n_bytes,
                                  pages=span.pages, requests=1,
                                  work=self.meter.since(before)))
        return span

    def _load_and_decrypt(self, unit: SealedUnit, span: LayerSpan, trace: LayerTrace) -> None:
        sink = span.sink()
        io, decrypt = _StageTotals(), _StageTotals()
        try:
            self._chunks(unit, sink, io, decrypt)
        finally:  # a failed layer keeps the record of what it did
            for kind, totals in ((StageKind.IO, io), (StageKind.DECRYPT, decrypt)):
                trace.stages.append(Stage(kind, unit.name, totals.n_bytes,
                                          requests=totals.requests, work=totals.work))

    def _chunks(self, unit: SealedUnit, sink: ByteSink, io: _StageTotals,
                decrypt: _StageTotals) -> None:
        for chunk in unit.chunks:
            before = self.meter.snapshot()
            ciphertext = self.reader.read(chunk.file_offset_bytes, chunk.ciphertext_bytes)
            add_work(io.work, self.meter.since(before))
            io.n_bytes += chunk.ciphertext_bytes
            io.requests += 1
            before = self.meter.snapshot()
            self.sealed.decrypt_chunk_into(unit, chunk, ciphertext, sink, chunk.unit_offset_bytes)
            add_work(decrypt.work, self.meter.since(before))
            decrypt.n_bytes += chunk.plaintext_bytes
            decrypt.requests += 1
