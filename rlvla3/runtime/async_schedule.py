"""Asynchronous schedules: `async-rollout` and `full`, over the same workers as `sync`.

Env workers run per-slot asynchronous loops: each slot asks a generator for its next action
when *it* is ready, on episodes the experience stream admitted under the staleness bound.
`AsyncSchedule.run` reads top to bottom; every tick it
1. polls the env workers (the supervisor replaces dead or hung ones), admits new episode
   groups and hands the finished episodes to the experience stream (`core/experience_stream.py`),
   which turns them into samples;
2. picks up a finished trainer update and publishes its weights without waiting: generators
   swap them in between two batches;
3. feeds the trainer fresh samples (`TrainerFeed`, below): micro-batches as soon as they
   are ready in `full`, whole global batches in `async-rollout`;
4. writes a metrics record about once a second.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, List, Optional, Tuple

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience import ExperienceStats, pending_bootstrap, set_bootstrap
from rlvla3.core.experience_stream import ExperienceStream, StreamSettings
from rlvla3.core.stats import Timers
from rlvla3.core.types import Episode, TrainResult
from rlvla3.envs.factory import env_config
from rlvla3.runtime.config import envs_per_worker
from rlvla3.runtime.remote_wait import RemoteTimeout, WorkersLost
from rlvla3.runtime.supervisor import Supervisor, fault_summary


class StreamStalled(RemoteTimeout):
    """Admission and the trainer waiting on each other: the run stops (exit code 4)."""


@dataclass
class _Interval:
    """What happened since the last metrics record, and the time of each stage (docs/metrics.md)."""

    t0: float = field(default_factory=time.perf_counter)
    outcomes: list = field(default_factory=list)
    exp: ExperienceStats = field(default_factory=ExperienceStats)
    results: list = field(default_factory=list)
    timers: Timers = field(default_factory=Timers)


class AsyncSchedule:
    def __init__(self, session, training):
        """`training`: the run's runtime.train_loop.TrainingRun (counters, logging, stop)."""
        self.session, self.training, self.cfg = session, training, session.cfg
        cfg, s = session.cfg, session
        settings = StreamSettings.from_config(cfg.algo, cfg.rollout, s.horizon)
        sampler = GroupSampler(len(s.instructions), env_config(cfg).num_init_states, settings.episodes_per_group,
                               cfg.run.seed + 31, prefix="a")
        self.stream = ExperienceStream(settings, sampler, version=s.backend.get(s.trainer.get_version.remote()))
        self.sup = Supervisor(s, self.stream.report_lost, cfg.faults.step_timeout_s, cfg.faults.max_worker_restarts,
                              s.fault_report)
        self.feed = TrainerFeed(s.backend, s.trainer, self.stream, cfg.algo.micro_batch, cfg.algo.global_batch,
                                cfg.run.mode == "full", training.trained_ids)
        self.envs = envs_per_worker(cfg.rollout)
        self.worker_status: List[dict] = []
        self.unstepped = 0  # samples of a global batch accumulated but never stepped (at the stop)
        self.progress: List[Tuple[float, int]] = []  # (wall time, env steps): throughput around faults
        self._env_steps_logged = self._trained_logged = 0
        self._t_gen_stats = 0.0
        self._closed_since: Optional[float] = None  # since when the stream has been closed (_check_stall)

    def run(self) -> None:
        s, r, transport = self.session, self.cfg.rollout, self.cfg.transport
        s.publish_weights()  # a resumed run: generators still hold the initial policy, all its samples would be stale
        self.sup.start_all(self.cfg.generator.router, len(s.generators), r.envs_per_slot, transport.coalesce_ms,
                           self.cfg.generator.request_transport, r.segment_chunks)
        interval, last_poll, t_last, orderly = _Interval(), 0.0, time.perf_counter(), True
        try:
            while not self.training.should_stop():
                t_tick = time.perf_counter()
                if not self.feed.busy:  # nothing in flight since the last tick: the trainer waited
                    # (counted from the interval's start at most: time before it belongs to the last one)
                    interval.timers.record("trainer_idle", t_tick - max(t_last, interval.t0))
                t_last = t_tick
                if t_tick - last_poll >= transport.poll_ms / 1000.0:  # one round trip per env worker
                    last_poll = t_tick
                    with interval.timers("poll"):
                        statuses, drains = self.sup.poll()  # also replaces dead or hung workers
                        self.admit(statuses)
                    with interval.timers("experience"):
                        self.collect(drains, interval)
                progressed = self.update_policy(interval)
                progressed = self.feed.feed() or progressed
                self._check_stall(t_tick)
                if time.perf_counter() - interval.t0 >= 1.0 or interval.results:
                    self.log(interval)
                    interval = _Interval()
                if not progressed:
                    time.sleep(0.005)
        except (RemoteTimeout, WorkersLost):
            orderly = False  # a wedged worker would hold an orderly stop; the session's shutdown ends them all
            raise
        finally:
            self.sup.stop_starting()
            if orderly:
                self.stop(interval)

    def _check_stall(self, now: float) -> None:
        """Stop, with the stream's counts, once the trainer has been idle for `faults.step_timeout_s`
        with nothing in flight, too few samples for it and no room to admit more."""
        if self.feed.busy or not self.stream.closed():
            self._closed_since = None
            return
        self._closed_since = self._closed_since or now
        if now - self._closed_since > self.cfg.faults.step_timeout_s:
            st = self.stream.status()
            raise StreamStalled(
                f"the experience stream stalled for {now - self._closed_since:.0f} s: no episode in flight, "
                f"{st.samples_waiting} samples waiting (too few for the trainer), the staleness window full "
                f"({st.samples_reserved} samples reserved, policy version {st.version}); a bug in the window's "
                "accounting, please report it with this message")

    def admit(self, statuses: List[Optional[dict]]) -> None:
        """Keep about one assignment queued per env. Load = running + queued episodes, so a
        throttled window still spreads work over all workers (None: a worker just replaced)."""
        loads = [st["queued_assignments"] + self.envs - st["idle_envs"] if st else 0 for st in statuses]
        for w, assignments in self.stream.admit(loads, 2 * self.envs):
            self.session.env_workers[w].add_assignments.remote(assignments)

    def collect(self, drains: List[Optional[dict]], interval: _Interval) -> None:
        """The finished episodes of every live worker into the stream (None: a replaced worker,
        whose episodes the stream was told it lost)."""
        delivered = []
        for w, d in enumerate(drains):
            if d is None:
                continue
            self.sup.note_drain(w, d["faults_injected"], d["env_steps"])
            for key in d["dropped_keys"]:  # env faults caught inside the worker
                self.stream.report_lost(w, key)
            delivered += [(w, ep) for ep in d["episodes"]]
            interval.outcomes += d["outcomes"]
        if not self.stream.grpo:
            delivered = self._bootstrap(delivered)
        late = self.stream.episodes_late
        interval.exp.merge(self.stream.add_episodes(delivered))
        if self.stream.episodes_late > late:
            print(f"{self.stream.episodes_late - late} episodes not in flight (their group had settled): ignored",
                  flush=True)

    def _bootstrap(self, delivered: List[Tuple[int, Episode]]) -> List[Tuple[int, Episode]]:
        """PPO: V(s_T) of the episodes cut by a time limit that their observation does not show,
        in one inference for the tick's episodes, waited for at most faults.step_timeout_s. Those
        left without it (generator dead or hung: the supervisor replaces it) are lost, counted."""
        waiting, final_obs = pending_bootstrap([ep for _, ep in delivered])
        if not waiting:
            return delivered
        b, timeout = self.session.backend, self.cfg.faults.step_timeout_s
        ref = self.session.generators[0].infer_batch.remote(final_obs, True)
        values, why = None, f"no answer in {timeout:.0f} s"
        if b.ray.wait([ref], timeout=timeout)[0]:
            try:
                values = b.get(ref).values
            except Exception as e:  # the generator died
                why = repr(e)
        if values is not None:
            set_bootstrap(waiting, values)
            return delivered
        print(f"bootstrap values of {len(waiting)} episodes not computed ({why}): episodes dropped", flush=True)
        for w, ep in delivered:
            if ep.bootstrap_obs is not None:
                self.stream.report_lost(w, ep.group_key)
        return [(w, ep) for w, ep in delivered if ep.bootstrap_obs is None]

    def update_policy(self, interval: _Interval) -> bool:
        """A finished update: the trainer's new version (it counts versions) goes to the stream
        and its weights to the generators, without waiting."""
        results = self.feed.finished_update()
        if results is None:
            return False
        interval.results += results
        before = self.stream.version
        self.stream.update_done(max((res.version for res in results), default=before))
        if self.stream.version > before:  # a skipped update changed no weights
            self.session.publish_weights_async(self.stream.version)
        return True

    def stop(self, interval: _Interval) -> None:
        """Stop the slots, finish the update in flight and account for what is left."""
        self.sup.check()  # a worker hung right now is replaced (and counted) instead of delaying the stop
        self.worker_status = [st for st in self.sup.call_all("stop_async", timeout=60.0) if st is not None]
        results, self.unstepped = self.feed.finish()  # a partly accumulated global batch is reported, not trained
        interval.results += results
        if results:  # the update in flight at the stop
            self.stream.update_done(max(res.version for res in results))
        self.collect(self.sup.call_all("drain"), interval)  # episodes that ended while stopping
        self.log(interval)

    def log(self, interval: _Interval) -> None:
        st, now = self.stream.status(), time.perf_counter()
        gen = {}
        if now - self._t_gen_stats >= 5.0:  # a round trip to each generator: not every tick
            gen, self._t_gen_stats = self.sup.generator_stats(), now
        extra = {**gen, "staleness/mean": st.staleness_mean,
                 "staleness/dropped_samples_total": st.samples_dropped_stale,
                 "staleness/admission_refused_total": st.admission_refused, "staleness/reserved": st.samples_reserved,
                 "queue/samples_waiting": st.samples_waiting,
                 **{f"staleness/hist_{k}": v for k, v in st.staleness_hist.items()}}
        spent = {name: t["total_s"] for name, t in interval.timers.summary().items()}
        timings = {"time/iteration_s": now - interval.t0,
                   **{f"time/{name}_s": spent.get(name, 0.0) for name in ("poll", "experience", "trainer_idle")}}
        env_steps, trained = self.sup.env_steps, self.feed.samples_trained
        self.training.record_iteration(env_steps=env_steps - self._env_steps_logged, outcomes=interval.outcomes,
                                       exp=interval.exp, results=interval.results, version=st.version,
                                       timings=timings, trained=trained - self._trained_logged, extra=extra)
        self._env_steps_logged, self._trained_logged = env_steps, trained
        self.progress.append((time.time(), self.training.env_steps))


