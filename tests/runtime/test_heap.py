import os
import sys

import numpy as np
import pytest

from rlvla3.workers.heap import release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap")
def test_freed_heap_memory_goes_back_to_the_os():
    """64 KB blocks come from the malloc heap (below the mmap threshold); one block kept
    above them pins the heap top, so freeing the rest leaves ~128 MB free but resident
    until the heap is trimmed."""
    blocks = [np.ones(64 * 1024 - 256, np.uint8) for _ in range(2048)]
    pin = np.ones(64 * 1024 - 256, np.uint8)
    held = _rss_mb()
    del blocks
    before = _rss_mb()
    assert release_free_memory()
    after = _rss_mb()
    assert before - after > 64, (held, before, after)
    del pin
