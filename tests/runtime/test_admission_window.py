"""The async driver widens admission to a new version only once every generator holds it."""

from types import SimpleNamespace

from rlvla3.core.staleness import StalenessController
from rlvla3.runtime.async_schedule import AsyncDriver


class FakeRay:
    def __init__(self):
        self.done = set()

    def wait(self, refs, num_returns, timeout):
        assert timeout == 0  # the driver's tick never blocks on it
        ready = [r for r in refs if r in self.done]
        return ready, [r for r in refs if r not in self.done]


def _driver():
    d = AsyncDriver.__new__(AsyncDriver)  # only the parts _widen_window touches
    d.ctrl = StalenessController(eta=1, global_batch=10)
    d.b = SimpleNamespace(ray=FakeRay())
    d._publishing = None
    return d


def test_window_moves_when_every_generator_holds_the_new_weights():
    d = _driver()
    d._publishing = (1, ["g0", "g1"])
    d._widen_window()
    assert d.ctrl.version == 0 and d.ctrl.capacity() == 20  # nobody has version 1 yet
    d.b.ray.done.add("g0")
    d._widen_window()
    assert d.ctrl.version == 0  # one generator still serves version 0
    d.b.ray.done.add("g1")
    d._widen_window()
    assert d.ctrl.version == 1 and d.ctrl.capacity() == 30 and d._publishing is None
    d._widen_window()  # nothing pending: no change
    assert d.ctrl.version == 1

