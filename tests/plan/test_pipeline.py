"""The pipeline models against closed-form cases."""

import numpy as np
import pytest

from rlvla3.plan.from_bench import profile_from_bench
from rlvla3.plan.lockstep import simulate_lockstep
from rlvla3.plan.model import predict, stage_bounds
from rlvla3.plan.sim_common import episode_lengths, straggler_slots


def test_one_slot_at_fixed_latency_steps_at_one_over_latency(make_profile):
    p = make_profile(chunk_ms=10.0, slots=1, spd=4.0)
    r = predict(p, "full", seconds=20, warmup=2)
    assert r.policy_calls_per_s == pytest.approx(100.0, rel=0.01)
    assert r.env_steps_per_s == pytest.approx(400.0, rel=0.01)
    assert r.env_utilization == pytest.approx(1.0, abs=0.01)


def test_batcher_timeout_adds_to_the_cycle_and_batches_every_slot(make_profile):
    """8 slots in phase, max_wait 5 ms, max_batch above 8: each cycle is chunk + wait + forward."""
    p = make_profile(chunk_ms=20.0, act_ms=3.0, slots=8, max_batch=64, max_wait_ms=5.0)
    r = predict(p, "async-rollout", seconds=20, warmup=2)
    assert r.mean_batch == pytest.approx(8.0)
    assert r.policy_calls_per_s == pytest.approx(8 / 0.028, rel=0.01)
    assert r.generator_utilization[0] == pytest.approx(3.0 / 28.0, abs=0.01)



def test_a_late_serving_loop_lengthens_the_cycle_by_its_lateness(make_profile):
    """As above, with the batch leaving 2 ms after its deadline (`late_ms`): cycle chunk + wait +
    late + forward; a full batch does not wait for it."""
    p = make_profile(chunk_ms=20.0, act_ms=3.0, slots=8, max_batch=64, max_wait_ms=5.0)
    p.generator.late_ms = 2.0
    r = predict(p, "async-rollout", seconds=20, warmup=2)
    assert r.mean_batch == pytest.approx(8.0)
    assert r.policy_calls_per_s == pytest.approx(8 / 0.030, rel=0.01)
    p = make_profile(chunk_ms=20.0, act_ms=3.0, slots=8, max_batch=8, max_wait_ms=50.0)
    p.generator.late_ms = 2.0
    assert predict(p, "full", seconds=20, warmup=2).policy_calls_per_s == pytest.approx(8 / 0.023, rel=0.01)


def test_a_late_loop_also_batches_more(make_profile):
    """Two slots, chunk 1 ms, forward 10 ms, max_wait 0: without lateness the slots alternate,
    one decision per 10 ms forward; 1 ms late, a slot's request waits long enough for the other's:
    two decisions per 1 + 1 + 10 ms cycle (why the measured lateness lowers the generator's
    predicted utilisation on the 2-core VM)."""
    p = make_profile(chunk_ms=1.0, act_ms=10.0, slots=2, max_batch=64, max_wait_ms=0.0)
    assert predict(p, "full", seconds=20, warmup=2).policy_calls_per_s == pytest.approx(100.0, rel=0.01)
    p.generator.late_ms = 1.0
    r = predict(p, "full", seconds=20, warmup=2)
    assert r.mean_batch == pytest.approx(2.0)
    assert r.policy_calls_per_s == pytest.approx(2 / 0.012, rel=0.01)
    assert r.generator_utilization[0] == pytest.approx(10 / 12, abs=0.01)

def test_full_batch_fires_at_once(make_profile):
    p = make_profile(chunk_ms=20.0, act_ms=3.0, slots=8, max_batch=8, max_wait_ms=50.0)
    r = predict(p, "full", seconds=20, warmup=2)
    assert r.policy_calls_per_s == pytest.approx(8 / 0.023, rel=0.01)


def test_generator_bound(make_profile):
    """Batches of one at 10 ms: 100 decisions/s, whatever the 16 fast slots could do."""
    p = make_profile(chunk_ms=1.0, act_ms=10.0, slots=16, max_batch=1)
    r = predict(p, "full", seconds=20, warmup=2)
    assert r.policy_calls_per_s == pytest.approx(100.0, rel=0.01)
    assert r.generator_utilization[0] == pytest.approx(1.0, abs=0.01)


def test_full_reaches_the_simulators_bound_when_nothing_else_binds(make_profile):
    p = make_profile(chunk_ms=50.0, reset_ms=200.0, horizon=10, slots=16, act_ms=0.5, rtt_ms=0.0)
    bound = stage_bounds(p).simulators  # 16 slots x 10 decisions x 4 steps per 0.7 s = 914 steps/s
    assert bound == pytest.approx(16 * 40 / 0.7, rel=1e-6)
    r = predict(p, "full", seconds=60, warmup=5)
    assert r.env_steps_per_s == pytest.approx(bound, rel=0.03)


def test_full_is_trainer_bound_at_the_streaming_rate(make_profile):
    p = make_profile(chunk_ms=5.0, slots=32, rate=400.0, stream_rate=200.0, eta=2, gb=64, mb=16, epochs=2)
    r = predict(p, "full", seconds=60, warmup=5)
    assert r.trained_samples_per_s == pytest.approx(200.0, rel=0.05)
    assert r.trainer_utilization == pytest.approx(1.0, abs=0.03)
    assert r.env_utilization < 0.2  # the staleness window holds the producers back
    r = predict(p, "async-rollout", seconds=60, warmup=5)
    assert r.trained_samples_per_s == pytest.approx(400.0, rel=0.05)


