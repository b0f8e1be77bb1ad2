"""How much freed heap memory a process keeps, and handing it back to the OS.

Two opposite costs. Kept too little: glibc returns the top of its heap to the OS as soon as
more than its trim threshold is free, so the trainer's activations, freed after every
micro-batch and allocated again for the next, came back as fresh pages each time (50-70k
page faults/s, 15% of its CPU in the kernel; `process.heap_keep_mb` raises the threshold).
Kept forever: resident memory creeps up although nothing is live (the soak runs in
docs/reliability/ saw +125 MB in 30 min); `malloc_trim(0)` every few optimizer steps hands
the free pages back (`trainer.trim_heap_every`). Both are no-ops where the C library is not
glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Dict, Optional

_libc = None
_resolved = False
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, so they can be kept
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _glibc_fn(name: str):
    global _libc, _resolved
    if not _resolved:
        _resolved = True
        lib: Optional[str] = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(lib) if lib else None
        except OSError:
            _libc = None
    return getattr(_libc, name, None) if _libc is not None else None


def heap_env(keep_mb: int) -> Dict[str, str]:
    """Environment that makes a new process keep up to `keep_mb` MB of freed heap (glibc reads
    it at start-up); values the user exported win. Empty for keep_mb=0: glibc's defaults."""
    if keep_mb <= 0:
        return {}
    return {"MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_", str(keep_mb << 20)),
            "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))}


def keep_freed_memory(keep_mb: int) -> bool:
    """The same for this (already running) process, leaving what the user exported alone;
    True if glibc took every setting made."""
    mallopt = _glibc_fn("mallopt")
    if keep_mb <= 0 or mallopt is None:
        return False
    ok = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        ok = bool(mallopt(_M_TRIM_THRESHOLD, keep_mb << 20)) and ok
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and ok
    return ok


def release_free_memory() -> bool:
    """True if the C library returned memory to the OS (glibc's malloc_trim said so)."""
    trim = _glibc_fn("malloc_trim")
    return bool(trim(0)) if trim is not None else False
