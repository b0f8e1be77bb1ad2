"""`process.*` and `transport.*`: how the worker processes run and how the asynchronous
schedules' processes talk. Neither changes what is simulated or learned, only its cost."""

from __future__ import annotations

from dataclasses import dataclass

from rlvla3.core.config_checks import check, check_at_least


@dataclass
class ProcessConfig:
    # Unix nice (0-19) added to env worker and generator processes: > 0 lets the trainer, the
    # bottleneck stage on a machine with few cores, take its core before the rollout does.
    # With > 0 an embedded Ray cluster starts its workers (the trainer too) at nice 0 instead
    # of Ray's 15, so the whole offset counts; a running cluster keeps its workers' nice.
    nice: int = 0
    # Freed heap memory (MB) a process keeps for reuse instead of handing it back to the OS
    # (glibc's trim threshold; the mmap threshold becomes 32 MB). glibc's adaptive default
    # returned and re-faulted the trainer's activations every micro-batch: 50-70k page
    # faults/s and 15% of its CPU in the kernel. 0 = glibc's own thresholds.
    heap_keep_mb: int = 256
    # Shared memory (MiB) of an embedded Ray cluster's object store; 0 = Ray's own size (30%
    # of the machine's memory). A weight publication larger than the store is spilled to disk
    # and read back: with the 1 GiB this used to be, oft-1b's 2.3-4.6 GB publications spilled
    # every time (11-12 s of a sync cycle on the H100). A running cluster keeps its own.
    object_store_mb: int = 0

    def validate(self, prefix: str = "process") -> None:
        check(0 <= self.nice <= 19, f"{prefix}.nice must be in 0..19, got {self.nice}")
        check_at_least(self, prefix, 0, "heap_keep_mb", "object_store_mb")
        check(self.object_store_mb == 0 or self.object_store_mb >= 100,
              f"{prefix}.object_store_mb must be 0 (Ray's own size) or at least 100, got {self.object_store_mb}")


@dataclass
class TransportConfig:
    # Async modes. An env worker's requests to one generator that are ready within this many
    # ms share one Ray call (fewer calls, less CPU per decision); 0 = one call per request.
    coalesce_ms: float = 0.0
    # Async modes. The driver polls every env worker (status and finished episodes, one Ray
    # round trip each) at most this often. Episodes last a second or more, so 50 ms adds
    # little latency; each poll costs the driver and the workers CPU (20 ms: -5% trained
    # samples/s on 2 cores, docs/benchmarks/cpu-eta2-dec03-coalesce/).
    poll_ms: float = 50.0

    def validate(self, prefix: str = "transport") -> None:
        check_at_least(self, prefix, 0, "coalesce_ms", "poll_ms")
