"""Where a worker's memory goes, from inside the process (`trainer.memory_log`).

RSS seen from outside cannot tell a leak from allocator fragmentation: this probe appends
one JSON line per call with the C heap's own accounting (glibc `mallinfo2`: bytes in use vs
free but kept), the anonymous RSS, the count of live Python objects and, when tracemalloc
is on, the Python allocation sites that grew most since the first line. A leak shows as
`heap_in_use` growing; fragmentation as `heap_free` growing while in-use stays flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import time
import tracemalloc
from typing import Optional


class _MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    name = ctypes.util.find_library("c")
    try:
        fn = getattr(ctypes.CDLL(name), "mallinfo2") if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


def _anon_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class MemoryProbe:
    def __init__(self, path: str, trace_python: bool = False, top: int = 12):
        self.path, self.top = path, top
        self._mallinfo = _mallinfo2()
        self._first: Optional[tracemalloc.Snapshot] = None
        self._started = trace_python and not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start(8)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def close(self) -> None:
        if self._started and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._first = None

    def heap(self) -> dict:
        if self._mallinfo is None:
            return {}
        m = self._mallinfo()
        mb = 1 / 2**20
        # uordblks: allocated from the heap arenas; hblkhd: live mmap-ed chunks (always in use);
        # fordblks: free bytes the arenas keep (fragmentation when it grows).
        return {"heap_in_use_mb": m.uordblks * mb, "mmap_mb": m.hblkhd * mb, "heap_free_mb": m.fordblks * mb,
                "arena_mb": m.arena * mb, "free_chunks": int(m.ordblks)}

    def record(self, **context) -> dict:
        row = {"t": time.time(), "anon_mb": _anon_mb(), "python_objects": len(gc.get_objects()), **context,
               **self.heap()}
        if tracemalloc.is_tracing():
            row["python_traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if self._first is None:
                self._first = snap
            else:
                diff = snap.compare_to(self._first, "traceback")
                row["python_growth"] = [{"kb": d.size_diff / 1024, "count": d.count_diff,
                                         "where": [f"{f.filename}:{f.lineno}" for f in d.traceback][-4:]}
                                        for d in diff[:self.top] if d.size_diff > 0]
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row
