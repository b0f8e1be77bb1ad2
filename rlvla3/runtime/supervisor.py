"""Keeps the asynchronous schedule's env workers and generators alive.

Every driver tick the supervisor asks each env worker for its status with a deadline. A
worker that does not answer (its process died: Ray actor error) or that reports a chunk
step older than `faults.step_timeout_s` (a hung simulator) is killed and re-created, and
the experience stream is told it lost the worker (`report_lost`): it drops the worker's
episodes (counted) and settles their staleness reservation. A generator whose requests fail is pinged; if it is
dead it is re-created with the current weights and the env workers are told to use it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from rlvla3.runtime.remote_wait import WorkersLost


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
    restart_times: List[float] = field(default_factory=list)  # wall clock of each restart

    def spend_worker_restart(self, max_restarts: int, who: str) -> None:
        """Count an env worker's restart, or raise WorkersLost once faults.max_worker_restarts are spent."""
        if self.worker_restarts >= max_restarts:
            raise WorkersLost(f"{who}; faults.max_worker_restarts={max_restarts} restarts already spent, giving up")
        self.worker_restarts += 1
        self.restart_times.append(time.time())


def kill_quietly(ray, actor) -> None:
    """Kill an actor that may be gone already (a hung one would hold its CPU)."""
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone
        pass


def call_result(ray, ref, ready) -> Tuple[str, object]:
    """How a call sent to an actor ended: ("ok", its result), ("hung", None) when `ref` is not
    among the `ready` ones, or ("died", the Ray actor error) when the actor's process died.
    Other exceptions (the call itself raised) propagate."""
    from ray.exceptions import RayActorError

    if ref not in ready:
        return "hung", None
    try:  # ready: ray.wait fetched it, so this returns at once; the deadline guards a lost object
        return "ok", ray.get(ref, timeout=60.0)
    except RayActorError as e:
        return "died", e


def gather_with_deadline(ray, refs: List[Optional[object]], timeout: float, report: FaultReport,
                         on_failure: Callable[[int, str], None]) -> List[Optional[object]]:
    """Results of one call per worker (None where `refs` has None). A worker whose call did not
    finish within `timeout` (hung) or whose process died gets None; it is counted in `report`
    and handed to `on_failure(index, reason)`. Other exceptions propagate."""
    live = [r for r in refs if r is not None]
    ready = set(ray.wait(live, num_returns=len(live), timeout=timeout)[0]) if live else set()
    out: List[Optional[object]] = []
    for w, ref in enumerate(refs):
        how, result = call_result(ray, ref, ready) if ref is not None else ("ok", None)
        if how == "hung":
            report.worker_hangs += 1
            on_failure(w, f"no answer in {timeout:.0f} s")
        elif how == "died":
            report.worker_crashes += 1
            on_failure(w, f"process died ({type(result).__name__})")
        out.append(result if how == "ok" else None)
    return out


def recreate_generator(session, i: int, incarnations: List[int], report: FaultReport, why: str) -> None:
    """Say `why`, kill generator i (if it still runs) and put a new replica, with the trainer's
    current weights, in its place in `session.generators`; counted in `report` and `incarnations[i]`."""
    print(f"{why}; restarting it", flush=True)
    incarnations[i] += 1
    kill_quietly(session.backend.ray, session.generators[i])
    new = session.make_generator(i, incarnations[i])
    if session.trainer is not None:  # an evaluation-only session has no trainer
        session.backend.get(new.set_weights.remote(session.weights.message()))
    session.generators[i] = new
    if session.weights is not None:
        session.weights.open()  # a collective channel cannot take a new member: a new epoch
    report.generator_restarts += 1
    report.restart_times.append(time.time())


