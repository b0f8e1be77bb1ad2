"""Return freed heap memory to the operating system.

The trainer allocates activations of varying size every micro-batch; glibc keeps the freed
chunks in its heap, so resident memory creeps up although nothing is live (the soak runs in
docs/reliability/ saw +125 MB in 30 min). `malloc_trim(0)` every few optimizer steps hands
the free pages back (`trainer.trim_heap_every`). A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

_trim = None
_resolved = False


def _malloc_trim():
    global _trim, _resolved
    if not _resolved:
        _resolved = True
        name: Optional[str] = ctypes.util.find_library("c")
        try:
            _trim = getattr(ctypes.CDLL(name), "malloc_trim") if name else None
        except (OSError, AttributeError):
            _trim = None
    return _trim


def release_free_memory() -> bool:
    """True if the C library returned memory to the OS (glibc's malloc_trim said so)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
