"""Window metrics from hand-made spans: every rate is a count inside the window / its length."""

import pytest

from rlvla3.bench.measure import step_cpu, utilization, window_metrics, worker_of
from rlvla3.core.timeline import Span


def _spans():
    s = []
    for k in range(10):  # env0/slot0 steps 4 sim steps every 1 s, busy 0.5 s each
        s.append(Span("env0/slot0", "env_step", 10.0 + k, 0.5, {"steps": 4}))
    s.append(Span("env0/slot1", "reset", 10.0, 2.0))
    for k in range(5):  # generator: a batch of 8 every 2 s, 0.25 s each
        s.append(Span("generator0", "infer_batch", 10.0 + 2 * k, 0.25, {"n": 8}))
    s.append(Span("trainer", "micro_batch", 12.0, 1.0, {"n": 16, "new": True, "lag": {0: 10, 1: 6}}))
    s.append(Span("trainer", "micro_batch", 13.0, 1.0, {"n": 16, "new": False}))  # a later pass: not new data
    s.append(Span("trainer", "optimizer_step", 14.0, 0.1))
    s.append(Span("driver", "weight_sync", 15.0, 0.5))
    s.append(Span("env0/slot0", "env_step", 30.0, 0.5, {"steps": 4}))  # outside the window
    return s


def test_rates_are_window_counts_over_window_length():
    m = window_metrics(_spans(), 10.0, 20.0)
    assert m["env_steps"] == 40 and m["env_steps_per_s"] == pytest.approx(4.0)
    assert m["chunks_per_s"] == pytest.approx(1.0)
    assert m["policy_calls_per_s"] == pytest.approx(4.0)  # 5 batches x 8 / 10 s
    assert m["trained_samples_per_s"] == pytest.approx(1.6)  # only first-pass samples count
    assert m["optimizer_steps_per_s"] == pytest.approx(0.1)
    assert m["env_steps_per_decision"] == pytest.approx(4.0)
    assert m["generator"]["mean_batch"] == 8.0
    assert m["staleness_hist"] == {"0": 10, "1": 6}
    assert m["weight_sync"] == {"count": 1, "blocking_s": 0.5}


def test_utilization_per_worker():
    u = utilization(_spans(), 10.0, 20.0)
    # env0: slot0 busy 5 of 10 s, slot1 busy 2 of 10 s -> mean 0.35
    assert u["env0"]["utilization"] == pytest.approx(0.35) and u["env0"]["tracks"] == 2
    assert u["generator0"]["utilization"] == pytest.approx(0.125)
    assert u["trainer"]["utilization"] == pytest.approx(0.21)
    assert "driver" not in u
    assert worker_of("env3/slot12") == "env3" and worker_of("trainer") == "trainer"


def test_empty_window_is_an_error():
    with pytest.raises(ValueError):
        window_metrics(_spans(), 5.0, 5.0)


def test_latency_profile_spreads_chunk_cost_over_its_sub_steps_and_replays(tmp_path):
    import json

    from rlvla3.bench.profile import latency_profile
    from rlvla3.envs.config import LatencyConfig
    from rlvla3.envs.latency import LatencyModel

    spans = [Span("env0/slot0", "reset", 0.0, 0.3), Span("env0/slot0", "env_step", 0.3, 0.04, {"steps": 4}),
             Span("env0/slot1", "env_step", 0.2, 0.1, {"steps": 2}), Span("trainer", "micro_batch", 0.0, 1.0)]
    prof = latency_profile(spans, source="test")
    assert prof["step_ms"] == [50.0, 50.0, 10.0, 10.0, 10.0, 10.0]  # in start order
    assert prof["reset_ms"] == [300.0]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    model = LatencyModel(LatencyConfig(kind="replay", profile=str(path)), seed=0)
    assert sorted({round(model.step_cost_s() * 1000, 3) for _ in range(12)}) == [10.0, 50.0]
    with pytest.raises(ValueError, match="reset"):
        latency_profile(spans[1:])


def test_episode_lengths_are_the_steps_between_two_resets_inside_the_window():
    from rlvla3.bench.measure import episode_lengths

    s = [Span("env0/slot0", "env_step", 9.0, 0.5, {"steps": 4}),  # before the window
         Span("env0/slot0", "reset", 10.0, 0.3)]
    s += [Span("env0/slot0", "env_step", 10.5 + k, 0.5, {"steps": 4}) for k in range(3)]  # 12 steps...
    s += [Span("env0/slot0", "env_step", 13.5, 0.1, {"steps": 2}), Span("env0/slot0", "reset", 14.0, 0.3)]  # ...+2
    s += [Span("env0/slot0", "env_step", 14.5, 0.5, {"steps": 4}), Span("env0/slot0", "reset", 15.0, 0.3)]
    s += [Span("env0/slot0", "env_step", 15.5, 0.5, {"steps": 4})]  # unfinished at the window's end
    s += [Span("env0/slot1", "env_step", 10.0, 0.5, {"steps": 4}), Span("env0/slot1", "reset", 11.0, 0.3),
          Span("env0/slot1", "env_step", 12.0, 0.5, {"steps": 3}), Span("env0/slot1", "reset", 19.9, 0.3)]  # ends after
    assert sorted(episode_lengths(s, 10.0, 20.0)) == [4, 14]
    assert window_metrics(s, 10.0, 20.0)["episode_steps_mean"] == 9.0


