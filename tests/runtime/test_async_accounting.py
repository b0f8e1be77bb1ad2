"""The asynchronous driver's unit accounting without Ray: an episode reported both dropped
and delivered (issue 22) settles its unit once and never drives a count below zero."""

from types import SimpleNamespace

import numpy as np

from rlvla3.core.experience import GroupAssembler
from rlvla3.core.sample_queue import SampleQueue
from rlvla3.core.staleness import StalenessController
from rlvla3.core.types import Episode
from rlvla3.runtime.async_schedule import AsyncDriver
from rlvla3.runtime.supervisor import FaultReport


def _driver(grpo: bool) -> AsyncDriver:
    d = object.__new__(AsyncDriver)  # only the experience-stream state collect() touches
    d.grpo, d.a = grpo, SimpleNamespace(gamma=0.99, gae_lambda=0.95)
    d.ctrl, d.queue, d.broken, d.steps_by_worker = StalenessController(1, 8), SampleQueue(), set(), {}
    d.assembler = GroupAssembler(4) if grpo else None
    d.unit_left, d.unit_produced, d.unit_reserved = {}, {}, {}
    d.sup = SimpleNamespace(report=FaultReport(), incarnation=[0], settled=lambda w, k: None,
                            note_injected=lambda w, n: None)
    return d


def _episode(key: str, success: bool, n: int = 3, episode_id: int = 0) -> Episode:
    return Episode(0, 0, key, np.zeros((n, 8, 8, 3), np.uint8), np.zeros((n, 4), np.float32), "reach",
                   np.zeros((n, 2), np.int64), np.zeros((n, 2), np.float32), np.zeros(n, np.float32),
                   np.zeros(n, np.int64), np.r_[np.zeros(n - 1), float(success)].astype(np.float32), success, True, 0.0,
                   4 * n, episode_id=episode_id)


def _admit(d: AsyncDriver, key: str, episodes: int, reserve: int) -> None:
    assert d.ctrl.try_admit(reserve)
    d.unit_left[key], d.unit_produced[key], d.unit_reserved[key] = episodes, 0, reserve


def _drain(dropped, episodes):
    return {"faults_injected": 0, "dropped_keys": dropped, "episodes": episodes, "outcomes": [], "env_steps": 12}


def test_ppo_an_episode_both_dropped_and_delivered_settles_its_unit_once():
    d = _driver(grpo=False)
    _admit(d, "a0", 1, 15)
    d.collect([_drain(["a0"], [_episode("a0", True)])])  # raised KeyError: the drop had settled the unit
    assert d.unit_left == {} and d.ctrl.reserved == 0 and d.sup.report.episodes_dropped == 1


def test_grpo_an_episode_both_dropped_and_delivered_settles_its_group_once():
    """Group of 4, its first episode reported both ways: the group is broken (dropped) and
    settled exactly once; its last episode no longer finds a settled group's count."""
    d = _driver(grpo=True)
    _admit(d, "g0", 4, 40)
    eps = [_episode("g0", k % 2 == 0, episode_id=k) for k in range(4)]
    d.collect([_drain(["g0"], eps)])
    assert d.unit_left == {} and d.ctrl.reserved == 0 and d.queue.size == 0
    d.drop_episodes("g0", 1)  # a late report for a settled group changes nothing
    assert d.unit_left == {} and d.ctrl.reserved == 0

