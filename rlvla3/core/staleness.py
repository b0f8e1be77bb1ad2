"""Bounded staleness: admission control for producers and a freshness filter for the trainer.

Units are *samples* (policy decisions). The trainer at version v is filling global batch v
(samples v*B .. (v+1)*B-1 of the stream). Admitting work only while

    reserved_samples <= (v + eta + 1) * B

means a sample admitted at version v' lands in a batch no later than v' + eta, so it is
at most eta versions stale when trained on, if samples arrive in order. Work of unknown
length (a group of episodes: a GRPO group, or one PPO episode) reserves the *expected* number
of samples of a group (`reservation`: a running mean of what finished groups produced,
capped by the maximum) and
settles the difference when it ends (`finish`). Reserving the maximum instead keeps slots
idle: an SFT policy ends most episodes early, so worst-case reservations fill the window
with samples that never come (measured: env slots 58% idle on the emulated benchmark).
Work is also admitted whenever the reservations cannot complete the current batch
(reserved < (v + 1) * B), which can overshoot the window by at most one group but never
deadlocks. An estimate that is low, or out-of-order arrival (a long episode finishing late),
can exceed eta; the trainer then drops the sample (`filter`) and every drop is counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StalenessCounters:
    admitted_groups: int = 0  # groups of episodes admitted (PPO: one episode each)
    refused: int = 0  # admission requests refused (producers throttled)
    dropped_samples: int = 0  # samples too stale to train on
    accepted_samples: int = 0


class StalenessController:
    def __init__(self, eta: int, global_batch: int):
        if eta < 0:
            raise ValueError(f"staleness bound eta must be >= 0, got {eta}")
        if global_batch < 1:
            raise ValueError(f"global_batch must be >= 1, got {global_batch}")
        self.eta = eta
        self.global_batch = global_batch
        self.version = 0
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
        return (self.version + self.eta + 1) * self.global_batch

    def try_admit(self, max_samples: int) -> bool:
        """Admit a group of episodes that will produce at most `max_samples` samples."""
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        starving = self.reserved < (self.version + 1) * self.global_batch
        if self.reserved + max_samples > self.capacity() and not starving:
            # Refusing a starving trainer would deadlock: what is reserved cannot fill its batch.
            self.counters.refused += 1
            return False
        self.reserved += max_samples
        self.counters.admitted_groups += 1
        return True

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
        if version < self.version:
            raise ValueError(f"policy version went backwards: {self.version} -> {version}")
        self.version = version
        # Batches 0..v-1 were consumed, so at least v*B samples were reserved; a no-op while
        # running, it rebuilds the count on a resume (otherwise 0: the window would be v+eta+1
        # batches wide and admission unbounded for the first v of them).
        self.reserved = max(self.reserved, version * self.global_batch)

    def filter(self, versions):
        """Boolean mask of samples fresh enough to train on; counts the drops."""
        import numpy as np

        mask = (self.version - np.asarray(versions)) <= self.eta
        self.counters.dropped_samples += int((~mask).sum())
        self.counters.accepted_samples += int(mask.sum())
        return mask