class Supervisor:
    def __init__(self, session, on_worker_lost: Callable[[int], int], step_timeout_s: float, max_restarts: int,
                 report: Optional[FaultReport] = None):
        self.session, self.backend = session, session.backend
        self.on_worker_lost = on_worker_lost  # the experience stream's report_lost(worker)
        self.step_timeout_s = step_timeout_s
        self.start_timeout_s = session.cfg.faults.start_timeout_s  # a worker's start
        self.first_reset_timeout_s = session.cfg.faults.first_reset_timeout_s
        self.max_restarts = max_restarts
        self.report = report or FaultReport()
        n = len(session.env_workers)
        self.incarnation = [0] * n
        self.gen_incarnation = [0] * len(session.generators)
        self.failed_requests_seen = [0] * n
        self.start_args: tuple = ()  # start_async arguments after the generator handles; () = replacements stay idle
        self.injected: Dict[tuple, int] = {}
        self.steps: Dict[tuple, int] = {}  # (worker, incarnation) -> its running env-step total
        self.env_faults: Dict[tuple, int] = {}  # (worker, incarnation) -> faults caught inside it
        self.fault_times: List[float] = []  # wall clock when a new caught env fault was first seen

    # --- calls with a deadline ----------------------------------------------------------------
    def call_all(self, method: str, *args, timeout: Optional[float] = None) -> List[Optional[object]]:
        """`method` on every env worker; None for a worker that died or did not answer in time
        (that worker is replaced before returning)."""
        ray = self.backend.ray
        refs = [getattr(w, method).remote(*args) for w in self.session.env_workers]
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

    def start_all(self, *start_args) -> None:
        """start_async(generators, *start_args) on every env worker, and on every replacement
        until `stop_starting`, within the start timeout (env construction included); one that
        does not answer is replaced like a hung worker."""
        self.start_args = start_args
        self.call_all("start_async", self.session.generators, *start_args, timeout=self.start_timeout_s)

    def stop_starting(self) -> None:
        """A worker replaced from now on stays idle (the schedule is stopping)."""
        self.start_args = ()

    def _restart_hung_generators(self, statuses: List[Optional[dict]]) -> None:
        """A generator that is alive (it answers pings) but left a request unanswered for longer
        than the step timeout is wedged: kill it; its waiting requests fail, their episodes are
        dropped and counted by the env workers, and a new replica takes over."""
        ages = [st.get("oldest_request_s", []) for st in statuses if st is not None]
        hung = [g for g in range(len(self.session.generators))
                if max((a[g] for a in ages if g < len(a)), default=0.0) > self.step_timeout_s]
        self.report.generator_hangs += len(hung)
        self._replace_generators(hung, f"a request unanswered for more than faults.step_timeout_s="
                                       f"{self.step_timeout_s} s")

    # --- restarts -----------------------------------------------------------------------------
    def replace_worker(self, w: int, reason: str, stack: bool = False) -> None:
        """Kill env worker w and start a new one; `stack`: print its Python stacks first (a hang)."""
        from rlvla3.runtime.remote_wait import actor_label, actor_stack

        label = actor_label(self.session.env_workers[w])
        dump = actor_stack(self.session.env_workers[w]) if stack else ""
        if dump:
            print(f"supervisor: env worker {w} ({label}) Python stack:\n{dump}", flush=True)
        self.report.spend_worker_restart(self.max_restarts, f"env worker {w} ({label}): {reason}")
        print(f"supervisor: env worker {w} ({label}): {reason}; restarting it", flush=True)
        kill_quietly(self.backend.ray, self.session.env_workers[w])
        self.on_worker_lost(w)
        self.incarnation[w] += 1
        new = self.session.make_env_worker(w, self.incarnation[w])
        self.session.env_workers[w] = new
        self.failed_requests_seen[w] = 0
        if self.start_args:
            self.backend.get(new.start_async.remote(self.session.generators, *self.start_args),
                             timeout_s=self.start_timeout_s, what=f"the replacement of env worker {w} (start_async)",
                             actors=[new])

    def check_generators(self) -> None:
        """Re-create generators that died; hand the new handles to every env worker."""
        ray = self.backend.ray
        refs = [g.ping.remote() for g in self.session.generators]
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=self.step_timeout_s)[0])
        self._replace_generators([i for i, ref in enumerate(refs) if call_result(ray, ref, ready)[0] != "ok"], "dead")

    def _replace_generators(self, which: List[int], reason: str) -> None:
        """Re-create these generators; then hand the new handles to every env worker."""
        for i in which:
            recreate_generator(self.session, i, self.gen_incarnation, self.report,
                               f"supervisor: generator {i} is {reason}")
        if which:
            self.call_all("set_generators", self.session.generators)

    def note_drain(self, w: int, faults_injected: int, env_steps: int) -> None:
        """A live worker's running totals of injected faults and env steps (per process life:
        a restarted worker starts from zero)."""
        life = (w, self.incarnation[w])
        self.injected[life], self.steps[life] = faults_injected, env_steps
        self.report.faults_injected_reported = sum(self.injected.values())

    @property
    def env_steps(self) -> int:
        return sum(self.steps.values())

    def generator_stats(self) -> dict:
        """Batcher statistics of every generator (realised batch, queueing delay, utilisation)."""
        try:
            generators = self.session.generators
            stats = self.backend.get([g.stats.remote() for g in generators], timeout_s=self.step_timeout_s,
                                     what="generator stats", actors=generators)
        except Exception:  # a generator died: replace it
            self.check_generators()
            return {}
        keys = ("mean_batch", "queue_ms_p50", "queue_ms_p95", "queue_ms_p99", "late_ms_mean", "late_ms_p95",
                "utilization", "swaps", "fired_by_size", "fired_by_timeout", "samples")
        return {f"generator{i}/{k}": float(st[k]) for i, st in enumerate(stats) for k in keys if k in st}


def fault_summary(report: FaultReport, fault_times: List[float], progress: List[tuple], drops: dict) -> dict:
    """summary.json -> faults: what was injected, what was done (`drops`: the experience
    stream's episode counts), and throughput (`progress`: (wall time, env steps)) around it."""
    out = {**asdict(report), **drops}
    times = out.pop("restart_times") + fault_times
    out["first_fault_wall_s"] = out["last_fault_wall_s"] = None
    if progress:
        t0 = progress[0][0]
        rate = lambda a, b: (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else None  # noqa: E731
        if times:
            first, last = min(times), max(times)
            before = [p for p in progress if p[0] <= first]
            after = [p for p in progress if p[0] >= last]
            out["first_fault_wall_s"], out["last_fault_wall_s"] = round(first - t0, 1), round(last - t0, 1)
            out["env_steps_per_s_before"] = rate(before[0], before[-1]) if len(before) > 1 else None
            out["env_steps_per_s_after"] = rate(after[0], after[-1]) if len(after) > 1 else None
        out["env_steps_per_s_overall"] = rate(progress[0], progress[-1]) if len(progress) > 1 else None
    return out
