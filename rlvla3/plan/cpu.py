"""CPU contention: the machine's cores shared by processor sharing.

On a 2-core machine the trainer, the generator (both on the CPU), the env workers' transport and
the driver all want a core; a stage measured alone at full speed runs slower in the pipeline.
Linux's scheduler shares the cores fairly between runnable threads, which is processor sharing:
with n runnable single-threaded jobs on C cores, each progresses at min(1, C / n) CPU-seconds per
second. `CpuPool` runs jobs of a given CPU work under that rule; `events.Server(pool=...)` makes a
process (one job at a time) whose jobs are CPU work in the pool.

Load that no modelled process carries (Ray's daemons, other users of a shared machine, the
hypervisor's steal) is taken off the capacity as a constant.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

from rlvla3.plan.events import Clock

EPS = 1e-9  # CPU-seconds: a job this close to done is done (float error)


@dataclass
class CpuCosts:
    """What the processes of one run ask of the CPU (`profile_from_bench` reads it from the run's
    per-role CPU accounting, `modes.*.cpu.by_role`). cores 0: contention not modelled."""

    cores: float = 0.0
    background_cores: float = 0.0  # Ray daemons, idle workers, other processes, steal
    generator_on_cpu: bool = False  # its forward passes are CPU work (policy.device=cpu)
    trainer_on_cpu: bool = False
    trainer_ms_per_sample: float = 0.0  # CPU per trained sample, in its training spans or not (receiving it)
    env_ms_per_decision: float = 0.0  # env workers' CPU per slot decision beyond the chunk (transport, obs)
    driver_ms_per_decision: float = 0.0  # the driver's CPU per decision (collect, queue, admission)
    generator_ms_per_request: float = 0.0  # generator CPU per request outside its forward (receive, reply)
    # Scheduler weights (Linux nice: 1024 / 1.25^nice): Ray starts its workers at nice 15, the
    # driver runs at 0, rollout.nice lowers the env workers and generators further.
    trainer_weight: float = 1.0
    rollout_weight: float = 1.0
    driver_weight: float = 1.0


class CpuPool:
    """`run(work_s, done, *args, weight=1)`: a job of work_s CPU-seconds; done(*args) when it has had
    them. Runnable jobs share the capacity in proportion to their weights (the scheduler's nice
    weights), none faster than one core: equal weights give min(1, capacity / jobs) each."""

    def __init__(self, clock: Clock, cores: float, background_cores: float = 0.0):
        if cores <= 0:
            raise ValueError("a CPU pool needs cores > 0")
        self.clock = clock
        self.capacity = max(cores - background_cores, 0.05 * cores)  # never stalls outright
        self.jobs: Dict[int, List] = {}  # id -> [remaining work s, weight, rate, done, args]
        self._ids = itertools.count()
        self._t = 0.0
        self._gen = 0  # stale completion events carry an older generation and are ignored
        self.work_done_s = 0.0  # CPU-seconds served (what per-role accounting would report)

    def run(self, work_s: float, done: Callable, *args, weight: float = 1.0) -> None:
        if work_s <= 0:
            self.clock.after(0.0, done, *args)
            return
        self._advance()
        self.jobs[next(self._ids)] = [work_s, weight, 0.0, done, args]
        self._reschedule()

    def _share(self) -> None:
        """Water-filling: the heaviest job first; a share above one core is capped and the rest
        of the capacity goes to the others by weight."""
        cap, wsum = self.capacity, sum(j[1] for j in self.jobs.values())
        for j in sorted(self.jobs.values(), key=lambda j: -j[1]):
            j[2] = min(1.0, cap * j[1] / wsum) if wsum > 0 else 0.0
            cap, wsum = cap - j[2], wsum - j[1]

    def _advance(self) -> None:
        dt = self.clock.now - self._t
        if dt > 0:
            for j in self.jobs.values():
                j[0] -= dt * j[2]
                self.work_done_s += dt * j[2]
        self._t = self.clock.now

    def _reschedule(self) -> None:
        self._gen += 1
        if self.jobs:
            self._share()
            left = min(max(j[0], 0.0) / j[2] for j in self.jobs.values())
            self.clock.after(left, self._complete, self._gen)

    def _complete(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._advance()
        finished: List[Tuple[Callable, tuple]] = []
        for k in [k for k, j in self.jobs.items() if j[0] <= EPS]:
            _, _, _, done, args = self.jobs.pop(k)
            finished.append((done, args))
        self._reschedule()
        for done, args in finished:
            done(*args)
