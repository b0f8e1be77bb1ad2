"""The trainer feed without Ray: exact micro-batches, one step per global batch, at most two
micro-batches in flight, whole batches in `async-rollout`, and what a stop leaves."""

from types import SimpleNamespace

import numpy as np

from rlvla3.core.assignments import GroupSampler
from rlvla3.core.experience_stream import ExperienceStream, StreamSettings
from rlvla3.core.types import Episode, TrainResult
from rlvla3.runtime.async_schedule import TrainerFeed


class _Trainer:
    """Records calls; a call's ref is ready once `done` holds it."""

    def __init__(self):
        self.calls, self.done = [], set()
        for name in ("accumulate", "step", "train_batch"):
            setattr(self, name, SimpleNamespace(remote=lambda *a, name=name: self._call(name, a)))

    def _call(self, name, args):
        self.calls.append((name, len(args[0]) if args else 0))
        return len(self.calls) - 1


def _feed(streaming: bool, samples: int = 20):
    s = ExperienceStream(StreamSettings("ppo", 1, samples, 5, 100), GroupSampler(1, 1, 1, seed=0))
    ((w, (a,)),) = s.admit([0], 1)
    n = samples
    s.add_episodes([(w, Episode(0, 0, a.group_key, np.zeros((n, 2, 2, 3), np.uint8), np.zeros((n, 1), np.float32),
                                "x", np.zeros((n, 1), np.int64), np.zeros((n, 1), np.float32), np.zeros(n, np.float32),
                                np.zeros(n, np.int64), np.zeros(n, np.float32), False, True, 0.0, n))])
    trainer = _Trainer()
    backend = SimpleNamespace(ray=SimpleNamespace(wait=lambda refs, timeout: ([r for r in refs if r in trainer.done],
                                                                              [])),
                              get=lambda ref, **kw: [TrainResult(1, 8, {})])
    ids = []
    return TrainerFeed(backend, trainer, s, micro_batch=3, global_batch=8, streaming=streaming, trained_ids=ids), \
        trainer, ids


def test_full_streams_exact_micro_batches_and_steps_once_per_global_batch():
    feed, trainer, ids = _feed(streaming=True)
    assert feed.feed() and trainer.calls == [("accumulate", 3), ("accumulate", 3)]  # two in flight at most
    assert not feed.feed() and feed.busy
    trainer.done |= {0, 1}
    assert feed.feed() and trainer.calls[2:] == [("accumulate", 2), ("step", 0)]  # 3 + 3 + 2 = the global batch
    assert feed.samples_trained == 8 and sum(len(i) for i in ids) == 8
    assert feed.finished_update() is None and not feed.feed()  # one update in flight at a time
    trainer.done.add(3)
    assert feed.finished_update()[0].version == 1 and not feed.busy
    assert feed.feed() and feed.finish() == ([], 6)  # two micro-batches held, never stepped


def test_async_rollout_hands_over_whole_global_batches():
    feed, trainer, ids = _feed(streaming=False, samples=12)
    assert feed.feed() and trainer.calls == [("train_batch", 8)]
    results, unstepped = feed.finish()
    assert len(results) == 1 and unstepped == 0 and feed.update is None
    assert not feed.feed() and feed.stream.samples_waiting == 4  # not a global batch