class TrainerFeed:
    """Feeds the trainer from the experience stream without waiting for it: `full` streams
    micro-batches as the stream has them (`accumulate`, two in flight at most; the trainer
    normalises advantages over the global batch) and steps once per global batch;
    `async-rollout` hands over whole global batches (`train_batch`). One update is in flight
    at a time.
    """

    def __init__(self, backend, trainer, stream: ExperienceStream, micro_batch: int, global_batch: int,
                 streaming: bool, trained_ids: list):
        self.backend, self.trainer, self.stream = backend, trainer, stream
        self.micro_batch, self.global_batch, self.streaming = micro_batch, global_batch, streaming
        self.trained_ids = trained_ids  # sample ids of every global batch handed to an update (the run's record)
        self.samples_trained = 0  # their count
        self.update = None  # ref of the update in flight (step or train_batch)
        self.micro: Deque = deque()  # refs of accumulate() calls in flight
        self.global_ids: List = []  # sample ids of the global batch being accumulated

    @property
    def busy(self) -> bool:
        """The trainer has a call in flight (otherwise it waits for samples)."""
        return self.update is not None or bool(self.micro)

    def finished_update(self) -> Optional[List[TrainResult]]:
        """The results of the update in flight once it has finished; None before."""
        if self.update is None or not self._ready(self.update):
            return None
        results, self.update = self.backend.get(self.update), None
        return list(results)

    def feed(self) -> bool:
        """Hand the trainer what the stream has ready while no update is in flight; True if
        anything was handed over."""
        if self.update is not None:
            return False
        if not self.streaming:
            batch = self.stream.take(self.global_batch)  # None (and nothing taken) while too few wait
            if batch is None:
                return False
            self.update = self.trainer.train_batch.remote(batch)
            self._trained([batch.sample_ids])
            return True
        while self.micro and self._ready(self.micro[0]):
            self.backend.get(self.micro.popleft())
        fed, held = False, sum(len(i) for i in self.global_ids)
        while len(self.micro) < 2 and held < self.global_batch:
            mb = self.stream.take(min(self.micro_batch, self.global_batch - held))
            if mb is None:  # too few waiting (or fresh enough): nothing was taken
                break
            self.global_ids.append(mb.sample_ids)
            self.micro.append(self.trainer.accumulate.remote(mb, self.global_batch))
            held += len(mb)
            fed = True
        if held >= self.global_batch:
            self.update = self.trainer.step.remote()
            self._trained(self.global_ids)
            self.global_ids = []
            self.micro.clear()  # the actor runs calls in order: step follows them
        return fed

    def finish(self) -> tuple:
        """At the stop: (results of the update in flight, which still counts; samples of a
        partly accumulated global batch, which is never stepped)."""
        results = []
        if self.update is not None:
            results = list(self.backend.get(self.update, what="the trainer's update in flight at the stop",
                                      actors=[self.trainer]))
            self.update = None
        return results, int(sum(len(i) for i in self.global_ids))

    def _trained(self, ids: List) -> None:
        self.trained_ids.extend(ids)
        self.samples_trained += int(sum(len(i) for i in ids))

    def _ready(self, ref) -> bool:
        return bool(self.backend.ray.wait([ref], timeout=0)[0])


def run_async(session, training) -> None:
    schedule = AsyncSchedule(session, training)
    schedule.run()
    # Sample accounting: everything produced was trained, dropped as stale (counted) or is
    # still waiting in the queue when the run stops.
    st = schedule.stream.drain()
    training.async_report = {"staleness_hist": st.staleness_hist, "samples_produced": st.samples_produced,
                             "samples_trained": int(sum(len(ids) for ids in training.trained_ids)),
                             "samples_dropped_stale": st.samples_dropped_stale,
                             "samples_left_in_queue": st.samples_waiting,
                             "samples_unstepped_at_stop": schedule.unstepped,
                             "admission_refused": st.admission_refused, "workers": schedule.worker_status,
                             "queue_high_water_samples": st.queue_high_water,
                             "queue_bound_samples": schedule.stream.queue_bound(
                                 session.cfg.rollout.num_env_workers * schedule.envs)}
    drops = {"episodes_dropped": st.episodes_dropped, "episodes_dropped_with_group": st.episodes_dropped_with_group}
    training.fault_report = fault_summary(schedule.sup.report, schedule.sup.fault_times, schedule.progress, drops)
