"""Architectural constants of the emulated SoC (ARMv8-A, 4 KiB translation granule)."""

from __future__ import annotations

FRAME_SHIFT = 12
FRAME_SIZE_BYTES = 1 << FRAME_SHIFT
KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
U64_LIMIT = 1 << 64

#: Marker in frame-number arrays for "no frame" / "no mapping".
NO_FRAME = -1


def frame_rounded_bytes(size_bytes: int) -> int:
    """``size_bytes`` rounded up to whole 4 KiB frames."""
    return -(-size_bytes // FRAME_SIZE_BYTES) * FRAME_SIZE_BYTES


def pages_spanned(addr: int, size_bytes: int) -> tuple[int, int]:
    """First page number and page count of the byte range ``[addr, addr + size_bytes)``."""
    if size_bytes <= 0:
        return addr >> FRAME_SHIFT, 0
    first_page = addr >> FRAME_SHIFT
    last_page = (addr + size_bytes - 1) >> FRAME_SHIFT
    return first_page, last_page - first_page + 1


def byte_segments(addr: int, size_bytes: int) -> list[tuple[int, int, int]]:
    """Split a byte range into ``(page, offset_in_page, length)`` pieces, one per page."""
    pieces = []
    pos, end = addr, addr + size_bytes
    while pos < end:
        page, offset = pos >> FRAME_SHIFT, pos & (FRAME_SIZE_BYTES - 1)
        chunk = min(FRAME_SIZE_BYTES - offset, end - pos)
        pieces.append((page, offset, chunk))
        pos += chunk
    return pieces


def physical_runs(pa_pages: object, addr: int, size_bytes: int) -> list[tuple[int, int]]:
    """``(pa, size_bytes)`` pieces of an access whose pages were translated to ``pa_pages``.

    ``addr`` is the (virtual) start address; pages may be scattered physically.
    """
    runs = []
    pos, end = addr, addr + size_bytes
    for pa_page in list(pa_pages):  # type: ignore[call-overload]
        offset = pos & (FRAME_SIZE_BYTES - 1)
        chunk = min(FRAME_SIZE_BYTES - offset, end - pos)
        runs.append(((int(pa_page) << FRAME_SHIFT) | offset, chunk))
        pos += chunk
    return runs
