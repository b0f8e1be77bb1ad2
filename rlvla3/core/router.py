"""Which generator serves a request: round-robin, least-loaded, or a fixed shard map."""

from __future__ import annotations

from typing import Sequence

ROUTERS = ("round_robin", "least_loaded", "shard")


class Router:
    def __init__(self, kind: str, num_generators: int, worker_id: int = 0):
        if kind not in ROUTERS:
            raise ValueError(f"generator.router must be one of {list(ROUTERS)}, got {kind!r}")
        if num_generators < 1:
            raise ValueError(f"num_generators must be >= 1, got {num_generators}")
        self.kind, self.num_generators, self.worker_id = kind, num_generators, worker_id
        self._next = worker_id % num_generators  # stagger workers so they do not all start on generator 0

    def pick(self, slot_id: int, outstanding: Sequence[int]) -> int:
        """outstanding[g]: requests this caller has in flight at generator g."""
        if self.kind == "shard":  # a slot always talks to the same replica
            return (self.worker_id + slot_id) % self.num_generators
        if self.kind == "least_loaded":
            n = self.num_generators
            return min(range(n), key=lambda g: (outstanding[g], (g - self._next) % n))
        g = self._next
        self._next = (self._next + 1) % self.num_generators
        return g
