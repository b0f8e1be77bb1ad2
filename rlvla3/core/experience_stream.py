"""The experience stream: everything between admitting an episode and training on its samples.

One pure object (no Ray, no I/O), used by every schedule:
- admission: a *group* of episodes (GRPO: `group_size` episodes of one task and initial
  state; PPO: one episode) starts only within the staleness window (`core/staleness.py`),
  spread over the least-loaded env workers;
- in-flight accounting, in one place: which worker runs how many episodes of which group.
  A group settles its staleness reservation when its last episode is delivered or lost; a
  GRPO group that lost an episode can never complete, so its other episodes are dropped;
- assembly: episodes become samples once (GAE for PPO, GRPO groups when complete);
- the sample queue and freshness: the trainer takes exact-size batches of samples at most
  eta versions old; stale samples are dropped and counted, never silent.
The policy version is the trainer's: the schedule passes it in (`set_version`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment, GroupSampler
from rlvla3.core.experience import ExperienceStats, GroupAssembler, ppo_samples
from rlvla3.core.sample_queue import SampleQueue
from rlvla3.core.staleness import StalenessController
from rlvla3.core.stats import Histogram
from rlvla3.core.types import Episode, SampleBatch


@dataclass(frozen=True)
class StreamSettings:
    algo: str  # ppo | grpo
    group_size: int  # GRPO episodes per group
    horizon: int  # most decisions of one episode
    staleness: int  # eta: most policy versions a trained sample may lag
    global_batch: int  # samples per policy version
    gamma: float = 0.99
    gae_lambda: float = 0.95
    filter_degenerate_groups: bool = True
    grpo_discount: bool = False

    @classmethod
    def from_config(cls, algo, rollout, horizon: int) -> "StreamSettings":
        """From the run config's `algo` and `rollout` sections."""
        return cls(algo.name, rollout.group_size, horizon, algo.staleness, algo.global_batch, algo.gamma,
                   algo.gae_lambda, algo.filter_degenerate_groups, algo.grpo_discount)

    @property
    def episodes_per_group(self) -> int:
        return self.group_size if self.algo == "grpo" else 1


@dataclass
class StreamStatus:
    """A snapshot for logs and summary.json (samples are policy decisions)."""

    version: int
    samples_waiting: int  # in the queue, ready for the trainer
    samples_reserved: int  # the staleness window's count (core/staleness.py)
    groups_in_flight: int
    episodes_in_flight: int  # admitted, neither delivered nor lost
    samples_produced: int
    samples_dropped_stale: int
    admission_refused: int
    episodes_dropped: int  # lost unfinished (env fault, lost worker, no bootstrap value)
    episodes_dropped_with_group: int  # GRPO: delivered, but their group lost an episode
    episodes_late: int  # delivered but not in flight (their group had settled): ignored
    queue_high_water: int
    staleness_mean: float  # versions behind, of the samples taken for the trainer
    staleness_hist: Dict[int, int] = field(default_factory=dict)


@dataclass
class StreamDrain:
    """What the stream still held when it was drained at the end of a run."""

    samples_left: int  # waited in the queue, never trained
    groups_in_flight: int
    episodes_in_flight: int


@dataclass
class _Group:
    reserved: int  # samples reserved in the staleness window (the expected count)
    running: Counter  # worker -> its episodes of the group neither delivered nor lost
    produced: int = 0
    broken: bool = False  # lost an episode (GRPO: it can never complete)


