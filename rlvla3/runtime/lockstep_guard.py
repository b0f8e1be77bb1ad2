"""Deadlines and death detection for the lock-step schedules (sync, sync-best, async-train)
and evaluation.

Every lock-step call goes to all env workers at once. A worker whose process died (Ray actor
error) or that does not answer a chunk step within `faults.step_timeout_s` (a hung
simulator) is *lost* for the rest of that rollout: its episodes are dropped (counted), the
other workers go on, and the lost worker is killed and re-created before the next rollout.
GRPO groups that lost a member are then dropped whole by the group assembler. A generator
that dies is re-created (with the trainer's current weights when there is a trainer) and its
share of the batch is asked again.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Set

from rlvla3.runtime.remote_wait import WorkersLost
from rlvla3.runtime.supervisor import FaultReport, call_result, gather_with_deadline, kill_quietly, recreate_generator


class LockstepGuard:
    def __init__(self, backend, workers: list, make_worker: Callable[[int, int], object], step_timeout_s: float,
                 max_restarts: int, report: Optional[FaultReport] = None):
        self.backend = backend
        self.workers = workers  # the session's list: replaced in place
        self.make_worker = make_worker
        self.step_timeout_s = step_timeout_s
        self.max_restarts = max_restarts
        self.report = report or FaultReport()
        self.incarnation = [0] * len(workers)
        self.lost: Set[int] = set()
        self.session = None  # generators are watched once watch_generators() is called
        self.gen_incarnation: List[int] = []

    def watch_generators(self, session) -> "LockstepGuard":
        """Also replace dead generators of `session` (its make_generator, its trainer's weights)."""
        if session.make_generator is not None:
            self.session = session
            self.gen_incarnation = [0] * len(session.generators)
        return self

    def replies(self, refs: List[object], asks: List[tuple]) -> List[object]:
        """Results of calls already sent, `refs[i]` to generator `asks[i][0]`; `asks[i][1]`
        re-sends it to a replacement when that generator died or missed the step timeout."""
        ray = self.backend.ray
        if self.session is None:
            return self.backend.get(refs, what="generator replies")  # bounded by faults.call_timeout_s
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=self.step_timeout_s)[0])
        out = []
        for ref, (g, call) in zip(refs, asks):
            for attempt in range(2):
                why, result = call_result(ray, ref, ready)
                if why == "ok":
                    out.append(result)
                    break
                if attempt:
                    raise WorkersLost(f"generator {g} {why} again after a restart")
                if why == "hung":
                    self.report.generator_hangs += 1
                # a wedged one is killed first
                recreate_generator(self.session, g, self.gen_incarnation, self.report,
                                   f"lock-step guard: generator {g} {why}")
                ref = call(self.session.generators[g])
                ready = set(ray.wait([ref], timeout=self.step_timeout_s)[0]) | ready
        return out

    def gather(self, refs: List[Optional[object]], slow_ok: bool = False) -> List[Optional[object]]:
        """Results of one call per worker (None where no call was made). A worker that died or
        missed the deadline is marked lost and gets None. `slow_ok`: the call may wait for an
        actor that is still starting (resets, drains), so the deadline is at least 60 s."""
        timeout = max(60.0, self.step_timeout_s) if slow_ok else self.step_timeout_s
        lose = lambda w, why: self._lose(w, f"{why} (faults.step_timeout_s={self.step_timeout_s})")  # noqa: E731
        return gather_with_deadline(self.backend.ray, refs, timeout, self.report, lose)

    def _lose(self, w: int, reason: str) -> None:
        print(f"lock-step guard: env worker {w}: {reason}; its episodes are dropped, it restarts after this "
              f"rollout", flush=True)
        kill_quietly(self.backend.ray, self.workers[w])
        self.lost.add(w)

    def replace_lost(self) -> None:
        """Re-create every worker lost in the last rollout."""
        for w in sorted(self.lost):
            self.report.spend_worker_restart(self.max_restarts, f"env worker {w} lost")
            self.incarnation[w] += 1
            self.workers[w] = self.make_worker(w, self.incarnation[w])
        self.lost.clear()
