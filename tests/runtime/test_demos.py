"""SFT demonstrations: collected in parallel processes, identical to a one-process collection
(each episode has its own seed), with progress per unit and clear errors."""

import time
import numpy as np
import pytest

from rlvla3.envs.config import TabletopConfig
from rlvla3.runtime import demos as demos_mod
from rlvla3.runtime.demos import UNIT_EPISODES, collect_demos


def _cfg():
    return TabletopConfig(image_size=16, families=["reach"], max_steps=12, num_init_states=4, num_eval_init_states=2)


def test_parallel_collection_equals_serial_and_reports_progress():
    cfg, n = _cfg(), UNIT_EPISODES + 3  # two units per task: the pool gets work for both processes
    seen = []
    serial = collect_demos(cfg, n, 0.3, 4, seed=5, workers=1, progress=lambda d, t, p: seen.append((d, t)))
    parallel = collect_demos(cfg, n, 0.3, 4, seed=5, workers=2)
    tasks = len(set(serial.instructions))
    assert serial.episodes == parallel.episodes == n * tasks
    assert seen[-1] == (n * tasks, n * tasks) and len(seen) >= 2 and seen == sorted(seen)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.actions, parallel.actions)
    np.testing.assert_array_equal(serial.proprio, parallel.proprio)
    assert serial.instructions == parallel.instructions
    assert (serial.successes, serial.env_steps) == (parallel.successes, parallel.env_steps)
    assert serial.successes > 0 and len(serial) >= serial.episodes  # at least one labelled chunk per episode
    assert not demos_mod._ENV  # the one-process path closes its env (a renderer's memory in the driver)


def test_other_seed_other_demos_and_bad_count():
    a = collect_demos(_cfg(), 2, 0.3, 4, seed=1)
    b = collect_demos(_cfg(), 2, 0.3, 4, seed=2)
    assert not np.array_equal(a.actions[:len(b)], b.actions[:len(a)]) or len(a) != len(b)
    with pytest.raises(ValueError, match="demos_per_task"):
        collect_demos(_cfg(), 0, 0.3, 4, seed=1)


def _stuck_unit(*_args):
    time.sleep(120)  # an env that never returns, in a spawned collecting process


def test_a_stuck_collection_fails_at_its_deadline_and_stops_its_processes():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="not collected within 0.5s"):
        collect_demos(_cfg(), 2 * UNIT_EPISODES, 0.3, 4, seed=1, workers=2, unit_timeout_s=0.5, _unit_fn=_stuck_unit)
    assert time.monotonic() - t0 < 15, "the unfinished collecting processes were waited for, not stopped"
