"""Compile the native kernels (``decode_ops.c``, ``q4_*.c``) once per machine; load them.

The shared object is cached under ``$FLEXSERVE_CACHE_DIR`` (default ``~/.cache/flexserve``),
keyed by a hash of the sources, the compiler flags and the CPU's flags, and written atomically,
so concurrent processes and later runs reuse it. Without a C compiler, or with
``FLEXSERVE_NATIVE=0``, :func:`load_decode_ops` returns None and the engine stays on torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

NATIVE_DIR = Path(__file__).parent
SOURCES = tuple(NATIVE_DIR / name for name in ("decode_ops.c", "q4_kernels.c", "q4_avx2.c"))
HEADERS = (NATIVE_DIR / "bf16.h",)
# -fno-trapping-math: floating-point selects may be if-converted, so the softmax's exp loop
# vectorizes (no code here reads floating-point exception flags)
CFLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fPIC", "-shared", "-std=c99",
          "-fopenmp")
DISABLE_ENV = "FLEXSERVE_NATIVE"
CACHE_ENV = "FLEXSERVE_CACHE_DIR"
BUILD_TIMEOUT_S = 120.0

_F = ctypes.c_void_p  # pointers are passed as plain addresses (tensor.data_ptr())
_I = ctypes.c_int
_R = ctypes.c_float
SIGNATURES: dict[str, list[type]] = {
    "fs_add_norm": [_F, _F, _F, _F, _I, _R, _F, _F],
    "fs_attention": [_F, _I, _I, _I, _F, _F, _R, _F, _F, _I, _F, _F, _I, _I, _I, _R, _F, _F],
    "fs_glu": [_F, _I, _I, _F],
    "fs_add_norm_rows": [_F, _F, _F, _F, _I, _I, _R, _F, _F],
    "fs_qkv_rows": [_F, _I, _I, _I, _I, _F, _F, _R, _F, _F, _I, _F, _F, _I, _I, _F],
    "fs_attention_rows": [_F, _I, _I, _I, _I, _F, _F, _I, _I, _I, _R, _F],
    "fs_int4_rows": [_F, _F, _I, _I, _I, _I, _F, _I, _F],
    "fs_q4_gemv": [_F, _F, _F, _I, _I, _F, _F, _F, _F],
    "fs_q4_gemm": [_F, _F, _F, _I, _I, _I, _F, _F, _F, _F],
    "fs_q4x2_gemm": [_F, _F, _F, _F, _F, _I, _I, _I, _F, _F, _F],
}
RETURNS_INT = frozenset({"fs_attention_rows"})  # 0: out of memory (outputs set to NaN)


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return os.uname().machine
    flags = [line for line in text.splitlines() if line.startswith(("flags", "model name"))]
    return "\n".join(flags[:2])


def library_path(cache_dir: Path | None = None) -> Path:
    """Where the compiled library for this source, these flags and this CPU lives."""
    key = hashlib.sha256()
    parts = [path.read_bytes() for path in (*SOURCES, *HEADERS)]
    for part in (*parts, " ".join(CFLAGS).encode(), _cpu_flags().encode()):
        key.update(part)
    root = cache_dir or Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flexserve")
    return root / "native" / f"decode_ops-{key.hexdigest()[:16]}.so"


def compile_library(target: Path, compiler: str) -> None:
    """Compile the source into ``target`` (atomically: a temporary file, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        subprocess.run([compiler, *CFLAGS, "-o", temp_name, *map(str, SOURCES), "-lm"],
                       check=True, capture_output=True, timeout=BUILD_TIMEOUT_S)
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    for name, argtypes in SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int if name in RETURNS_INT else None
    for probe in (library.fs_gemv_available, library.fs_q4x2_available):
        probe.argtypes = []
        probe.restype = ctypes.c_int
    return library


@cache
def load_decode_ops() -> ctypes.CDLL | None:
    """The fused decode helpers, or None when disabled or when they cannot be built."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    target = library_path()
    if not target.exists():
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if compiler is None:
            return None
        try:
            compile_library(target, compiler)
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        return _bind(ctypes.CDLL(str(target)))
    except OSError:
        return None