def test_the_trainers_weight_pack_holds_its_next_micro_batch(make_profile):
    # 64 samples a version at 200/s stream in 0.32 s; packing the weights takes 0.16 s more, in
    # which the trainer does not train: 64 / 0.48 s, and busy training 2/3 of the time.
    p = make_profile(chunk_ms=5.0, slots=32, rate=400.0, stream_rate=200.0, eta=2, gb=64, mb=16, epochs=2)
    p.trainer.pack_s = 0.16
    r = predict(p, "full", seconds=60, warmup=5)
    assert r.trained_samples_per_s == pytest.approx(64 / 0.48, rel=0.05)
    assert r.trainer_utilization == pytest.approx(2 / 3, abs=0.03)
    r = predict(p, "async-rollout", seconds=60, warmup=5)
    assert r.trained_samples_per_s == pytest.approx(64 / 0.32, rel=0.05)


def test_an_asynchronous_bench_gives_the_trainers_weight_pack():
    """gpu-dec07e (oft-1b, 2.3 GB a version): the trainer took 0.95 s per version off the device in `full`."""
    p = profile_from_bench("docs/benchmarks/gpu-dec07e-libero-oft1b-graphs/spatial-1/bench.json")
    assert p.trainer.pack_s == pytest.approx(0.953)
    assert p.sources["trainer.pack_s"] == "modes.full.publication pack_s (median)"

def test_stragglers_remove_their_share_of_a_simulator_bound_pipeline(make_profile):
    p = make_profile(chunk_ms=40.0, reset_ms=0.0, slots=20, workers=4, act_ms=0.2)
    clean = predict(p, "full", seconds=40, warmup=4).env_steps_per_s
    p.layout.straggler_fraction, p.layout.straggler_slowdown = 0.2, 5.0
    slow = predict(p, "full", seconds=40, warmup=4).env_steps_per_s
    assert slow / clean == pytest.approx(0.8 + 0.2 / 5, rel=0.02)


def test_sync_is_the_sum_of_its_stages(make_profile):
    """Constant costs: reset + H x (forward + chunk + lock-step overhead) + the reset of the
    episodes that end at the last step (the env worker resets a finished slot inside the step)
    + bootstrap forward + training + publication + per-iteration overhead."""
    p = make_profile(chunk_ms=30.0, reset_ms=100.0, horizon=10, slots=8, act_ms=4.0, rate=160.0, publish_s=0.2)
    p.overheads.lockstep_ms, p.overheads.iteration_s = 2.0, 0.05
    rollout = 0.1 + 10 * (0.004 + 0.030 + 0.002) + 0.1 + 0.004
    iteration = rollout + 80 / 160.0 + 0.2 + 0.05
    r = simulate_lockstep(p, "sync", seconds=10)
    assert r.env_steps_per_s == pytest.approx(80 * 4 / iteration, rel=1e-9)
    assert r.trainer_utilization == pytest.approx(0.5 / iteration, rel=1e-9)
    assert r.env_utilization == pytest.approx((0.1 + 0.3 + 0.1) / iteration, rel=1e-9)
    # async-train hides the training behind the next rollout (0.5 s < the 0.564 s rollout)
    a = simulate_lockstep(p, "async-train", seconds=10, min_iterations=40)
    assert a.env_steps_per_s == pytest.approx(80 * 4 / (rollout + 0.25), rel=0.01)


def test_sync_waits_for_the_slowest_slot_and_sync_best_stops_early(make_profile):
    p = make_profile(chunk_ms=30.0, horizon=10, episode=5.5, slots=64, rate=1e9)
    s, b = simulate_lockstep(p, "sync", 30), simulate_lockstep(p, "sync-best", 30)
    assert s.policy_calls_per_s == pytest.approx(64 / 0.030, rel=0.01)  # keep: every slot steps every chunk
    assert b.policy_calls_per_s < s.policy_calls_per_s  # idle slots wait for the longest episode


def test_episode_lengths_have_the_requested_mean():
    lens = episode_lengths(np.random.default_rng(0), 15, 9.9, 200_000)
    assert lens.mean() == pytest.approx(9.9, rel=0.01)
    assert lens.max() == 15 and lens.min() >= 1
    assert (episode_lengths(np.random.default_rng(0), 15, 15.0, 10) == 15).all()


def test_straggler_slots_are_the_benchs_own():
    # round(0.2 x 64) = 13: 4 slots of the first worker of 16, 3 of each other, spread within each
    assert sorted(straggler_slots(64, 4, 0.2)) == [0, 4, 8, 12, 16, 21, 26, 32, 37, 42, 48, 53, 58]


def test_coalescing_window_adds_to_the_cycle(make_profile):
    """8 slots of one worker in phase, chunk 20 ms, free forward: a 5 ms coalescing window makes the
    cycle 25 ms and sends the 8 requests as one batch."""
    p = make_profile(chunk_ms=20.0, act_ms=0.0, slots=8, max_batch=64, max_wait_ms=0.0)
    p.layout.coalesce_ms = 5.0
    r = predict(p, "async-rollout", seconds=20, warmup=2)
    assert r.policy_calls_per_s == pytest.approx(8 / 0.025, rel=0.01)
    assert r.mean_batch == pytest.approx(8.0)
