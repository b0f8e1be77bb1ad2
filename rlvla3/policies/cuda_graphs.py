"""Inference replayed from CUDA graphs, one graph per batch-size bucket.

At the small batches an asynchronous generator forms, a VLA's forward is bound by kernel launches
from one Python thread, not by the GPU: on an H100 oft-1b's act took 32-34 ms at every batch from 1
to 8, and 10-23 ms replayed from graphs (docs/benchmarks/gpu-dec07d-cuda-graphs/); in `full` on
LIBERO its batches of 2-5 took 56-79 ms while the env slots waited for them. A captured graph
replays the same kernels with one launch.

A batch of n is copied into the static inputs of the smallest bucket that holds it; the extra rows
repeat the first row (the rows of a VLA forward never interact), and the outputs are views of the
graph's static outputs, valid until the next call. A batch larger than every bucket runs eagerly.
Weights are read by address, so the generator's in-place `load_state_dict` needs no new capture.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

Capture = Callable[[Callable, Dict[str, torch.Tensor], torch.device, object], Tuple[Callable[[], None], tuple]]


def buckets_for(max_batch: int) -> List[int]:
    """Powers of two below `max_batch`, and `max_batch` itself: at most twice the rows of a batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return out + [max_batch]


def bucket_of(n: int, buckets: List[int]) -> Optional[int]:
    """The smallest bucket holding n rows; None when n exceeds them all."""
    return next((b for b in sorted(buckets) if b >= n), None)


def cuda_capture(fn: Callable, static_in: Dict[str, torch.Tensor], device: torch.device, pool) -> tuple:
    """Capture `fn(**static_in)` (its outputs: a tuple of tensors) into a CUDA graph.
    Warm-up runs on a side stream first (cuBLAS handles and the allocator settle there);
    `thread_local` lets the generator's weight-staging thread keep copying meanwhile."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            fn(**static_in)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        static_out = fn(**static_in)
    return graph.replay, tuple(static_out)


class GraphedForward:
    """`fn(**tensors) -> tuple of tensors` with a leading batch dimension, replayed per bucket.
    `capture` makes (replay, static outputs) from fn and static inputs: `cuda_capture` on a GPU;
    tests pass an eager stand-in with the same contract."""

    def __init__(self, fn: Callable, buckets: List[int], device: torch.device, capture: Capture = cuda_capture):
        if not buckets:
            raise ValueError("GraphedForward needs at least one bucket")
        self.fn, self.buckets, self.device, self._capture = fn, sorted(set(buckets)), device, capture
        self._graphs: Dict[int, tuple] = {}  # bucket -> (replay, static inputs, static outputs)
        self._pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None  # one pool for all
        self.replays = self.eager_calls = 0
        self.capture_s = 0.0

    @property
    def captured(self) -> List[int]:
        return sorted(self._graphs)

    def __call__(self, **inputs: torch.Tensor) -> tuple:
        n = next(iter(inputs.values())).shape[0]
        b = bucket_of(n, self.buckets)
        if b is None:
            self.eager_calls += 1
            return tuple(self.fn(**inputs))
        if b not in self._graphs:
            self._graphs[b] = self._make(b, inputs)
        replay, static_in, static_out = self._graphs[b]
        if set(inputs) != set(static_in):
            raise ValueError(f"graphed forward captured with inputs {sorted(static_in)}, called with {sorted(inputs)}")
        for k, x in inputs.items():
            buf = static_in[k]
            if x.shape[1:] != buf.shape[1:] or x.dtype != buf.dtype:
                raise ValueError(f"graphed forward: input {k!r} is {tuple(x.shape)} {x.dtype}, captured as "
                                 f"{tuple(buf.shape)} {buf.dtype}")
            buf[:n].copy_(x)
            if n < b:
                buf[n:].copy_(x[:1].expand_as(buf[n:]))
        replay()
        self.replays += 1
        return tuple(o[:n] for o in static_out)

    def _make(self, b: int, inputs: Dict[str, torch.Tensor]) -> tuple:
        t0 = time.perf_counter()
        # owned copies (never the caller's tensors), padded as __call__ pads
        static_in = {k: torch.cat([x, x[:1].expand(b - x.shape[0], *x.shape[1:])]) for k, x in inputs.items()}
        replay, static_out = self._capture(self.fn, static_in, self.device, self._pool)
        self.capture_s += time.perf_counter() - t0
        return replay, static_in, static_out
