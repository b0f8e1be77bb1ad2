"""Asynchronous schedules: `async-rollout` and `full`, over the same workers as `sync`.

The driver is the experience stream and the admission controller:
- env workers run per-slot asynchronous loops (each slot asks a generator when *it* is
  ready) on episodes the driver admitted under the staleness bound;
- finished episodes are drained, turned into samples once (GRPO groups released when their
  last episode ends; PPO episodes as they finish), and filtered for freshness;
- `full` streams micro-batches to the trainer as soon as they are ready (one optimizer
  step per global batch); `async-rollout` hands the trainer whole global batches;
- after every optimizer step the new weights are published without waiting: generators
  swap them in between two batches.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, Dict, List, Optional

import numpy as np

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience import ExperienceStats, GroupAssembler, pending_bootstrap, ppo_samples, set_bootstrap
from rlvla3.core.sample_queue import SampleQueue
from rlvla3.core.staleness import StalenessController
from rlvla3.core.stats import Histogram
from rlvla3.core.types import SampleBatch
from rlvla3.envs.factory import env_config
from rlvla3.runtime.config import envs_per_worker
from rlvla3.runtime.remote_wait import RemoteTimeout, WorkersLost
from rlvla3.runtime.supervisor import Supervisor


class AsyncDriver:
    def __init__(self, session, loop):
        self.s, self.loop = session, loop
        cfg = session.cfg
        self.cfg, self.a, self.r = cfg, cfg.algo, cfg.rollout
        self.b = session.backend
        self.grpo = self.a.name == "grpo"
        self.unit = self.r.group_size if self.grpo else 1  # episodes admitted together
        self.unit_samples = self.unit * session.horizon  # worst-case decisions of one unit
        self.streaming = cfg.run.mode == "full"
        # One policy version per global batch (streamed or not): the window is in global batches.
        self.ctrl = StalenessController(self.a.staleness, self.a.global_batch)
        self.sampler = GroupSampler(len(session.instructions), env_config(cfg).num_init_states, self.unit,
                                    cfg.run.seed + 31, prefix="a")
        self.assembler = GroupAssembler(self.r.group_size, self.a.gamma, self.a.filter_degenerate_groups,
                                       self.a.grpo_discount) \
            if self.grpo else None
        self.unit_left: Dict[str, int] = {}  # group key -> episodes not yet finished
        self.unit_produced: Dict[str, int] = {}
        self.unit_reserved: Dict[str, int] = {}  # group key -> samples it reserved (the expected count)
        self.queue = SampleQueue()
        self.version = session.backend.get(session.trainer.get_version.remote())
        self.ctrl.set_version(self.version)
        self.staleness = Histogram()
        self.unstepped = 0
        self._t_gen_stats = 0.0
        self.worker_status = []
        fc = cfg.faults
        self.sup = Supervisor(session, self.drop_episodes, fc.step_timeout_s, fc.max_worker_restarts,
                              session.fault_report)
        self.broken = set()  # GRPO groups that lost an episode: their other episodes are dropped too
        self.progress = []  # (wall time, env steps so far): throughput before / after faults
        self.steps_by_worker: Dict[tuple, int] = {}  # (worker, incarnation) -> its running env-step total

    # --- admission -----------------------------------------------------------------------
    def admit(self, status: List[Optional[dict]]) -> None:
        """Hand out admitted episodes, keeping about one assignment queued per slot. Load =
        running + queued episodes, so a throttled window still spreads work over all workers.
        `status`: the workers' statuses of this tick (None for one just replaced)."""
        envs = envs_per_worker(self.r)
        queued = [st["queued_assignments"] + envs - st["idle_envs"] if st else 0 for st in status]
        while min(queued) < 2 * envs:
            reserve = self.ctrl.reservation(self.unit_samples)
            if not self.ctrl.try_admit(reserve):
                break
            batch = self.sampler.draw(self.unit)
            key = batch[0].group_key
            self.unit_left[key], self.unit_produced[key], self.unit_reserved[key] = self.unit, 0, reserve
            per_worker: Dict[int, list] = {}
            for a in batch:  # spread a group over the least-loaded workers
                w = int(np.argmin(queued))
                queued[w] += 1
                per_worker.setdefault(w, []).append(a)
            for w, items in per_worker.items():
                self.sup.assigned(w, [a.group_key for a in items])
                self.s.env_workers[w].add_assignments.remote(items)

    # --- experience ------------------------------------------------------------------------
    def collect(self, drains: Optional[List[Optional[dict]]] = None) -> tuple:
        drains = self.sup.call_all("drain") if drains is None else drains
        episodes, outcomes = [], []
        for w, d in enumerate(drains):
            if d is None:  # replaced: what it held was reported lost
                continue
            self.sup.note_injected(w, d["faults_injected"])
            for key in d["dropped_keys"]:  # env faults caught inside the worker
                self.sup.settled(w, key)
                self.drop_episodes(key, 1)
            for ep in d["episodes"]:
                self.sup.settled(w, ep.group_key)
            episodes += d["episodes"]
            outcomes += d["outcomes"]
        # drain reports each live worker's running total; a restarted worker starts from zero
        for w, d in enumerate(drains):
            if d is not None:
                self.steps_by_worker[(w, self.sup.incarnation[w])] = d["env_steps"]
        env_steps = sum(self.steps_by_worker.values())
        if not self.grpo:
            episodes = self._bootstrap(episodes)
        stats = ExperienceStats()
        for ep in episodes:
            if ep.group_key not in self.unit_left:  # its unit was settled: never count it twice
                print(f"episode of unit {ep.group_key!r} arrived after the unit was settled: ignored", flush=True)
                continue
            if ep.group_key in self.broken:  # its group lost an episode: it can never complete
                self.sup.report.episodes_dropped_with_group += 1
                stats.episodes_dropped += 1
                self.unit_left[ep.group_key] -= 1
                self._settle(ep.group_key)
                continue
            if self.grpo:
                batch, st = self.assembler.add(ep)
            else:
                batch, st = ppo_samples([ep], self.a.gamma, self.a.gae_lambda)
            stats.merge(st)
            key = ep.group_key
            self.unit_left[key] -= 1
            if batch is not None:
                self.queue.put(batch)
                self.unit_produced[key] += len(batch)
            self._settle(key)
        return outcomes, env_steps, stats

    def _bootstrap(self, episodes: list) -> list:
        """PPO: V(s_T) of the episodes cut by a time limit that their observation does not show,
        in one inference for the tick's episodes, waited for at most faults.step_timeout_s. Those
        left without it (generator dead or hung: the supervisor replaces it) are dropped, counted."""
        waiting, final_obs = pending_bootstrap(episodes)
        if not waiting:
            return episodes
        timeout = self.cfg.faults.step_timeout_s
        ref = self.s.generators[0].infer_batch.remote(final_obs, True)
        ready, _ = self.b.ray.wait([ref], timeout=timeout)
        values, why = None, f"no answer in {timeout:.0f} s"
        if ready:
            try:
                values = self.b.get(ref).values
            except Exception as e:  # the generator died
                why = repr(e)
        if values is not None:
            set_bootstrap(waiting, values)
            return episodes
        print(f"bootstrap values of {len(waiting)} episodes not computed ({why}): episodes dropped", flush=True)
        for ep in waiting:
            self.drop_episodes(ep.group_key, 1)
        return [ep for ep in episodes if ep.bootstrap_obs is None]

    def _settle(self, key: str) -> None:
        if self.unit_left[key] <= 0:  # unit over: settle its reservation against what it delivered
            self.ctrl.finish(self.unit_reserved.pop(key), self.unit_produced.pop(key))
            del self.unit_left[key]
            self.broken.discard(key)

    def drop_episodes(self, key: str, n: int) -> None:
        """`n` unfinished episodes of unit `key` are lost (env fault, dead or hung worker)."""
        self.sup.report.episodes_dropped += n
        if key not in self.unit_left:
            return
        if self.grpo and key not in self.broken:
            self.broken.add(key)
            self.sup.report.episodes_dropped_with_group += len(self.assembler.pending.pop(key, []))
        self.unit_left[key] -= min(n, self.unit_left[key])  # a unit's count never goes negative
        self._settle(key)

    def fresh(self, batch: SampleBatch) -> SampleBatch:
        """Drop (and refund) the samples too stale to train on."""
        mask = self.ctrl.filter(batch.versions, self.version)
        dropped = int((~mask).sum())
        if dropped:
            self.ctrl.refund(dropped)
            batch = batch.take(np.flatnonzero(mask))
        return batch

    def take_fresh(self, n: int) -> Optional[SampleBatch]:
        """Exactly n fresh samples (stale ones replaced by the next in the queue), or None."""
        batch = self.queue.take_fresh(n, self.fresh)
        if batch is not None:
            for v in batch.versions:
                self.staleness.add(int(self.version - v))
        return batch

    # --- the loop ----------------------------------------------------------------------------
    def queue_bound(self) -> int:
        """Most samples that can wait for the trainer: admission keeps reservations within
        eta + 1 global batches (plus one unit when the trainer starves), and each running
        env can overshoot its reservation by at most one episode."""
        envs = self.r.num_env_workers * envs_per_worker(self.r)
        return (self.a.staleness + 1) * self.a.global_batch + self.unit_samples + envs * self.s.horizon

    def run(self) -> None:
        s, b, a = self.s, self.b, self.a
        s.publish_weights()  # a resumed run: generators still hold the initial policy, all its samples would be stale
        self.sup.start_args = (self.cfg.generator.router, len(s.generators), self.r.envs_per_slot,
                               self.r.coalesce_ms, self.cfg.generator.request_transport)
        self.sup.start_all()
        env_steps_seen = 0
        pending_micro: Deque = deque()  # refs of accumulate() calls in flight
        step_ref, in_global = None, 0
        outcomes_acc, exp_acc, last_log = [], ExperienceStats(), time.perf_counter()
        results_acc, trained_acc = [], 0
        global_ids = []  # ids of the micro-batches of the global batch being accumulated
        new_steps, last_poll = 0, 0.0
        poll_s = self.r.poll_ms / 1000.0  # status + drain of every env worker, one round trip each
        orderly = True
        try:
            while not self.loop.should_stop():
                progressed = False
                if time.perf_counter() - last_poll >= poll_s:
                    last_poll = time.perf_counter()
                    statuses, drains = self.sup.poll()  # also restarts dead or hung workers
                    self.admit(statuses)
                    outcomes, new_steps, st = self.collect(drains)  # drain reports the workers' running totals
                    outcomes_acc += outcomes
                    exp_acc.merge(st)
                # trainer: streaming micro-batches, or whole global batches
                if step_ref is not None and _ready(b, step_ref):
                    results = b.get(step_ref)
                    results = results if isinstance(results, list) else [results]
                    results_acc += results
                    self.version += int(any(not r.skipped for r in results))
                    self.ctrl.set_version(self.version)
                    s.publish_weights_async(self.version)
                    step_ref = None
                    progressed = True
                if step_ref is None:
                    if self.streaming:
                        while pending_micro and _ready(b, pending_micro[0]):
                            b.get(pending_micro.popleft())
                        need = min(a.micro_batch, a.global_batch - in_global)
                        while len(pending_micro) < 2 and in_global < a.global_batch and self.queue.size >= need:
                            mb = self.take_fresh(need)
                            if mb is None:
                                break
                            global_ids.append(mb.sample_ids)
                            pending_micro.append(s.trainer.accumulate.remote(mb, a.global_batch))  # raw advantages: normalised over the global batch by the trainer
                            in_global += len(mb)
                            need = min(a.micro_batch, a.global_batch - in_global)
                            progressed = True
                        if in_global >= a.global_batch:
                            step_ref, in_global = s.trainer.step.remote(), 0
                            self.loop.trained_ids.extend(global_ids)
                            trained_acc += sum(len(i) for i in global_ids)
                            global_ids = []
                            pending_micro.clear()  # the actor runs calls in order: step follows them
                    elif self.queue.size >= a.global_batch:
                        batch = self.take_fresh(a.global_batch)
                        if batch is not None:
                            self.loop.trained_ids.append(batch.sample_ids)
                            step_ref = s.trainer.train_batch.remote(batch)
                            trained_acc += len(batch)
                            progressed = True
                now = time.perf_counter()
                if now - last_log >= 1.0 or results_acc:
                    self._log(outcomes_acc, new_steps - env_steps_seen, exp_acc, results_acc, trained_acc)
                    env_steps_seen = new_steps
                    outcomes_acc, exp_acc, results_acc, trained_acc, last_log = [], ExperienceStats(), [], 0, now
                if not progressed:
                    time.sleep(0.005)
        except (RemoteTimeout, WorkersLost):
            orderly = False  # a wedged worker would hold an orderly stop; the session's shutdown ends them all
            raise
        finally:
            self.sup.start_args = ()  # a worker replaced from now on stays idle
            if orderly:
                self._stop(step_ref, global_ids, outcomes_acc, exp_acc, results_acc, trained_acc, env_steps_seen)

    def _stop(self, step_ref, global_ids, outcomes_acc, exp_acc, results_acc, trained_acc, env_steps_seen) -> None:
        """Stop the slots, finish the update in flight and account for what is left."""
        self.sup.check()  # a worker hung right now is replaced (and counted) instead of delaying the stop
        self.worker_status = [st for st in self.sup.call_all("stop_async", timeout=60.0) if st is not None]
        if step_ref is not None:  # the update in flight still counts
            new = self.b.get(step_ref, what="the trainer's update in flight at the stop", actors=[self.s.trainer])
            new = new if isinstance(new, list) else [new]
            results_acc += new
            self.version += int(any(not r.skipped for r in new))
        outcomes, steps_total, st = self.collect()  # episodes that ended while stopping
        outcomes_acc += outcomes
        exp_acc.merge(st)
        # A partly accumulated global batch is never stepped: its samples are reported, not trained.
        self.unstepped = int(sum(len(i) for i in global_ids))
        self._log(outcomes_acc, steps_total - env_steps_seen, exp_acc, results_acc, trained_acc)

    def _generator_stats(self) -> dict:
        """Batcher statistics of every generator (realised batch, queueing delay, utilisation)."""
        out = {}
        try:
            stats = self.b.get([g.stats.remote() for g in self.s.generators], timeout_s=self.sup.step_timeout_s,
                               what="generator stats", actors=self.s.generators)
        except Exception:  # a generator died: the supervisor replaces it
            self.sup.check_generators()
            return out
        for i, st in enumerate(stats):
            for k in ("mean_batch", "queue_ms_p50", "queue_ms_p95", "queue_ms_p99", "utilization", "swaps",
                      "fired_by_size", "fired_by_timeout", "samples"):
                if k in st:
                    out[f"generator{i}/{k}"] = float(st[k])
        return out

    def _log(self, outcomes, env_steps, exp, results, trained) -> None:
        c = self.ctrl.counters
        now = time.perf_counter()
        gen = {}
        if now - self._t_gen_stats >= 5.0:  # a round trip to each generator: not every tick
            gen, self._t_gen_stats = self._generator_stats(), now
        extra = {**gen, "staleness/mean": self.staleness.mean(), "staleness/dropped_samples_total": c.dropped_samples,
                 "staleness/admission_refused_total": c.refused, "staleness/reserved": self.ctrl.reserved,
                 "queue/samples_waiting": self.queue.size}
        for k, v in self.staleness.as_dict().items():
            extra[f"staleness/hist_{k}"] = v
        self.loop.record_iteration(env_steps=env_steps, outcomes=outcomes, exp=exp, results=results,
                                   version=self.version, timings={}, trained=trained, extra=extra)
        self.progress.append((time.time(), self.loop.env_steps))