def test_trained_samples_over_whole_versions_do_not_depend_on_where_the_window_cuts_a_cycle():
    # sync, 10 s cycles: a swap, then (later) 2 global batches of 3 new micro-batches of 8 and
    # their optimizer steps, then a second epoch of old micro-batches
    s = []
    for c in range(4):
        t = 10.0 * c
        s.append(Span("generator0", "weight_swap", t, 0.5))
        s.append(Span("generator1", "weight_swap", t + 0.2, 0.5))  # another generator: not counted twice
        for g in range(2):
            for k in range(3):
                s.append(Span("trainer", "micro_batch", t + 5 + g + 0.3 * k, 0.2, {"n": 8, "new": True}))
            s.append(Span("trainer", "optimizer_step", t + 5.9 + g, 0.1))
        for k in range(6):
            s.append(Span("trainer", "micro_batch", t + 7 + 0.3 * k, 0.2, {"n": 8, "new": False}))
    for lo, hi in ((0.0, 35.0), (3.0, 38.0), (7.0, 42.0)):  # windows cutting the cycles anywhere
        m = window_metrics(s, lo, hi)
        assert m["trained_samples_per_s_whole_versions"] == pytest.approx(48 / 10), (lo, hi)  # one cycle: 48 new
    counts = [window_metrics(s, lo, lo + 15.0)["trained_samples_per_s"] for lo in (0.0, 4.0)]
    assert counts[0] != counts[1]  # the window count does depend on it (48 or 96 in 15 s)
    assert window_metrics(s, 1.0, 9.0)["trained_samples_per_s_whole_versions"] is None  # no swap: no whole version


def test_version_lag_is_from_the_trainer_having_a_version_to_generator_0_serving_it():
    s = [Span("trainer", "version_ready", 10.0, 0.0, {"version": 1}),
         Span("generator0", "weight_swap", 13.0, 0.5, {"version": 1}),  # served 3.5 s later
         Span("generator1", "weight_swap", 19.0, 0.5, {"version": 1}),  # another generator: not counted
         Span("trainer", "version_ready", 20.0, 0.0, {"version": 2}),
         Span("generator0", "weight_swap", 21.0, 0.5, {"version": 2}),  # 1.5 s
         Span("generator0", "weight_swap", 25.0, 0.5, {"version": 9}),  # no matching version: ignored
         Span("env0/slot0", "env_step", 12.0, 1.0, {"steps": 4})]
    lag = window_metrics(s, 11.0, 30.0)["version_lag_s"]
    assert lag["p50"] == pytest.approx(2.5) and lag["p95"] == pytest.approx(3.4)
    assert window_metrics(s, 11.0, 12.5)["version_lag_s"] == {}  # no swap in the window


def test_publication_splits_into_the_trainers_pack_and_generator_0s_staging_and_swap():
    s = [Span("trainer", "weight_pack", 10.0, 2.0, {"version": 1, "mib": 656.0}),
         Span("trainer", "weight_pack", 20.0, 4.0, {"version": 2, "mib": 656.0}),
         Span("generator0", "weight_stage", 13.0, 1.5, {"version": 1}),
         Span("generator0", "weight_stage", 25.0, 0.5, {"version": 2}),
         Span("generator1", "weight_stage", 25.0, 7.0, {"version": 2}),  # another generator: not counted
         Span("generator0", "weight_swap", 15.0, 1.0, {"version": 1}),
         Span("generator0", "weight_swap", 27.0, 3.0, {"version": 2}),
         Span("generator1", "weight_swap", 28.0, 9.0, {"version": 2}),  # another generator: not counted
         Span("env0/slot0", "env_step", 12.0, 1.0, {"steps": 4})]
    pub = window_metrics(s, 9.0, 40.0)["publication"]
    assert pub == {"pack_s": 3.0, "mib": 656.0, "stage_s": 1.0, "swap_s": 2.0}
    assert window_metrics(s, 9.0, 11.0)["publication"] == {}  # neither ends in the window


def test_the_generator_threads_cpu_in_its_forward_spans_is_averaged_where_recorded():
    s = [Span("generator0", "infer_batch", 10.0 + k, 0.5, {"n": 4, "cpu": 0.002 * (k + 1)}) for k in range(3)]
    assert window_metrics(s, 10.0, 20.0)["generator"]["forward_cpu_ms_mean"] == pytest.approx(4.0)
    assert "forward_cpu_ms_mean" not in window_metrics(_spans(), 10.0, 20.0)["generator"]  # older spans: no key


def test_chunk_steps_wall_and_cpu():
    steps = [Span("env0/slot0", "env_step", 0.0, 0.040, {"steps": 8, "cpu": 0.030}),
             Span("env0/slot1", "env_step", 0.0, 0.060, {"steps": 8, "cpu": 0.020})]
    assert step_cpu(steps) == pytest.approx({"mean": 50.0, "cpu_mean": 25.0})
    assert step_cpu([Span("env0/slot0", "env_step", 0.0, 0.04, {"steps": 8})]) == pytest.approx({"mean": 40.0})
    assert step_cpu([]) == {}


def test_the_trainers_window_is_training_packing_and_idle():
    from rlvla3.bench.measure import trainer_time

    spans = [Span("trainer", "micro_batch", 0.0, 4.0, {"n": 8}), Span("trainer", "optimizer_step", 4.0, 1.0, {}),
             Span("trainer", "weight_pack", 5.0, 1.0, {}), Span("trainer", "micro_batch", 9.0, 2.0, {"n": 8}),
             Span("generator0", "infer_batch", 0.0, 10.0, {"n": 1})]  # another track
    t = trainer_time(spans, 0.0, 10.0)  # the last micro-batch is clipped to the window
    assert t == pytest.approx({"micro_batch": 0.5, "optimizer_step": 0.1, "weight_pack": 0.1, "idle": 0.3})
    assert trainer_time([], 0.0, 10.0) == {} and trainer_time(spans, 5.0, 5.0) == {}
