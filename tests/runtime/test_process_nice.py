"""process.nice: env workers and generators run at a lower CPU priority than the trainer,
in every thread."""

import os

import pytest

from rlvla3.runtime.config import load_config
from rlvla3.runtime.session import start_session


def _nice(backend, actor) -> int:
    return backend.get(actor.__ray_call__.remote(lambda self: os.nice(0)))


@pytest.mark.parametrize("mode", ["sync", "full"])
def test_rollout_processes_get_the_nice_offset_and_the_trainer_does_not(mode):
    cfg = load_config(["preset=tiny-test", f"run.mode={mode}", "process.nice=7", "eval.num_workers=1"])
    s = start_session(cfg)
    try:
        base = _nice(s.backend, s.trainer)
        # the embedded cluster starts workers at nice 0 instead of Ray's 15 (which caps the
        # offset at 4) unless the user exported Ray's own setting
        assert base == int(os.environ.get("RAY_worker_niceness", 0))
        lowered = min(19, base + 7)
        assert [_nice(s.backend, w) for w in s.env_workers] == [lowered] * len(s.env_workers)
        # an async generator's event loop runs on another thread than its constructor
        assert [_nice(s.backend, g) for g in s.generators] == [lowered] * len(s.generators)
        assert _nice(s.backend, s.eval_workers[0]) == base  # evaluation does not compete with training
        if mode == "full" and "MALLOC_TRIM_THRESHOLD_" not in os.environ:  # process.heap_keep_mb reaches every worker
            env = s.backend.get(s.trainer.__ray_call__.remote(lambda self: dict(os.environ)))
            assert env["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20) and env["MALLOC_ARENA_MAX"] == "2"
    finally:
        s.shutdown()
