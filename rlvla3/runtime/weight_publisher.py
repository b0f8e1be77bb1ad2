"""How the driver hands each new policy version to the generators (`generator.weight_transport`).

- object_store: the trainer returns a state dict as a Ray object, every generator fetches it.
- collective: the trainer broadcasts it in buckets over a torch.distributed group of the
  trainer and the generators (`distributed/weight_channel.py`). The group is rebuilt (a new
  epoch) whenever a generator is replaced, since a replacement cannot join the old group.
- generator.in_trainer_process: neither; the host process hands the trainer's host tensors to
  its generator (`TrainerHost.publish_local`).

Either way an asynchronous generator stores what arrives and swaps it in between two
batches, so inference never waits for a publication.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

from rlvla3.core.stats import percentiles
from rlvla3.core.weight_wire import wire_dtype
from rlvla3.policies import family_config


class WeightPublisher:
    def __init__(self, backend, trainer, generators: List, cfg, placement=None):
        # generators: the session's list, updated in place by the supervisor (which then calls open)
        self.backend, self.trainer, self.generators, self.placement = backend, trainer, generators, placement
        g = cfg.generator
        self.transport, self.bucket_mb = g.weight_transport, g.weight_bucket_mb
        # the generator in the trainer's process: weights pass within it (TrainerHost.publish_local)
        self.local = g.in_trainer_process and trainer is not None
        self.wire_dtype = wire_dtype(g.weight_dtype, getattr(family_config(cfg.policy), "dtype", "float32"),
                                     g.weight_transport)  # object store: what a publication's arrays carry
        self.timeout_s = cfg.faults.step_timeout_s
        self.start_timeout_s = cfg.faults.start_timeout_s  # generators may still be building their models
        self.epoch = -1
        self.address: Optional[tuple] = None
        self.channel_backend = "gloo"
        self._sends: Deque = deque()  # refs of the trainer's sends not yet harvested
        self.recent_send_s: Deque[float] = deque(maxlen=1000)  # trainer-side seconds of recent sends
        self.sends_timed, self.send_s_max, self.bytes_per_send = 0, 0.0, 0
        self.failed_sends = self.publishes = 0

    @property
    def collective(self) -> bool:
        return self.transport == "collective" and self.trainer is not None

    def open(self) -> None:
        """Build a new channel epoch with the session's current generators (collective)."""
        if not self.collective:
            return
        trainer, gens, b = self.trainer, self.generators, self.backend
        if self.address is None:
            self.address = b.get(trainer.weights_listen.remote())
        plan = self.placement
        self.channel_backend = kind = plan.weight_channel_backend() if plan is not None else "gloo"
        self.epoch += 1
        world = 1 + len(gens)
        addr, port = self.address
        b.get([trainer.weights_join.remote(self.epoch, world, kind)]
              + [g.weights_join.remote(addr, port, i + 1, world, self.epoch, kind, self.timeout_s)
                 for i, g in enumerate(gens)],  # they meet: all at once
              timeout_s=self.start_timeout_s, what=f"weight channel epoch {self.epoch} (weights_join)",
              actors=[trainer] + list(gens))

    def message(self):
        """A ref to the trainer's current weights as the object store carries them."""
        return self.trainer.get_weights.remote(self.wire_dtype)

    def publish(self, wait: bool) -> None:
        """Send the trainer's current weights to every generator; `wait`: until they hold them."""
        trainer, gens = self.trainer, self.generators
        self.publishes += 1
        if self.local:  # generator.in_trainer_process: within the host's process
            refs, actors = [gens[0].host.publish_local.remote(self.wire_dtype)], list(gens)
        elif not self.collective:
            msg = self.message()  # an object ref: fetched by each generator
            refs, actors = [g.set_weights.remote(msg) for g in gens], list(gens)
        else:
            send = trainer.weights_send.remote()
            refs = [send] + [g.weights_receive.remote(self.epoch, self.bucket_mb) for g in gens]
            actors = [trainer] + list(gens)
            self._sends.append(send)
        if wait:  # the first publication waits for the generators to finish starting
            self.backend.get(refs, timeout_s=self.start_timeout_s if self.publishes == 1 else None,
                             what=f"weight publication {self.publishes}", actors=actors)
        self._harvest()

    def _harvest(self) -> None:
        ray = getattr(self.backend, "ray", None)
        while self._sends:
            ref = self._sends[0]
            if ray is not None and not ray.wait([ref], timeout=0)[0]:
                return
            self._sends.popleft()
            try:
                out = self.backend.get(ref)
            except Exception:  # a generator died mid-send: the supervisor replaces it and reopens
                self.failed_sends += 1
                continue
            if out:
                self.recent_send_s.append(out["seconds"])
                self.sends_timed += 1
                self.send_s_max = max(self.send_s_max, out["seconds"])
                self.bytes_per_send = out["bytes"]

    def report(self) -> dict:
        """summary.json -> weights."""
        self._harvest()
        out = {"transport": self.transport, "publishes": self.publishes}
        try:
            out["generator_versions"] = self.backend.get([g.get_version.remote() for g in self.generators])
        except Exception:  # a generator died at the very end
            out["generator_versions"] = None
        if self.collective:
            timed = bool(self.recent_send_s)
            out.update(backend=self.channel_backend, epochs=self.epoch + 1, sends_timed=self.sends_timed,
                       failed_sends=self.failed_sends, bytes_per_send=self.bytes_per_send,
                       send_s_median_recent=percentiles(self.recent_send_s, (50,))["p50"] if timed else None,
                       send_s_max=self.send_s_max if timed else None)
        return out
