"""The base of every worker role (env worker, generator, trainer): the process settings it applies
first and the timeline hooks a benchmark drives. Each role adds its calls and its `bench_*`."""

from __future__ import annotations

from typing import List, Optional

import torch

from rlvla3.core.timeline import Span, SpanRecorder
from rlvla3.process.priority import lower_priority


class Role:
    def __init__(self, torch_threads: int = 1, nice: int = 0, spans: Optional[SpanRecorder] = None):
        torch.set_num_threads(torch_threads)
        lower_priority(nice)  # process.nice: yield the CPU to the trainer
        self.spans = spans if spans is not None else SpanRecorder(enabled=False)  # on for benchmarks

    def set_trace(self, enabled: bool) -> None:
        self.spans.enabled = enabled
        self.spans.clear()

    def timeline(self, since: float = 0.0) -> List[Span]:
        return self.spans.spans(since)
