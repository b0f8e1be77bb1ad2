"""CPU priority of a worker process (`process.nice`).

Linux keeps a nice value per thread, and `os.nice` changes only the calling one: an async
Ray actor runs its constructor on another thread than its event loop, so every thread of
the process is changed (threads created later inherit from their creator). Ray already
starts workers at nice 15; the value is capped at 19.
"""

from __future__ import annotations

import os


def lower_priority(by: int) -> int:
    """Raise the nice value of every thread of this process by `by` (capped at 19); returns
    the new value of the calling thread."""
    if by <= 0:
        return os.getpriority(os.PRIO_PROCESS, 0)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no procfs: only this thread
        tids = [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        except OSError:  # the thread ended meanwhile
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)
