import json
import sys

import pytest

from rlvla3.workers.memory_probe import MemoryProbe


def test_probe_appends_heap_accounting_and_python_growth(tmp_path):
    path = tmp_path / "sub" / "mem.jsonl"
    probe = MemoryProbe(str(path), trace_python=True)
    probe.record(step=1)
    keep = [bytearray(4096) for _ in range(256)]  # ~1 MB that stays alive  # noqa: F841
    try:
        row = probe.record(step=2)
    finally:
        probe.close()  # tracing slows everything that runs after it
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert row["anon_mb"] > 0 and row["python_objects"] > 0
    assert row["python_traced_mb"] >= 1.0
    top = row["python_growth"][0]
    assert top["kb"] >= 1000 and any("test_memory_probe.py" in w for w in top["where"])
    if sys.platform.startswith("linux") and probe.heap():  # glibc >= 2.33
        assert row["heap_in_use_mb"] > 0 and row["arena_mb"] >= row["heap_free_mb"] >= 0


def test_memory_log_every_must_be_positive():
    from rlvla3.runtime.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="trainer.memory_log_every"):
        load_config(["preset=tiny-test", "trainer.memory_log_every=0"])
