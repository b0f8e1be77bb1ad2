"""N data-parallel `Trainer` actors behind the handle of one (trainer.num_ranks > 1, issue 8).

The schedules call `group.train_batch.remote(batch)` as they call a single trainer actor:
the group puts the batch in the object store once, sends the call to every rank (each
rank trains on its share; see `workers/trainer.py`) and returns rank 0's ObjectRef. Calls
that only read state (version, stats, timeline, and the weights under ddp, where every rank
holds them) go to rank 0 alone. Ranks other than 0 are checked for errors at each call, so
a failure of theirs alone surfaces on the driver instead of as a hang of rank 0 in a
collective (a failure that rank 0 shares reaches the caller through rank 0's ref, once).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List

from rlvla3.core.types import ObsBatch, SampleBatch
from rlvla3.workers.trainer import Trainer

EVERY_RANK = frozenset({"train_batch", "accumulate", "step", "save", "load", "set_trace", "bench_train"})
RANK0_ONLY = frozenset({"get_version", "stats", "timeline", "weights_listen", "weights_join"})


class _GroupMethod:
    def __init__(self, group: "TrainerGroup", name: str):
        self._group, self._name = group, name

    def remote(self, *args, **kwargs):
        return self._group._call(self._name, args, kwargs)


class TrainerGroup:
    def __init__(self, backend, cfg, seed: int, torch_threads: int, placement=None):
        """`placement`: a runtime.gpu_placement.GpuPlacement (CUDA), rank r on its plan's slot r."""
        n = cfg.trainer.num_ranks
        if getattr(backend, "name", "") != "ray":
            raise ValueError(f"trainer.num_ranks={n} needs run.backend=ray (one process per rank)")
        self.backend = backend
        self.sharding = cfg.trainer.sharding
        # The same seed everywhere: the same initial weights and micro-batch permutations.
        self.ranks: List = [backend.actor(Trainer, cfg, seed, torch_threads, rank=r, world=n,
                                          **(placement.trainer(r) if placement is not None else {}))
                            for r in range(n)]
        addr, port = backend.get(self.ranks[0].rendezvous.remote())
        backend.get([t.setup_distributed.remote(addr, port) for t in self.ranks])  # they meet: all at once
        self._pending: Deque = deque()  # (rank 0's ref, the other ranks' refs) of calls not seen to finish

    def __getattr__(self, name: str) -> _GroupMethod:
        if name.startswith("_") or not hasattr(Trainer, name):
            raise AttributeError(name)
        return _GroupMethod(self, name)

    def _every_rank(self, name: str) -> bool:
        if name in ("get_weights", "weights_send"):  # fsdp: a gather that every rank must enter
            return self.sharding == "fsdp"
        if name in EVERY_RANK:
            return True
        if name in RANK0_ONLY:
            return False
        raise AttributeError(f"TrainerGroup does not know how to dispatch Trainer.{name}")

    def _call(self, name: str, args, kwargs):
        self._raise_failures()
        if not self._every_rank(name):
            return getattr(self.ranks[0], name).remote(*args, **kwargs)
        put, batches = self.backend.put, (SampleBatch, ObsBatch)  # one copy in the object store, read by every rank
        args = [put(a) if isinstance(a, batches) else a for a in args]
        kwargs = {k: put(v) if isinstance(v, batches) else v for k, v in kwargs.items()}
        refs = [getattr(t, name).remote(*args, **kwargs) for t in self.ranks]
        self._pending.append((refs[0], refs[1:]))
        return refs[0]

    def _raise_failures(self) -> None:
        """Raise the error of a finished call on a rank > 0, unless rank 0 failed that call too."""
        ray = self.backend.ray
        while self._pending:
            first, others = self._pending[0]
            done, _ = ray.wait(others, num_returns=len(others), timeout=0)
            if len(done) < len(others):
                return
            self._pending.popleft()
            try:
                ray.get(others)
            except Exception:
                if not _failed(ray, first):
                    raise


def _failed(ray, ref) -> bool:
    """Whether a call finished with an error (not finished: False, rank 0 may be stuck)."""
    if not ray.wait([ref], timeout=0)[0]:
        return False
    try:
        ray.get(ref)
        return False
    except Exception:
        return True
