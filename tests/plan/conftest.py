import pytest

from rlvla3.plan.profile import Dist, EnvCosts, GeneratorCosts, Layout, StageProfile, TrainerCosts


@pytest.fixture
def make_profile():
    """A profile of constant costs, fast everywhere unless a test slows a stage down."""

    def make(chunk_ms=10.0, reset_ms=0.0, horizon=10, episode=None, act_ms=0.0, slots=4, workers=1, gens=1,
             max_batch=64, max_wait_ms=0.0, rate=1e9, stream_rate=None, eta=100, gb=32, mb=8, epochs=1, spd=4.0,
             poll_ms=1.0, rtt_ms=0.0, publish_s=0.0):
        return StageProfile(
            "test", EnvCosts(Dist(chunk_ms), Dist(reset_ms), spd, horizon, float(episode or horizon)),
            GeneratorCosts({1: act_ms, 1024: act_ms}, request_rtt_ms=rtt_ms),
            TrainerCosts(rate, stream_rate or rate, publish_s=publish_s),
            Layout(workers, slots // workers, 1, gens, max_batch, max_wait_ms, gb, mb, epochs, eta, 1, poll_ms))

    return make
