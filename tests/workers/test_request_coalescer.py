"""The env worker's request coalescer: what is ready within the window goes out as one call."""

import threading
import time

import pytest

from rlvla3.workers.request_coalescer import RequestCoalescer


class Sink:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, g, items):
        with self.lock:
            self.calls.append((g, list(items), time.monotonic()))


def _wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        time.sleep(0.005)
    return pred()


def test_items_within_the_window_share_a_call_per_generator():
    sink = Sink()
    c = RequestCoalescer(0.05, sink)
    t0 = time.monotonic()
    for i in range(3):
        c.put(0, i)
    c.put(1, "x")
    assert _wait_for(lambda: len(sink.calls) == 2)
    by_gen = {g: items for g, items, _ in sink.calls}
    assert by_gen == {0: [0, 1, 2], 1: ["x"]}
    assert all(t - t0 >= 0.045 for _, _, t in sink.calls)  # sent when the window ended, not before
    assert c.calls == 2 and c.items == 4
    c.close()


def test_an_item_after_the_window_goes_in_the_next_call():
    sink = Sink()
    c = RequestCoalescer(0.02, sink)
    c.put(0, "a")
    assert _wait_for(lambda: len(sink.calls) == 1)
    c.put(0, "b")
    assert _wait_for(lambda: len(sink.calls) == 2)
    assert [items for _, items, _ in sink.calls] == [["a"], ["b"]]
    c.close()


def test_close_sends_what_waits_and_refuses_more():
    sink = Sink()
    c = RequestCoalescer(60.0, sink)  # a window that would never end on its own
    c.put(0, "late")
    c.close()
    assert [items for _, items, _ in sink.calls] == [["late"]]
    assert not c.thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        c.put(0, "after")


def test_the_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        RequestCoalescer(0.0, Sink())
