"""Feeds the trainer from the experience stream without waiting for it (asynchronous schedules):
`full` streams micro-batches as the stream has them (`accumulate`, two in flight at most; the
trainer normalises advantages over the global batch) and steps once per global batch;
`async-rollout` hands over whole global batches (`train_batch`). One update is in flight at a time.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

from rlvla3.core.experience_stream import ExperienceStream
from rlvla3.core.types import TrainResult


class TrainerFeed:
    def __init__(self, backend, trainer, stream: ExperienceStream, micro_batch: int, global_batch: int,
                 streaming: bool, trained_ids: list):
        self.b, self.trainer, self.stream = backend, trainer, stream
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
        results, self.update = self.b.get(self.update), None
        return list(results)

    def feed(self) -> bool:
        """Hand the trainer what the stream has ready while no update is in flight; True if
        anything was handed over."""
        if self.update is not None:
            return False
        if not self.streaming:
            batch = self.stream.take(self.global_batch) if self.stream.samples_waiting >= self.global_batch else None
            if batch is None:
                return False
            self.update = self.trainer.train_batch.remote(batch)
            self._trained([batch.sample_ids])
            return True
        while self.micro and self._ready(self.micro[0]):
            self.b.get(self.micro.popleft())
        fed, held = False, sum(len(i) for i in self.global_ids)
        need = min(self.micro_batch, self.global_batch - held)
        while len(self.micro) < 2 and held < self.global_batch and self.stream.samples_waiting >= need:
            mb = self.stream.take(need)
            if mb is None:
                break
            self.global_ids.append(mb.sample_ids)
            self.micro.append(self.trainer.accumulate.remote(mb, self.global_batch))
            held += len(mb)
            need = min(self.micro_batch, self.global_batch - held)
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
            results = list(self.b.get(self.update, what="the trainer's update in flight at the stop",
                                      actors=[self.trainer]))
            self.update = None
        return results, int(sum(len(i) for i in self.global_ids))

    def _trained(self, ids: List) -> None:
        self.trained_ids.extend(ids)
        self.samples_trained += int(sum(len(i) for i in ids))

    def _ready(self, ref) -> bool:
        return bool(self.b.ray.wait([ref], timeout=0)[0])
