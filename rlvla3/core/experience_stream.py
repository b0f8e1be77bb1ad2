"""The experience stream: everything between admitting an episode and training on its samples.

One pure object, used by every schedule. It admits *groups* of episodes (GRPO: `group_size`
episodes of one task and initial state; PPO: one episode) within the staleness window
(`StalenessController`, below); counts, in one place, which worker runs how many episodes of
which group (a group settles its reservation when its last episode is delivered or lost; a GRPO
group that lost one can never complete, so its others are dropped); turns episodes into
samples once; and hands the trainer exact-size batches of samples at most eta versions old
(stale ones dropped and counted). The policy version is the trainer's (`update_done`, `set_version`).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from rlvla3.core.assignments import EpisodeAssignment, GroupSampler
from rlvla3.core.experience import ExperienceStats, GroupAssembler, ppo_samples
from rlvla3.core.stats import Histogram
from rlvla3.core.types import Episode, SampleBatch


@dataclass
class StalenessCounters:
    refused: int = 0  # admission requests refused (producers throttled)
    dropped_samples: int = 0  # samples too stale to train on
    accepted_samples: int = 0


class StalenessController:
    """Bounded staleness: admission control for producers and a freshness filter for the trainer.

    Units are *samples* (policy decisions). The trainer that has finished p updates is filling
    global batch p (samples p*B .. (p+1)*B-1 of the stream). Admitting work only while

        reserved_samples <= (p + eta + 1) * B

    means a sample admitted at position p' lands in a batch no later than p' + eta, so it is
    at most eta versions stale when trained on, if samples arrive in order. The position p is
    the policy version v, except after an update whose every optimizer step was skipped (a
    non-finite loss): its batch is consumed without a new version, so p runs ahead of v.
    Sliding the window by versions alone would leave it one batch short per such update, and
    once reservations reach a window the trainer cannot fill, admission and the trainer wait
    on each other for ever (MT10 with a KL penalty, session 23). Work of unknown
    length (a group of episodes: a GRPO group, or one PPO episode) reserves the *expected*
    number of samples of a group (`reservation`: a running mean of what finished groups
    produced, capped by the maximum) and settles the difference when it ends (`finish`).
    Reserving the maximum instead keeps slots idle: an SFT policy ends most episodes early, so
    worst-case reservations fill the window with samples that never come (measured: env slots
    58% idle on the emulated benchmark). Work is also admitted whenever the reservations
    cannot complete the current batch (reserved < (v + 1) * B), which can overshoot the window
    by at most one group but never deadlocks. An estimate that is low, or out-of-order
    arrival (a long episode finishing late), can exceed eta; the trainer then drops the sample
    (`filter`) and every drop is counted.
    """

    def __init__(self, eta: int, global_batch: int):
        if eta < 0:
            raise ValueError(f"staleness bound eta must be >= 0, got {eta}")
        if global_batch < 1:
            raise ValueError(f"global_batch must be >= 1, got {global_batch}")
        self.eta = eta
        self.global_batch = global_batch
        self.version = 0  # the trainer's policy version: freshness is counted against it
        self.position = 0  # updates the trainer has finished, applied or skipped: the window's place
        self.reserved = 0  # samples reserved by admitted work (actual for finished, expected for running)
        self.counters = StalenessCounters()
        self._mean_group: float | None = None  # running mean of samples produced per finished group

    def reservation(self, max_samples: int) -> int:
        """Samples to reserve for a new group producing at most `max_samples`: the expected
        count once groups have finished (the maximum before any has)."""
        if self._mean_group is None:
            return max_samples
        return max(1, min(max_samples, int(round(self._mean_group))))

    def capacity(self) -> int:
        return (self.position + self.eta + 1) * self.global_batch

    def try_admit(self, max_samples: int) -> bool:
        """Admit a group of episodes that will produce at most `max_samples` samples."""
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if not self.has_room(max_samples):
            self.counters.refused += 1
            return False
        self.reserved += max_samples
        return True

    def has_room(self, max_samples: int) -> bool:
        """Whether `try_admit(max_samples)` would admit (nothing counted)."""
        # Refusing a starving trainer would deadlock: what is reserved cannot fill its batch.
        starving = self.reserved < (self.position + 1) * self.global_batch
        return starving or self.reserved + max_samples <= self.capacity()

    def finish(self, reserved: int, produced: int) -> None:
        """A group that reserved `reserved` samples ended having produced `produced`: settle
        the difference (refund or charge) and update the expected group size."""
        if produced < 0 or reserved < 0:
            raise ValueError(f"negative sample count: reserved {reserved}, produced {produced}")
        self.reserved += produced - reserved
        # Slow running mean: one long or short group barely moves the reservation.
        self._mean_group = float(produced) if self._mean_group is None else 0.95 * self._mean_group + 0.05 * produced

    def refund(self, samples: int) -> None:
        """Samples that will never reach the trainer (dropped groups, stale samples)."""
        self.reserved -= samples

    def set_version(self, version: int) -> None:
        """The trainer's policy version (at the start, a resume's); the window is at least there."""
        if version < self.version:
            raise ValueError(f"policy version went backwards: {self.version} -> {version}")
        self.version = version
        self.position = max(self.position, version)
        # Batches 0..p-1 were consumed, so at least p*B samples were reserved; a no-op while
        # running, it rebuilds the count on a resume (otherwise 0: the window would be p+eta+1
        # batches wide and admission unbounded for the first p of them).
        self.reserved = max(self.reserved, self.position * self.global_batch)

    def update_done(self, version: int) -> None:
        """The trainer finished an update on one global batch and is now at `version` (unchanged
        when every step of the update was skipped): the window slides by one batch either way."""
        self.position += 1
        self.set_version(version)

    def filter(self, versions):
        """Boolean mask of samples fresh enough to train on; counts the drops."""
        mask = (self.version - np.asarray(versions)) <= self.eta
        self.counters.dropped_samples += int((~mask).sum())
        self.counters.accepted_samples += int(mask.sum())
        return mask


@dataclass(frozen=True)
class StreamSettings:
    algo: str  # ppo | grpo
    group_size: int  # GRPO episodes per group
    horizon: int  # most decisions (samples) of one episode
    staleness: int  # eta, in policy versions
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
    """A snapshot for logs and summary.json (`status`), or the last one (`drain`)."""

    version: int
    samples_waiting: int  # in the queue
    samples_reserved: int  # the staleness window's count
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
    staleness_hist: Dict[int, int]


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
        self.queue: Deque[SampleBatch] = deque()  # samples waiting for the trainer, in arrival order
        self.samples_waiting = self.samples_produced = self.queue_high_water = 0
        self.groups: Dict[str, _Group] = {}
        self.staleness = Histogram()
        self.episodes_dropped = self.episodes_dropped_with_group = self.episodes_late = 0
        self._tie_start = 0  # admission: the worker that wins the next tie of loads

    @property
    def version(self) -> int:
        return self.window.version

    def set_version(self, version: int) -> None:
        """The trainer's policy version (a resume's): places the window, ages the queue."""
        self.window.set_version(version)

    def update_done(self, version: int) -> None:
        """An update on one global batch finished, the trainer now at `version`: slides the
        window by one batch (even when the update was skipped) and ages the queue."""
        self.window.update_done(version)

    # --- admission ------------------------------------------------------------------------
    def admit(self, loads: List[int], target: int) -> List[Tuple[int, List[EpisodeAssignment]]]:
        """Admit groups while some worker's load (running + queued episodes) is below `target`
        and the window has room; each group's episodes go to the least-loaded workers.
        Returns (worker, assignments) per group and worker, in admission order."""
        loads, out, n = list(loads), [], len(loads)
        while loads and min(loads) < target:
            reserve = self.window.reservation(self.max_group_samples)
            if not self.window.try_admit(reserve):
                break
            batch = self.sampler.draw(self.settings.episodes_per_group)
            group = self.groups[batch[0].group_key] = _Group(reserve, Counter())
            per_worker: Dict[int, List[EpisodeAssignment]] = {}
            for a in batch:
                # Ties rotate: with the window throttled every worker is often idle at an
                # admission, and the lowest index always winning starved the last workers
                # (10-19% busy against 40% in gpu-dec07e-libero-oft1b-graphs/goal).
                w = min(range(n), key=lambda k: (loads[k], (k - self._tie_start) % n))
                self._tie_start = (w + 1) % n
                loads[w] += 1
                group.running[w] += 1
                per_worker.setdefault(w, []).append(a)
            out += per_worker.items()
        return out

    def assign(self, n: int) -> List[EpisodeAssignment]:
        """`n` episodes outside the window and the accounting, for a lock-step rollout."""
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
        group is complete (PPO: at once; a PPO episode's segments, `Episode.final` False, as
        they come, its group settling with its last)."""
        stats = ExperienceStats()
        for w, ep in delivered:
            group = self.groups.get(ep.group_key)
            if group is None or group.running[w] <= 0:  # never count an episode twice
                self.episodes_late += 1
                continue
            if not ep.final and self.grpo:
                raise ValueError("a GRPO group needs whole episodes: rollout.segment_chunks applies to PPO")
            if ep.final:  # a segment of a running PPO episode leaves its group open
                group.running[w] -= 1
            if group.broken:
                self.episodes_dropped_with_group += 1
                stats.episodes_dropped += 1
            else:
                batch, st = self.assembler.add(ep) if self.grpo else \
                    ppo_samples([ep], self.settings.gamma, self.settings.gae_lambda)
                stats.merge(st)
                if batch is not None:
                    self._put(batch)
                    group.produced += len(batch)
            if ep.final:
                self._settle_if_done(ep.group_key)
        return stats

    def rollout_samples(self, episodes: List[Episode]) -> Tuple[Optional[SampleBatch], ExperienceStats]:
        """Samples of one lock-step rollout: GRPO keeps the complete groups of this stream's
        sampler and drops the others' episodes (counted)."""
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
    def _put(self, batch: SampleBatch, front: bool = False) -> None:
        if len(batch):
            (self.queue.appendleft if front else self.queue.append)(batch)
            self.samples_waiting += len(batch)
            self.samples_produced += 0 if front else len(batch)
            self.queue_high_water = max(self.queue_high_water, self.samples_waiting)

    def _pop(self, n: int) -> SampleBatch:
        """The next n samples, fresh or not (n <= samples_waiting)."""
        out, need = [], n
        while need > 0:
            head = self.queue.popleft()
            if len(head) > need:
                self.queue.appendleft(head.take(np.arange(need, len(head))))
                head = head.take(np.arange(need))
            out.append(head)
            need -= len(head)
        self.samples_waiting -= n
        return SampleBatch.concat(out)

    def take(self, n: int) -> Optional[SampleBatch]:
        """Exactly n samples at most eta versions old, in queue order: stale ones are dropped
        (counted, their reservation refunded) and replaced by the next. None when the queue
        runs out first: what passed goes back to the front. Exact sizes give the trainer a few
        tensor shapes, not a new one at every drop: oneDNN keeps kernels and scratch memory per
        shape, and sizes that varied with the drops grew the trainer's heap for hours
        (docs/reliability/README.md, "Trainer heap and micro-batch shapes")."""
        parts, have = [], 0
        while have < n and self.samples_waiting >= n - have:
            part = self._pop(n - have)
            mask = self.window.filter(part.versions)
            if not mask.all():
                self.window.refund(int((~mask).sum()))  # they will never reach the trainer
                part = part.take(np.flatnonzero(mask))
            if len(part):
                parts.append(part)
                have += len(part)
        batch = SampleBatch.concat(parts) if len(parts) > 1 else (parts[0] if parts else None)
        if have < n:
            if batch is not None:
                self._put(batch, front=True)
            return None
        for v in batch.versions:
            self.staleness.add(int(self.version - v))
        return batch

    def closed(self) -> bool:
        """No group in flight and no room in the window: no sample can come until the trainer
        takes some. If it cannot take any either, the run waits for ever (the schedule stops it:
        never seen since the window slides by updates, `update_done`)."""
        return not self.groups and not self.window.has_room(self.window.reservation(self.max_group_samples))

    def queue_bound(self, running_envs: int) -> int:
        """Most samples that can wait for the trainer: admission keeps reservations within
        eta + 1 global batches (plus one group when the trainer starves), and each running
        env can overshoot its reservation by at most one episode."""
        s = self.settings
        return (s.staleness + 1) * s.global_batch + self.max_group_samples + running_envs * s.horizon

    # --- reports ------------------------------------------------------------------------
    def status(self) -> StreamStatus:
        c = self.window.counters
        in_flight = sum(sum(g.running.values()) for g in self.groups.values())
        return StreamStatus(self.version, self.samples_waiting, self.window.reserved, len(self.groups), in_flight,
                            self.samples_produced, c.dropped_samples, c.refused, self.episodes_dropped,
                            self.episodes_dropped_with_group, self.episodes_late, self.queue_high_water,
                            self.staleness.mean(), self.staleness.as_dict())

    def drain(self) -> StreamStatus:
        """End of the run: the status, then the queue emptied and the groups in flight forgotten
        (reservations refunded): what was waiting or in flight is never trained."""
        left = self.status()
        self.window.refund(self.samples_waiting)
        self.queue.clear()
        self.samples_waiting = 0
        for group in self.groups.values():
            self.window.refund(group.reserved)
        self.groups.clear()
        if self.assembler is not None:
            self.assembler.drop_incomplete()
        return left
