"""The action round-trip breakdown read from `action_rt` spans (bench/round_trip.py)."""

import pytest

from rlvla3.bench.round_trip import STAGES, breakdown, slot_time, stage_times, to_lines
from rlvla3.core.timeline import Span

SOCKET = {"ready": 0.5, "sent": 1.0, "read": 1.5, "queued": 2.0, "popped": 7.0, "fwd0": 7.5, "fwd1": 11.5,
          "done": 12.0, "written": 12.25, "recv": 13.0, "begin": 14.0}


def test_stage_times_are_the_gaps_between_marks():
    t = stage_times(SOCKET)
    assert t["batcher wait"] == pytest.approx(5.0)
    assert t["forward"] == pytest.approx(4.0)
    assert t["to slot"] == pytest.approx(1.0)
    assert t["to writer"] == pytest.approx(0.25) and t["reply"] == pytest.approx(0.75)
    assert sum(t.values()) == pytest.approx(14.0)
    assert list(t) == list(STAGES)


def test_a_missing_mark_gives_its_time_to_the_next_stage():
    ray = {k: v for k, v in SOCKET.items() if k not in ("read", "written")}  # no reader/writer threads over Ray
    t = stage_times(ray)
    assert t["to generator"] == 0.0 and t["to writer"] == 0.0
    assert t["to batcher"] == pytest.approx(1.0)  # sent (1.0) -> queued (2.0)
    assert t["reply"] == pytest.approx(1.0)  # done (12.0) -> recv (13.0)
    assert sum(t.values()) == pytest.approx(14.0)
    assert list(t) == list(STAGES)


def test_breakdown_over_a_window():
    spans = [Span("env0/slot0", "action_rt", 100.0 + k, 0.014, {**SOCKET, "batch": 4}) for k in range(5)]
    spans += [Span("env0/slot0", "env_step", 99.0 + k, 0.056, {"steps": 4}) for k in range(6)]
    spans.append(Span("env0/slot0", "action_rt", 500.0, 0.100, {**SOCKET, "batch": 1}))  # outside the window
    b = breakdown(spans, 99.0, 200.0)
    assert b["requests"] == 5
    assert b["batch_mean"] == 4
    assert b["total_ms"]["p50"] == pytest.approx(14.0)
    assert b["stages_ms"]["batcher wait"]["mean"] == pytest.approx(5.0)
    assert b["chunk_ms_p50"] == pytest.approx(56.0)
    assert b["slot_busy_cap"] == pytest.approx(56.0 / 70.0, abs=1e-3)
    assert any("batcher wait" in line for line in to_lines(b))


def test_no_round_trips_no_breakdown():
    assert breakdown([Span("env0/slot0", "env_step", 0.0, 0.05, {"steps": 4})]) is None
    assert to_lines(None) == []


def test_slot_time_splits_a_slots_seconds():
    # one slot, 1 s: a 0.5 s chunk, a 0.1 s round trip, a 0.2 s reset, 0.2 s with no episode
    spans = [Span("env0/slot0", "env_step", 0.0, 0.5, {"steps": 4}),
             Span("env0/slot0", "action_rt", 0.5, 0.1, {**SOCKET, "batch": 1}),
             Span("env0/slot0", "reset", 0.8, 0.2),
             Span("generator0", "infer_batch", -5.0, 10.0, {"n": 1})]  # other tracks do not count
    st = slot_time(spans, 0.0, 1.0)
    assert st == pytest.approx({"env_step": 0.5, "action_rt": 0.1, "reset": 0.2, "waiting": 0.2})
    assert breakdown(spans)["slot_time"] == pytest.approx(st)  # over the seconds the slot's record covers
    assert "waiting for an episode 20.0%" in to_lines(breakdown(spans))[-1]


def test_a_slot_that_goes_quiet_counts_as_waiting_over_the_window():
    # Two slots stepping 0.5 s chunks with 0.1 s round trips; slot1 is given no episode after 5 s.
    # Its quiet half is waiting (the busy share then agrees with the bench's utilization), not a
    # reason to shrink the window to the seconds where every slot has spans.
    from rlvla3.bench.measure import utilization
    spans = []
    for slot, until in (("env0/slot0", 10.0), ("env0/slot1", 5.0)):
        t = 0.0
        while t + 0.6 <= until:
            spans += [Span(slot, "env_step", t, 0.5, {"steps": 4}), Span(slot, "action_rt", t + 0.5, 0.1, SOCKET)]
            t += 0.6
    st = breakdown(spans, 0.0, 10.0)["slot_time"]
    assert st["env_step"] + st["reset"] == pytest.approx(utilization(spans, 0.0, 10.0)["env0"]["utilization"], abs=1e-3)
    # slot0: 16 cycles (9.6 s) of 10 s, slot1: 8 cycles (4.8 s): (0.4 + 5.2) s of 20 s waiting
    assert st["waiting"] == pytest.approx(0.28, abs=1e-3)
