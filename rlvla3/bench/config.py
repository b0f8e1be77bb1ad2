"""`bench.*`: run-config fields that only benchmarks set (`rlvla3 bench --straggler-fraction`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from rlvla3.core.config_checks import check


@dataclass
class BenchConfig:
    straggler_fraction: float = 0.0  # fraction of env slots whose simulator is slower (tabletop latency model)
    straggler_slowdown: float = 5.0  # cost multiplier of those slots

    def validate(self, prefix: str = "bench") -> None:
        check(0 <= self.straggler_fraction <= 1,
              f"{prefix}.straggler_fraction must be in [0, 1], got {self.straggler_fraction}")
        check(self.straggler_slowdown > 0, f"{prefix}.straggler_slowdown must be > 0, got {self.straggler_slowdown}")

    def straggler_slots(self, workers: int, slots: int) -> List[List[int]]:
        """Slots (per worker) made slower: round(fraction x all slots), shared evenly by the
        workers and spread evenly within each."""
        k = round(self.straggler_fraction * workers * slots)
        out = []
        for w in range(workers):
            mine = k // workers + (1 if w < k % workers else 0)
            out.append(sorted({(j * slots) // mine for j in range(mine)}) if mine else [])
        return out