def _ready(backend, ref) -> bool:
    ready, _ = backend.ray.wait([ref], timeout=0)
    return bool(ready)


def run_async(session, loop) -> None:
    driver = AsyncDriver(session, loop)
    driver.run()
    # Sample accounting: everything produced was trained, dropped as stale (counted) or is
    # still waiting in the queue when the run stops.
    trained = int(sum(len(ids) for ids in loop.trained_ids))
    loop.async_report = {"staleness_hist": driver.staleness.as_dict(),
                         "samples_produced": driver.queue.total_put, "samples_trained": trained,
                         "samples_dropped_stale": driver.ctrl.counters.dropped_samples,
                         "samples_left_in_queue": driver.queue.size,
                         "samples_unstepped_at_stop": driver.unstepped,
                         "admission_refused": driver.ctrl.counters.refused, "workers": driver.worker_status,
                         "queue_high_water_samples": driver.queue.high_water,
                         "queue_bound_samples": driver.queue_bound()}
    loop.fault_report = fault_summary(driver)


def fault_summary(driver) -> dict:
    """summary.json -> faults: what was injected, what was done, and throughput around it."""
    out = driver.sup.report.as_dict()
    times = out.pop("restart_times") + driver.sup.fault_times
    out["first_fault_wall_s"] = out["last_fault_wall_s"] = None
    prog = driver.progress
    if prog:
        t0 = prog[0][0]
        rate = lambda a, b: (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else None  # noqa: E731
        if times:
            first, last = min(times), max(times)
            before = [p for p in prog if p[0] <= first]
            after = [p for p in prog if p[0] >= last]
            out["first_fault_wall_s"], out["last_fault_wall_s"] = round(first - t0, 1), round(last - t0, 1)
            out["env_steps_per_s_before"] = rate(before[0], before[-1]) if len(before) > 1 else None
            out["env_steps_per_s_after"] = rate(after[0], after[-1]) if len(after) > 1 else None
        out["env_steps_per_s_overall"] = rate(prog[0], prog[-1]) if len(prog) > 1 else None
    return out
