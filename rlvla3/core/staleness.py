"""Bounded staleness: admission control for producers and a freshness filter for the trainer.

Units are *samples* (policy decisions). The trainer at version v is filling global batch v
(samples v*B .. (v+1)*B-1 of the stream). Admitting work only while

    reserved_samples <= (v + eta + 1) * B

means a sample admitted at version v' lands in a batch no later than v' + eta, so it is
at most eta versions stale when trained on, if samples arrive in order. Episodes of
unknown length reserve their maximum number of decisions and refund the unused part when
they end. Because reservations are worst cases, the window alone could fill with finished
work that still falls short of the batch the trainer is filling; so work is also admitted
whenever the reservations cannot complete the current batch (reserved < (v + 1) * B),
which can overshoot the window by at most one unit but never deadlocks. Out-of-order arrival (a
long episode finishing late) can still exceed eta; the trainer then drops the sample
(`is_fresh`) and every drop is counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StalenessCounters:
    admitted_units: int = 0  # episodes or groups admitted
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
        self.reserved = 0  # samples reserved by admitted work (actual for finished, maximum for running)
        self.counters = StalenessCounters()

    def capacity(self) -> int:
        return (self.version + self.eta + 1) * self.global_batch

    def try_admit(self, max_samples: int) -> bool:
        """Admit a unit of work that will produce at most `max_samples` samples."""
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        starving = self.reserved < (self.version + 1) * self.global_batch
        if self.reserved + max_samples > self.capacity() and not starving:
            # Refusing a starving trainer would deadlock: what is reserved cannot fill its batch.
            self.counters.refused += 1
            return False
        self.reserved += max_samples
        self.counters.admitted_units += 1
        return True

    def finish(self, reserved: int, produced: int) -> None:
        """A unit ended having produced `produced` of its `reserved` samples: refund the rest."""
        if produced > reserved:
            raise ValueError(f"produced {produced} samples but reserved only {reserved}")
        self.reserved -= reserved - produced

    def refund(self, samples: int) -> None:
        """Samples that will never reach the trainer (dropped groups, stale samples)."""
        self.reserved -= samples

    def set_version(self, version: int) -> None:
        if version < self.version:
            raise ValueError(f"policy version went backwards: {self.version} -> {version}")
        self.version = version

    def is_fresh(self, sample_version: int, current_version: int | None = None) -> bool:
        v = self.version if current_version is None else current_version
        return v - sample_version <= self.eta

    def filter(self, versions, current_version: int | None = None):
        """Boolean mask of samples fresh enough to train on; counts the drops."""
        import numpy as np

        v = self.version if current_version is None else current_version
        mask = (v - np.asarray(versions)) <= self.eta
        dropped = int((~mask).sum())
        self.counters.dropped_samples += dropped
        self.counters.accepted_samples += int(mask.sum())
        return mask
