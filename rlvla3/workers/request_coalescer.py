"""Groups the action requests one env worker sends to one generator within a short window.

Every Ray call costs the caller and the generator a fixed slice of CPU (submission,
serialisation, the actor's task dispatch), whatever it carries. An env worker serving many
slots makes hundreds of calls a second; on a machine with few cores that CPU is taken from
the trainer. Requests that become ready within `window_s` of the first one go out as one
call (`infer_many`); each slot still gets its own reply as soon as that call returns. The
window adds at most `window_s` to a request's latency, and the generator's batcher usually
waits longer than that anyway (`generator.max_wait_ms`), so the requests would have shared
a batch regardless.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List


class RequestCoalescer:
    def __init__(self, window_s: float, send: Callable[[int, List], None]):
        if window_s <= 0:
            raise ValueError(f"the coalescing window must be > 0 s, got {window_s}")
        self.window_s = window_s
        self.send = send  # send(generator, items): one call carrying every item; must not raise
        self.cond = threading.Condition()
        self.boxes: Dict[int, List] = {}  # generator -> items waiting to go
        self.opened: Dict[int, float] = {}  # generator -> monotonic time its box got its first item
        self.closed = False
        self.calls = self.items = 0
        self.thread = threading.Thread(target=self._run, daemon=True, name="request-coalescer")
        self.thread.start()

    def put(self, generator: int, item) -> None:
        with self.cond:
            if self.closed:
                raise RuntimeError("request coalescer is closed")
            box = self.boxes.setdefault(generator, [])
            if not box:
                self.opened[generator] = time.monotonic()
                self.cond.notify()
            box.append(item)

    def _due(self) -> List:
        """Boxes whose window has passed (all of them once closed), removed; or []."""
        now = time.monotonic()
        ready = [g for g, box in self.boxes.items() if box and (self.closed or now >= self.opened[g] + self.window_s)]
        return [(g, self.boxes.pop(g)) for g in ready]

    def _run(self) -> None:
        while True:
            with self.cond:
                due = self._due()
                while not due:
                    if self.closed:
                        return
                    waiting = [self.opened[g] + self.window_s for g, box in self.boxes.items() if box]
                    self.cond.wait(max(0.0, min(waiting) - time.monotonic()) if waiting else None)
                    due = self._due()
                self.calls += len(due)
                self.items += sum(len(items) for _, items in due)
            for g, items in due:  # outside the lock: slots keep adding meanwhile
                self.send(g, items)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is waiting now and stop the thread."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=timeout_s)