class ExperienceStream:
    def __init__(self, settings: StreamSettings, sampler: GroupSampler, version: int = 0):
        if sampler.group_size != settings.episodes_per_group:
            raise ValueError(f"sampler draws groups of {sampler.group_size}, the stream needs "
                             f"{settings.episodes_per_group}")
        self.settings, self.sampler = settings, sampler
        self.grpo = settings.algo == "grpo"
        self.max_group_samples = settings.episodes_per_group * settings.horizon
        # One policy version per global batch: the window is in global batches.
        self.window = StalenessController(settings.staleness, settings.global_batch)
        self.window.set_version(version)
        self.assembler = GroupAssembler(settings.group_size, settings.gamma, settings.filter_degenerate_groups,
                                        settings.grpo_discount) if self.grpo else None
        self.queue = SampleQueue()
        self.groups: Dict[str, _Group] = {}
        self.staleness = Histogram()
        self.episodes_dropped = self.episodes_dropped_with_group = self.episodes_late = 0

    @property
    def version(self) -> int:
        return self.window.version

    def set_version(self, version: int) -> None:
        """The trainer's policy version after an update: slides the window, ages the queue."""
        self.window.set_version(version)

    # --- admission ------------------------------------------------------------------------
    def admit(self, loads: List[int], target: int) -> List[Tuple[int, List[EpisodeAssignment]]]:
        """Admit groups while some worker's load (running + queued episodes) is below `target`
        and the window has room; each group's episodes go to the least-loaded workers.
        Returns (worker, assignments) per group and worker, in admission order."""
        loads, out = list(loads), []
        while loads and min(loads) < target:
            reserve = self.window.reservation(self.max_group_samples)
            if not self.window.try_admit(reserve):
                break
            batch = self.sampler.draw(self.settings.episodes_per_group)
            group = self.groups[batch[0].group_key] = _Group(reserve, Counter())
            per_worker: Dict[int, List[EpisodeAssignment]] = {}
            for a in batch:
                w = int(np.argmin(loads))
                loads[w] += 1
                group.running[w] += 1
                per_worker.setdefault(w, []).append(a)
            out += per_worker.items()
        return out

    def assign(self, n: int) -> List[EpisodeAssignment]:
        """`n` episodes outside the window and the accounting: a lock-step rollout runs a
        fixed number and hands back all its episodes at once (`rollout_samples`)."""
        return self.sampler.draw(n)

    # --- episodes in, samples out -------------------------------------------------------
    def report_lost(self, worker: int, group_key: Optional[str] = None) -> int:
        """Episodes that will never be delivered: one of `group_key` that `worker` ran (env
        fault, no bootstrap value), or, without a key, every one the worker ran (it was
        replaced). Returns how many were in flight."""
        keys = [group_key] if group_key is not None else \
            [k for k, g in self.groups.items() if g.running[worker] > 0]
        lost = 0
        for key in keys:
            n = 1 if group_key is not None else self.groups[key].running[worker]
            self.episodes_dropped += n
            group = self.groups.get(key)
            if group is None:  # settled already: a late report changes nothing
                continue
            if self.grpo and not group.broken:
                group.broken = True
                self.episodes_dropped_with_group += len(self.assembler.pending.pop(key, []))
            n = min(n, group.running[worker])  # a count never goes negative
            group.running[worker] -= n
            lost += n
            self._settle_if_done(key)
        return lost

    def add_episodes(self, delivered: List[Tuple[int, Episode]]) -> ExperienceStats:
        """(worker, episode) pairs that finished: their samples join the queue once their
        group is complete (PPO: at once)."""
        stats = ExperienceStats()
        for w, ep in delivered:
            group = self.groups.get(ep.group_key)
            if group is None or group.running[w] <= 0:  # never count an episode twice
                self.episodes_late += 1
                continue
            group.running[w] -= 1
            if group.broken:
                self.episodes_dropped_with_group += 1
                stats.episodes_dropped += 1
            else:
                batch, st = self.assembler.add(ep) if self.grpo else \
                    ppo_samples([ep], self.settings.gamma, self.settings.gae_lambda)
                stats.merge(st)
                if batch is not None:
                    self.queue.put(batch)
                    group.produced += len(batch)
            self._settle_if_done(ep.group_key)
        return stats

    def rollout_samples(self, episodes: List[Episode]) -> Tuple[Optional[SampleBatch], ExperienceStats]:
        """Samples of one lock-step rollout's episodes, all at once: GRPO keeps the complete
        groups this stream's sampler started and drops the others' episodes (counted)."""
        s = self.settings
        if not self.grpo:
            return ppo_samples(episodes, s.gamma, s.gae_lambda)
        batch, stats = self.assembler.add_many([e for e in episodes if e.group_key.startswith(self.sampler.prefix)])
        stats.episodes_dropped += self.assembler.drop_incomplete()
        return batch, stats

    def _settle_if_done(self, key: str) -> None:
        group = self.groups[key]
        if sum(group.running.values()) <= 0:  # settle its reservation against what it delivered
            self.window.finish(group.reserved, group.produced)
            del self.groups[key]

    # --- the trainer's side -------------------------------------------------------------
    @property
    def samples_waiting(self) -> int:
        return self.queue.size

    def take(self, n: int) -> Optional[SampleBatch]:
        """Exactly n fresh samples in queue order (stale ones dropped, counted and replaced by
        the next), or None when the queue runs out first."""
        batch = self.queue.take_fresh(n, self._fresh)
        if batch is not None:
            for v in batch.versions:
                self.staleness.add(int(self.version - v))
        return batch

    def _fresh(self, batch: SampleBatch) -> SampleBatch:
        mask = self.window.filter(batch.versions)
        dropped = int((~mask).sum())
        if dropped:
            self.window.refund(dropped)  # they will never reach the trainer
            batch = batch.take(np.flatnonzero(mask))
        return batch

    def queue_bound(self, running_envs: int) -> int:
        """Most samples that can wait for the trainer: admission keeps reservations within
        eta + 1 global batches (plus one group when the trainer starves), and each running
        env can overshoot its reservation by at most one episode."""
        s = self.settings
        return (s.staleness + 1) * s.global_batch + self.max_group_samples + running_envs * s.horizon

    # --- reports ------------------------------------------------------------------------
    def status(self) -> StreamStatus:
        c = self.window.counters
        return StreamStatus(
            version=self.version, samples_waiting=self.queue.size, samples_reserved=self.window.reserved,
            groups_in_flight=len(self.groups), episodes_in_flight=sum(sum(g.running.values()) for g in
                                                                     self.groups.values()),
            samples_produced=self.queue.total_put, samples_dropped_stale=c.dropped_samples,
            admission_refused=c.refused, episodes_dropped=self.episodes_dropped,
            episodes_dropped_with_group=self.episodes_dropped_with_group, episodes_late=self.episodes_late,
            queue_high_water=self.queue.high_water, staleness_mean=self.staleness.mean(),
            staleness_hist=self.staleness.as_dict())

    def drain(self) -> StreamDrain:
        """End of the run: empty the queue and forget the groups in flight (their
        reservations refunded); what was left is returned, not trained."""
        left = StreamDrain(self.queue.size, len(self.groups),
                           sum(sum(g.running.values()) for g in self.groups.values()))
        if self.queue.size:
            self.window.refund(self.queue.size)
            self.queue.take(self.queue.size)
        for group in self.groups.values():
            self.window.refund(group.reserved)
        self.groups.clear()
        if self.assembler is not None:
            self.assembler.drop_incomplete()
        return left
