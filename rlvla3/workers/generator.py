"""Generator: a policy replica serving batched inference, with versioned weights.

The lock-step schedules call `infer` with the whole batch; the asynchronous generator
(`async_generator.py`) wraps the same replica with a dynamic batcher.
"""

from __future__ import annotations

import time

import torch

from rlvla3.core.types import ActionReply, ObsBatch, WeightsMessage
from rlvla3.policies import build_policy


class Generator:
    def __init__(self, gen_id: int, policy_cfg, seed: int, torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        torch.manual_seed(seed * 7 + gen_id)
        self.gen_id = gen_id
        self.policy = build_policy(policy_cfg)
        self.forward_time_s = 0.0
        self.calls = 0
        self.samples = 0

    @property
    def version(self) -> int:
        return self.policy.version

    def get_version(self) -> int:
        return self.policy.version

    def set_weights(self, msg: WeightsMessage) -> int:
        self.policy.load_state_dict(msg.state)
        self.policy.version = msg.version
        return msg.version

    def infer_batch(self, obs: ObsBatch, deterministic: bool = False, temperature: float = 1.0,
                    request_id: int = 0) -> ActionReply:
        t0 = time.perf_counter()
        out = self.policy.act(obs, deterministic=deterministic, temperature=temperature)
        self.forward_time_s += time.perf_counter() - t0
        self.calls += 1
        self.samples += len(obs)
        return ActionReply(request_id, out.actions, out.tokens, out.logp, out.values, out.version,
                           batch_size=len(obs))

    def stats(self) -> dict:
        return {"calls": self.calls, "samples": self.samples, "forward_time_s": self.forward_time_s}
