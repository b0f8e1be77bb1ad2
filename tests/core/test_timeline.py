"""Hand-computed checks for rlvla3.core.timeline."""
import json
import threading
import time

import pytest

import rlvla3.core.timeline as tl
from rlvla3.core.timeline import (
    Span,
    SpanRecorder,
    busy_fraction,
    to_chrome_trace,
    track_sort_key,
)


def test_record_and_span_fields():
    rec = SpanRecorder()
    rec.record("env0/slot0", "env_step", 10.0, 0.5, batch=4)
    (s,) = rec.spans()
    assert s == Span("env0/slot0", "env_step", 10.0, 0.5, {"batch": 4})
    assert s.end == 10.5
    with pytest.raises(Exception):
        s.start = 1.0  # frozen


def test_capacity_drops_oldest_and_counts():
    rec = SpanRecorder(capacity=3)
    for i in range(5):
        rec.record("t", f"s{i}", float(i + 1), 0.1)
    assert len(rec) == 3
    assert rec.dropped == 2
    assert [s.name for s in rec.spans()] == ["s2", "s3", "s4"]
    rec.clear()
    assert rec.spans() == [] and rec.dropped == 0
    with pytest.raises(ValueError):
        SpanRecorder(capacity=0)


def test_disabled_records_nothing():
    rec = SpanRecorder(enabled=False)
    rec.record("t", "x", 1.0, 1.0)
    with rec.span("t", "y"):
        pass
    assert rec.spans() == [] and rec.dropped == 0
    rec.enabled = True
    rec.record("t", "x", 1.0, 1.0)
    assert len(rec.spans()) == 1


def test_span_context_manager_times_with_wall_clock(monkeypatch):
    clock = iter([100.0, 100.25])
    monkeypatch.setattr(tl.time, "time", lambda: next(clock))
    rec = SpanRecorder()
    with pytest.raises(RuntimeError):
        with rec.span("trainer", "optimizer_step", step=7):
            raise RuntimeError("boom")
    # Recorded even though the body raised.
    assert rec.spans() == [Span("trainer", "optimizer_step", 100.0, 0.25, {"step": 7})]


def test_span_real_clock_is_wall_time():
    rec = SpanRecorder()
    before = time.time()
    with rec.span("driver", "wait"):
        pass
    (s,) = rec.spans()
    assert before <= s.start <= time.time() and s.dur >= 0.0


def test_negative_duration_clamped():
    rec = SpanRecorder()
    rec.record("t", "x", 5.0, -1.0)
    assert rec.spans()[0].dur == 0.0


def test_spans_since_filters_by_end():
    rec = SpanRecorder()
    rec.record("t", "a", 1.0, 1.0)  # ends 2
    rec.record("t", "b", 2.0, 2.0)  # ends 4
    rec.record("t", "c", 5.0, 0.5)  # ends 5.5
    assert [s.name for s in rec.spans()] == ["a", "b", "c"]
    assert [s.name for s in rec.spans(since=2.0)] == ["b", "c"]  # ends strictly after
    assert [s.name for s in rec.spans(since=3.0)] == ["b", "c"]  # b still running at 3
    assert [s.name for s in rec.spans(since=4.5)] == ["c"]
    assert rec.spans(since=6.0) == []


