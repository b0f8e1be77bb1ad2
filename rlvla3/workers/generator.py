"""Generator: a policy replica serving batched inference, with versioned weights.

The lock-step schedules call `infer_batch` with the whole batch; the asynchronous generator
(`async_generator.py`) wraps the same replica with a dynamic batcher.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import List, Optional

import torch

from rlvla3.core.types import ActionReply, ObsBatch, WeightsMessage
from rlvla3.envs.faults import hang_forever
from rlvla3.policies import build_policy
from rlvla3.workers.fault_hooks import crash_process_if, hang_if
from rlvla3.workers.role import Role


@dataclass
class StagedWeights:
    """A publication unpacked and already on the replica's device: swapping it in is a
    device-side copy, not a host unpack plus a host-to-device transfer of the whole model."""

    version: int
    tensors: dict


class Generator(Role):
    def __init__(self, gen_id: int, policy_cfg, seed: int, torch_threads: int = 1, crash_after_requests: int = 0,
                 hang_after_requests: int = 0, nice: int = 0, hang_at_start: bool = False, cuda_graph_batch: int = 0,
                 own_stream: bool = False):
        super().__init__(torch_threads, nice)
        if hang_at_start:  # fault injection: a start that never ends (a wedged CUDA/EGL init)
            hang_forever("generator start")
        self.crash_after_requests = crash_after_requests  # fault injection; 0 = off
        self.hang_after_requests = hang_after_requests
        torch.manual_seed(seed * 7 + gen_id)
        self.gen_id = gen_id
        self.policy = build_policy(policy_cfg)
        self.weight_rx = None  # WeightReceiver of the current channel epoch
        self._stage_stream = None  # CUDA stream for staging weights beside inference
        self.forward_time_s = 0.0
        self.calls = self.samples = 0
        self.track = f"generator{gen_id}"
        self.graphs = None  # GraphedForward under generator.cuda_graphs
        # own_stream (a replica in the trainer's process): forwards and swaps on a CUDA stream of
        # their own, so their kernels run beside the trainer's instead of queueing behind them
        self._serve_stream = torch.cuda.Stream(self.policy.device) \
            if own_stream and self.policy.device.type == "cuda" else None
        if cuda_graph_batch:  # generator.cuda_graphs: capture every bucket now, not on a slot's request
            self._capture_graphs(cuda_graph_batch)

    def _capture_graphs(self, max_batch: int) -> None:
        from rlvla3.bench.synthetic import random_obs

        p = self.policy
        self.graphs = p.use_cuda_graphs(max_batch)
        for b in reversed(self.graphs.buckets):  # largest first: the smaller graphs reuse its memory pool
            p.act(random_obs(b, p.image_size, p.proprio_dim, ["warm up"]))  # timed: stats' graph_capture_s

    @property
    def version(self) -> int:
        return self.policy.version

    def get_version(self) -> int:
        return self.policy.version

    def set_weights(self, msg: WeightsMessage) -> int:
        return self.swap_in(self.stage_weights(msg))

    def stage_weights(self, msg: WeightsMessage) -> StagedWeights:
        """Unpack a publication onto the policy's device. Safe beside a forward pass (its own
        CUDA stream), so the asynchronous generator runs it off the serving path."""
        t0 = time.time()
        dev = self.policy.device
        # torch.tensor copies the object store's read-only arrays, as load_state_dict would have
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.tensor(v) for k, v in msg.tensors().items()}
        if dev.type == "cuda":
            if self._stage_stream is None:
                self._stage_stream = torch.cuda.Stream(dev)
            with torch.cuda.stream(self._stage_stream):
                tensors = {k: v.to(dev) for k, v in tensors.items()}
            self._stage_stream.synchronize()
        self.spans.record(self.track, "weight_stage", t0, time.time() - t0, version=msg.version)
        return StagedWeights(msg.version, tensors)

    def _on_serve_stream(self):
        s = self._serve_stream
        return torch.cuda.stream(s) if s is not None else contextlib.nullcontext()

    def swap_in(self, staged: StagedWeights) -> int:
        t0 = time.time()
        with self._on_serve_stream():
            self.policy.load_state_dict(staged.tensors)
            if self.policy.device.type == "cuda":
                # the copy is queued on the serving stream; wait for it so the staged blocks (freed
                # on return, owned by the staging stream) cannot be reused under it
                torch.cuda.current_stream(self.policy.device).synchronize()
        self.policy.version = staged.version
        self.spans.record(self.track, "weight_swap", t0, time.time() - t0, version=staged.version)
        return staged.version

    # --- weight channel (generator.weight_transport=collective; distributed/weight_channel.py) -
    def weights_join(self, addr: str, port: int, rank: int, world: int, epoch: int, backend: str,
                     timeout_s: float) -> None:
        from rlvla3.distributed.weight_channel import WeightReceiver, layout_of

        old, self.weight_rx = self.weight_rx, None
        if old is not None:
            old.abandoned.set()  # a receive still waiting on the old epoch returns None
        self.weight_rx = WeightReceiver(addr, port, rank, world, epoch, backend, self.policy.device,
                                        layout_of(self.policy.state_dict()), timeout_s)

    def weights_fetch(self, epoch: int, bucket_mb: float) -> Optional[WeightsMessage]:
        """The next send of epoch `epoch` into a staging copy (not applied); None if that epoch
        is no longer this replica's channel."""
        rx = self.weight_rx
        if rx is None or rx.epoch != epoch:
            return None
        got = rx.receive(bucket_mb)  # (version, state), or None
        return None if got is None else WeightsMessage(got[0], got[1])

    def weights_receive(self, epoch: int, bucket_mb: float) -> int:
        """Lock-step schedules: receive and apply at once."""
        msg = self.weights_fetch(epoch, bucket_mb)
        if msg is not None and msg.version > self.version:
            self.set_weights(msg)
        return self.version

    def bench_forward(self, batches: List[ObsBatch], seconds: float) -> dict:
        """Stage bound: inference alone, samples/s at the size of each batch (`seconds` each)."""
        out = {}
        for obs in batches:
            self.policy.act(obs)  # warm-up
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                self.policy.act(obs)
                done += len(obs)
            out[len(obs)] = done / (time.perf_counter() - t0)
        return out

    def infer_batch(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0,
                    request_id: int = 0, **span_args) -> ActionReply:
        """The policy on a whole batch; `span_args` add detail to its timeline span."""
        crash_process_if(self.crash_after_requests, self.calls + 1)
        if hang_if(self.hang_after_requests, self.calls + 1):
            time.sleep(10**6)  # a forward pass that never returns
        t0, w0, c0 = time.perf_counter(), time.time(), time.thread_time()
        with self._on_serve_stream():
            out = self.policy.act(obs, deterministic=deterministic, temperature=temperature)
        self.forward_time_s += time.perf_counter() - t0
        w1 = time.time()
        # cpu: this thread's CPU seconds in the span (its work, whatever else ran on the cores);
        # `rlvla3 plan` prices a CPU generator's batch with it (plan/cpu_calibration.py)
        self.spans.record(self.track, "infer_batch", w0, w1 - w0, n=len(obs), cpu=time.thread_time() - c0,
                          **span_args)
        self.calls += 1
        self.samples += len(obs)
        return ActionReply(request_id, out.actions, out.tokens, out.logp, out.values, out.version,
                           batch_size=len(obs), timing={"fwd0": w0, "fwd1": w1} if self.spans.enabled else None)

    def stats(self) -> dict:
        return {"calls": self.calls, "samples": self.samples, "forward_time_s": self.forward_time_s,
                **self.graph_stats()}

    def graph_stats(self) -> dict:
        """generator.cuda_graphs: forwards replayed, run eagerly (batch above every bucket), capture time."""
        g = self.graphs
        if g is None:
            return {}
        return {"graph_buckets": len(g.captured), "graph_replays": g.replays, "graph_eager_calls": g.eager_calls,
                "graph_capture_s": round(g.capture_s, 3)}
