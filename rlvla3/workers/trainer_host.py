"""The trainer and one asynchronous generator in one process (`generator.in_trainer_process`).

On one GPU, two processes are two CUDA contexts, which the device time-slices: while the
generator answers a batch of 2, the whole GPU is its. In one process the generator's forward
passes run on a CUDA stream of their own beside the trainer's kernels. Measured outside a run
(docs/benchmarks/gpu-dec07f-libero-oft1b-pinned, oft-1b on an H100, a generator at 23 forward
passes a second): the trainer kept 0.91 of its speed alone in one process against 0.71 in two,
with the generator's forward no slower.

The host is one Ray async actor. The generator's calls run on its event loop, as they do in an
`AsyncGenerator` actor of their own; the trainer's run one at a time, in call order, on a thread
of their own, as in a `Trainer` actor, so training never blocks serving. The driver and the env
workers hold a `RoleView` per role, which they call as they would the role's own actor.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from functools import partial

ROLES = ("trainer", "generator")


class TrainerHost:
    def __init__(self, cfg, seed: int, torch_threads: int, generator_args: tuple, generator_kwargs: dict):
        from rlvla3.workers.async_generator import AsyncGenerator
        from rlvla3.workers.trainer import Trainer

        # the generator first: the trainer seeds torch last, so its weights start as in an actor of its own
        self.generator = AsyncGenerator(*generator_args, own_stream=True, **generator_kwargs)
        self.trainer = Trainer(cfg, seed, torch_threads)
        self._train_thread = ThreadPoolExecutor(1, thread_name_prefix="trainer")

    async def call(self, role: str, name: str, *args, **kwargs):
        if role == "trainer":
            fn = partial(getattr(self.trainer, name), *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._train_thread, fn)
        if role != "generator":
            raise ValueError(f"TrainerHost: unknown role {role!r} (expected one of {ROLES})")
        out = getattr(self.generator, name)(*args, **kwargs)
        return await out if inspect.isawaitable(out) else out

    async def publish_local(self, dtype: str = "float32") -> int:
        """The trainer's current weights to the generator without the object store: taken in the
        trainer's call order (between two of its calls, so never half-updated), staged on the
        generator's receive thread and swapped in between two batches, as any publication is.
        `dtype`: what the tensors carry (the publisher's resolved generator.weight_dtype)."""
        from rlvla3.workers.trainer_weights import local_weights

        msg = await asyncio.get_running_loop().run_in_executor(self._train_thread, local_weights, self.trainer,
                                                                 dtype)
        return await self.generator.set_weights(msg)


class RoleView:
    """One role of a `TrainerHost` actor, called like a Ray actor handle of its own:
    `view.method.remote(*args)`. Attributes starting with `_` (Ray's `_actor_id`, which the
    deadlines and the env workers read) are the host handle's. Picklable: env workers get it."""

    def __init__(self, host, role: str):
        if role not in ROLES:
            raise ValueError(f"RoleView: unknown role {role!r} (expected one of {ROLES})")
        self.host, self.role = host, role

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name.startswith("_"):
            return getattr(self.__dict__["host"], name)
        return _Method(self.host, self.role, name)

    def __getstate__(self):
        return {"host": self.host, "role": self.role}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"RoleView({self.role} of {self.host!r})"


class _Method:
    def __init__(self, host, role: str, name: str):
        self.host, self.role, self.name = host, role, name

    def remote(self, *args, **kwargs):
        return self.host.call.remote(self.role, self.name, *args, **kwargs)
