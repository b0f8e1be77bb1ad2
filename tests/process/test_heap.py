import os
import sys

import numpy as np
import pytest

from rlvla3.process.heap import release_free_memory


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


_CYCLES = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from rlvla3.process.heap import keep_freed_memory
if {mallopt}:
    assert keep_freed_memory(256)
def cycle():  # a micro-batch's activations: allocated, then all freed
    blocks = [np.ones(2 << 20, np.uint8) for _ in range(24)]
    del blocks
cycle()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults_per_cycle(env_extra: dict, mallopt: bool = False) -> float:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _CYCLES.format(root=root, mallopt=mallopt)], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap")
def test_kept_heap_is_reused_without_page_faults():
    """48 MB freed and allocated again: glibc's defaults hand the heap top back and fault every
    page in again (12k pages per cycle); process.heap_keep_mb keeps it, set at start-up through
    the environment (Ray workers) or at run time (the driver)."""
    from rlvla3.process.heap import heap_env

    assert heap_env(0) == {}
    default = _faults_per_cycle({})
    kept_env = _faults_per_cycle(heap_env(256))
    kept_mallopt = _faults_per_cycle({}, mallopt=True)
    assert default > 6000, default
    assert kept_env < 500 and kept_mallopt < 500, (kept_env, kept_mallopt)


def test_heap_env_leaves_the_users_own_values(monkeypatch):
    from rlvla3.process.heap import heap_env

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1234")
    env = heap_env(64)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "1234" and env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert heap_env(64)["MALLOC_TRIM_THRESHOLD_"] == str(64 << 20)
