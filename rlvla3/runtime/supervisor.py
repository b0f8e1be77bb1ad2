"""Keeps the asynchronous schedule's env workers and generators alive.

Every driver tick the supervisor asks each env worker for its status with a deadline. A
worker that does not answer (its process died: Ray actor error) or that reports a chunk
step older than `faults.step_timeout_s` (a hung simulator) is killed and re-created, and
the episodes it held are reported lost, so that the driver drops them (counted) and
settles their staleness reservation. A generator whose requests fail is pinged; if it is
dead it is re-created with the current weights and the env workers are told to use it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional


@dataclass
class FaultReport:
    """What went wrong and what was done about it (summary.json -> faults)."""

    env_faults_caught: int = 0  # env raised / returned non-finite values; handled inside the worker
    faults_injected_reported: int = 0  # injected faults reported by live workers (crash/hang die with theirs)
    worker_crashes: int = 0
    worker_hangs: int = 0
    worker_restarts: int = 0
    generator_restarts: int = 0
    generator_hangs: int = 0  # generators alive but not answering requests within faults.step_timeout_s
    episodes_dropped: int = 0  # unfinished episodes discarded (env fault, lost worker, failed request)
    episodes_dropped_with_group: int = 0  # GRPO: finished episodes of a group that lost a member
    restart_times: List[float] = field(default_factory=list)  # wall clock of each restart

    def as_dict(self) -> dict:
        return asdict(self)


def _is_actor_death(exc: BaseException) -> bool:
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


def gather_with_deadline(ray, refs: List[Optional[object]], timeout: float, report: FaultReport,
                         on_failure: Callable[[int, str], None]) -> List[Optional[object]]:
    """Results of one call per worker (None where `refs` has None). A worker whose call did not
    finish within `timeout` (hung) or whose process died gets None; it is counted in `report`
    and handed to `on_failure(index, reason)`. Other exceptions propagate."""
    live = [r for r in refs if r is not None]
    ready = set(ray.wait(live, num_returns=len(live), timeout=timeout)[0]) if live else set()
    out: List[Optional[object]] = []
    for w, ref in enumerate(refs):
        if ref is None:
            out.append(None)
            continue
        if ref not in ready:
            report.worker_hangs += 1
            on_failure(w, f"no answer in {timeout:.0f} s")
            out.append(None)
            continue
        try:
            out.append(ray.get(ref))
        except Exception as e:
            if not _is_actor_death(e):
                raise
            report.worker_crashes += 1
            on_failure(w, f"process died ({type(e).__name__})")
            out.append(None)
    return out


def recreate_generator(session, i: int, incarnation: int, report: FaultReport) -> None:
    """Kill generator i (if it still runs) and put a new replica, with the trainer's current
    weights, in its place in `session.generators`; counted in `report`."""
    try:
        session.backend.ray.kill(session.generators[i], no_restart=True)
    except Exception:  # already gone
        pass
    new = session.make_generator(i, incarnation)
    if session.trainer is not None:  # an evaluation-only session has no trainer
        session.backend.get(new.set_weights.remote(session.trainer.get_weights.remote()))
    session.generators[i] = new
    if session.weights is not None:
        session.weights.open()  # a collective channel cannot take a new member: a new epoch
    report.generator_restarts += 1
    report.restart_times.append(time.time())


class Supervisor:
    def __init__(self, session, on_lost: Callable[[str, int], None], step_timeout_s: float, max_restarts: int,
                 report: Optional[FaultReport] = None):
        self.s, self.b = session, session.backend
        self.on_lost = on_lost  # (group key, episodes) of a worker that was replaced
        self.step_timeout_s = step_timeout_s
        self.start_timeout_s = session.cfg.faults.start_timeout_s  # a worker's start
        self.first_reset_timeout_s = session.cfg.faults.first_reset_timeout_s
        self.max_restarts = max_restarts
        self.report = report or FaultReport()
        n = len(session.env_workers)
        self.inflight: List[Counter] = [Counter() for _ in range(n)]  # group key -> episodes assigned, not drained
        self.incarnation = [0] * n
        self.gen_incarnation = [0] * len(session.generators)
        self.failed_requests_seen = [0] * n
        self.start_args: tuple = ()  # start_async arguments after the generator handles
        self.injected: Dict[tuple, int] = {}
        self.env_faults: Dict[tuple, int] = {}  # (worker, incarnation) -> faults caught inside it
        self.fault_times: List[float] = []  # wall clock when a new caught env fault was first seen

    # --- bookkeeping --------------------------------------------------------------------
    def assigned(self, w: int, keys: List[str]) -> None:
        self.inflight[w].update(keys)

    def settled(self, w: int, key: str) -> None:
        """One episode of `key` left worker w (drained, or dropped and reported by it)."""
        self.inflight[w][key] -= 1
        if self.inflight[w][key] <= 0:
            del self.inflight[w][key]

    # --- calls with a deadline ----------------------------------------------------------------
    def call_all(self, method: str, *args, timeout: Optional[float] = None) -> List[Optional[object]]:
        """`method` on every env worker; None for a worker that died or did not answer in time
        (that worker is replaced before returning)."""
        ray = self.b.ray
        refs = [getattr(w, method).remote(*args) for w in self.s.env_workers]
        # Chunk steps run on the worker's threads, so its actor answers even while an env hangs
        # (that is caught by `longest_step_s`); a silent actor is wedged or still starting: be patient.
        timeout = max(60.0, self.step_timeout_s) if timeout is None else timeout
        return gather_with_deadline(ray, refs, timeout, self.report,
                                    lambda w, why: self.replace_worker(w, f"{why} ({method})"))

    def poll(self) -> tuple:
        """(statuses, drains) of every worker in one round trip each; None for a worker that
        was replaced (its drained episodes are discarded: they were reported lost with it)."""
        polls = self.call_all("poll")
        statuses = self.check([p["status"] if p is not None else None for p in polls])
        drains = [p["drain"] if p is not None and st is not None else None for p, st in zip(polls, statuses)]
        return statuses, drains

    def check(self, statuses: Optional[List[Optional[dict]]] = None) -> List[Optional[dict]]:
        """Statuses of every worker (None for one just replaced); restarts hung ones."""
        statuses = self.call_all("async_status") if statuses is None else list(statuses)
        for w, st in enumerate(statuses):
            if st is None:
                continue
            life = (w, self.incarnation[w])
            if st["env_faults"] > self.env_faults.get(life, 0):
                self.env_faults[life] = st["env_faults"]
                self.report.env_faults_caught = sum(self.env_faults.values())
                self.fault_times.append(time.time())
            hung = self._overdue(st)
            if hung:
                self.report.worker_hangs += 1
                self.replace_worker(w, hung, stack=True)
                statuses[w] = None
            elif st["failed_requests"] > self.failed_requests_seen[w]:
                self.failed_requests_seen[w] = st["failed_requests"]
                self.check_generators()
        self._restart_hung_generators(statuses)
        return statuses

    def _overdue(self, st: dict) -> str:
        """Why a worker's slot is hung ('' if none is): a chunk step or reset past the step
        timeout, or a slot's first reset (EGL contexts, simulator caches) past its own timeout."""
        limits = (("longest_step_s", "a chunk step", self.step_timeout_s, "faults.step_timeout_s"),
                  ("longest_reset_s", "a reset", self.step_timeout_s, "faults.step_timeout_s"),
                  ("longest_first_reset_s", "a slot's first reset", self.first_reset_timeout_s,
                   "faults.first_reset_timeout_s"))
        for key, what, limit, knob in limits:
            if st.get(key, 0.0) > limit:
                return f"{what} running for {st[key]:.1f} s (> {knob}={limit:g})"
        return ""

    def start_all(self) -> None:
        """start_async on every env worker, within the start timeout (env construction
        included); one that does not answer is replaced like a hung worker."""
        self.call_all("start_async", self.s.generators, *self.start_args, timeout=self.start_timeout_s)

    def _restart_hung_generators(self, statuses: List[Optional[dict]]) -> None:
        """A generator that is alive (it answers pings) but left a request unanswered for longer
        than the step timeout is wedged: kill it; its waiting requests fail, their episodes are
        dropped and counted by the env workers, and a new replica takes over."""
        ages = [st.get("oldest_request_s", []) for st in statuses if st is not None]
        hung = [g for g in range(len(self.s.generators)) if max((a[g] for a in ages if g < len(a)), default=0.0)
                > self.step_timeout_s]
        for g in hung:
            self.report.generator_hangs += 1
            self._replace_generator(g, f"a request unanswered for more than faults.step_timeout_s="
                                       f"{self.step_timeout_s} s")
        if hung:
            self.call_all("set_generators", self.s.generators)

    # --- restarts -----------------------------------------------------------------------------
    def replace_worker(self, w: int, reason: str, stack: bool = False) -> None:
        """Kill env worker w and start a new one; `stack`: print its Python stacks first (a hang)."""
        from rlvla3.runtime.remote_wait import WorkersLost, actor_label, actor_stack

        label = actor_label(self.s.env_workers[w])
        dump = actor_stack(self.s.env_workers[w]) if stack else ""
        if dump:
            print(f"supervisor: env worker {w} ({label}) Python stack:\n{dump}", flush=True)
        if self.report.worker_restarts >= self.max_restarts:
            raise WorkersLost(f"env worker {w} ({label}): {reason}; faults.max_worker_restarts={self.max_restarts} "
                              f"restarts already spent, giving up")
        print(f"supervisor: env worker {w} ({label}): {reason}; restarting it", flush=True)
        try:
            self.b.ray.kill(self.s.env_workers[w], no_restart=True)
        except Exception:  # already gone
            pass
        lost, self.inflight[w] = self.inflight[w], Counter()
        for key, n in lost.items():
            self.on_lost(key, n)
        self.incarnation[w] += 1
        new = self.s.make_env_worker(w, self.incarnation[w])
        self.s.env_workers[w] = new
        self.failed_requests_seen[w] = 0
        if self.start_args:
            self.b.get(new.start_async.remote(self.s.generators, *self.start_args), timeout_s=self.start_timeout_s,
                       what=f"the replacement of env worker {w} (start_async)", actors=[new])
        self.report.worker_restarts += 1
        self.report.restart_times.append(time.time())

    def check_generators(self) -> None:
        """Re-create generators that died; hand the new handles to every env worker."""
        ray = self.b.ray
        refs = [g.ping.remote() for g in self.s.generators]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.step_timeout_s)
        replaced = False
        for i, ref in enumerate(refs):
            alive = ref in ready
            if alive:
                try:
                    ray.get(ref)
                except Exception as e:
                    if not _is_actor_death(e):
                        raise
                    alive = False
            if alive:
                continue
            self._replace_generator(i, "dead")
            replaced = True
        if replaced:
            self.call_all("set_generators", self.s.generators)

    def _replace_generator(self, i: int, reason: str) -> None:
        print(f"supervisor: generator {i} is {reason}; restarting it", flush=True)
        self.gen_incarnation[i] += 1
        recreate_generator(self.s, i, self.gen_incarnation[i], self.report)

    def note_injected(self, w: int, count: int) -> None:
        """A live worker's running total of injected faults (per process life)."""
        self.injected[(w, self.incarnation[w])] = count
        self.report.faults_injected_reported = sum(self.injected.values())