def test_thread_safety_exact_counts():
    rec = SpanRecorder(capacity=10_000)
    n_threads, per = 8, 500

    def work(r: SpanRecorder, k: int) -> None:
        for i in range(per):
            r.record(f"env0/slot{k}", "env_step", 1.0 + i, 0.001)

    threads = [threading.Thread(target=work, args=(rec, k)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = rec.spans()
    assert len(spans) == n_threads * per and rec.dropped == 0
    for k in range(n_threads):
        assert sum(s.track == f"env0/slot{k}" for s in spans) == per

    # With overflow, kept + dropped must still equal everything recorded.
    small = SpanRecorder(capacity=100)
    threads = [threading.Thread(target=work, args=(small, k)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(small) == 100 and small.dropped == n_threads * per - 100


def S(track, name, start, end, **args):
    return Span(track, name, start, end - start, args)


def test_busy_fraction_overlap_not_double_counted():
    spans = [S("a", "x", 0, 2), S("a", "x", 1, 3)]
    assert busy_fraction(spans, "a", 0, 4) == pytest.approx(0.75)
    # Nested span adds nothing; disjoint one adds its length.
    spans += [S("a", "y", 0.5, 1.5), S("a", "x", 3.5, 4)]
    assert busy_fraction(spans, "a", 0, 4) == pytest.approx(3.5 / 4)


def test_busy_fraction_clips_to_window_and_track():
    spans = [S("a", "x", -1, 1), S("a", "x", 3, 10), S("b", "x", 0, 4)]
    # Window [0, 4]: [0,1] + [3,4] = 2 of 4.
    assert busy_fraction(spans, "a", 0, 4) == pytest.approx(0.5)
    assert busy_fraction(spans, "b", 0, 4) == pytest.approx(1.0)
    assert busy_fraction(spans, "c", 0, 4) == 0.0
    # Window [1, 3] lies in the gap.
    assert busy_fraction(spans, "a", 1, 3) == 0.0
    # Empty / inverted window.
    assert busy_fraction(spans, "a", 2, 2) == 0.0
    assert busy_fraction(spans, "a", 3, 1) == 0.0
    assert busy_fraction([], "a", 0, 1) == 0.0


def test_busy_fraction_names_filter():
    spans = [S("g", "infer_batch", 0, 6), S("g", "weight_swap", 5, 8), S("g", "idle", 8, 10)]
    assert busy_fraction(spans, "g", 0, 10) == pytest.approx(1.0)
    assert busy_fraction(spans, "g", 0, 10, names=["infer_batch"]) == pytest.approx(0.6)
    assert busy_fraction(spans, "g", 0, 10, names={"weight_swap"}) == pytest.approx(0.3)
    # Union of both: [0,8].
    assert busy_fraction(
        spans, "g", 0, 10, names=("infer_batch", "weight_swap")
    ) == pytest.approx(0.8)
    assert busy_fraction(spans, "g", 0, 10, names=[]) == 0.0


def test_track_sort_key_natural():
    tracks = ["env0/slot10", "trainer", "env0/slot2", "env1/slot0", "driver"]
    assert sorted(tracks, key=track_sort_key) == [
        "driver", "env0/slot2", "env0/slot10", "env1/slot0", "trainer"
    ]


def test_chrome_trace_structure():
    groups = {
        "sync": [
            S("trainer", "micro_batch", 100.0, 100.5, mb=0),
            S("env0/slot1", "env_step", 100.25, 100.75),
            S("env0/slot0", "reset", 100.5, 101.0),
        ],
        "full": [S("generator0", "infer_batch", 500.0, 500.002, batch=32)],
    }
    trace = to_chrome_trace(groups)
    assert trace["displayTimeUnit"] == "ms"
    ev = json.loads(json.dumps(trace))["traceEvents"]  # JSON round trip

    meta = [e for e in ev if e["ph"] == "M"]
    procs = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert procs == {1: "sync", 2: "full"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    # tids sorted by track name within each process.
    assert threads == {
        (1, 1): "env0/slot0",
        (1, 2): "env0/slot1",
        (1, 3): "trainer",
        (2, 1): "generator0",
    }

    x = [e for e in ev if e["ph"] == "X"]
    assert len(x) == 4
    by_name = {e["name"]: e for e in x}
    mb = by_name["micro_batch"]
    assert (mb["cat"], mb["pid"], mb["tid"]) == ("micro_batch", 1, 3)
    assert mb["ts"] == pytest.approx(0.0) and mb["dur"] == pytest.approx(500_000.0)
    assert mb["args"] == {"mb": 0}
    step = by_name["env_step"]
    assert (step["tid"], step["ts"], step["dur"]) == (2, pytest.approx(250_000.0), pytest.approx(500_000.0))
    assert by_name["reset"]["ts"] == pytest.approx(500_000.0)
    # Second group is relative to its own earliest start: lines up at 0.
    inf = by_name["infer_batch"]
    assert (inf["pid"], inf["tid"]) == (2, 1)
    assert inf["ts"] == pytest.approx(0.0) and inf["dur"] == pytest.approx(2000.0)
    assert inf["args"] == {"batch": 32}


def test_chrome_trace_empty_group():
    trace = to_chrome_trace({"empty": []})
    assert trace["traceEvents"] == [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "empty"}}
    ]
    assert to_chrome_trace({}) == {"traceEvents": [], "displayTimeUnit": "ms"}
