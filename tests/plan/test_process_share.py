"""Slots of one env process sharing its core (EnvCosts.process_share), against closed forms."""

import numpy as np
import pytest

from rlvla3.plan.from_bench import profile_from_bench
from rlvla3.plan.lockstep import process_shared, simulate_lockstep
from rlvla3.plan.model import predict, stage_bounds
from rlvla3.plan.timeline_costs import TSpan, alone_chunk_ms


def test_processor_sharing_from_a_common_start():
    # works 1, 2, 3 on one core: each ends after sum_j min(w_j, w_i); a second process is apart
    t = process_shared(np.array([1.0, 2.0, 3.0, 4.0, 0.0, 0.0]), 3, 1.0)
    assert t.tolist() == [3.0, 5.0, 6.0, 4.0, 0.0, 0.0]
    # half of each step on the core: the core part shares, the other half runs on its own
    assert process_shared(np.array([2.0, 2.0]), 2, 0.5).tolist() == [3.0, 3.0]


def test_one_process_of_four_slots_runs_at_its_cores_rate(make_profile):
    """4 slots, 10 ms of core work per chunk step, inference nearly free: one step per 10 ms in all, where
    independent slots would make four."""
    p = make_profile(chunk_ms=10.0, slots=4, workers=1, spd=4.0, act_ms=0.1)
    alone = predict(p, "full", seconds=20, warmup=2).env_steps_per_s
    p.env.process_share = 1.0
    shared = predict(p, "full", seconds=20, warmup=2)
    assert alone == pytest.approx(1600.0, rel=0.02)
    assert shared.env_steps_per_s == pytest.approx(400.0, rel=0.02)
    assert stage_bounds(p).simulators == pytest.approx(400.0, rel=1e-9)
    # lock-step: the four steps start together and each lasts 40 ms
    s = simulate_lockstep(p, "sync", seconds=10)
    assert s.policy_calls_per_s == pytest.approx(4 / 0.040, rel=0.01)


def test_alone_work_of_overlapping_steps():
    """env0: A on [0, 2] and B on [1, 3] overlap on [1, 2], each then at half speed: 1.5 s of work
    each. env1's step runs alone on its own process: all of it counts."""
    spans = [TSpan("env_step", "env0/slot0", 0.0, 2.0), TSpan("env_step", "env0/slot1", 1.0, 2.0),
             TSpan("env_step", "env1/slot0", 0.5, 1.0), TSpan("infer_batch", "generator0", 0.0, 3.0)]
    assert sorted(alone_chunk_ms(spans, 1.0)) == [1000.0, 1500.0, 1500.0]
    assert sorted(alone_chunk_ms(spans, 0.0)) == [1000.0, 2000.0, 2000.0]  # nothing shared: as measured
    assert alone_chunk_ms(spans, 1.0, limit=2) == [1500.0, 1000.0]  # the first by start, across processes


def test_metaworld_bench_prices_a_chunk_step_as_one_slot_alone():
    """gpu-dec06f-mt10-bench: `sync` stepped 4 slots per process at once (chunk median 32.5 ms);
    alone, a step is about a quarter of that."""
    p = profile_from_bench("docs/benchmarks/gpu-dec06f-mt10-bench/bench2/bench.json")
    assert p.env.process_share == 1.0
    assert 26.1 / 4 * 0.8 < p.env.chunk.median_ms < 26.1 / 4 * 1.3
    assert "as one slot alone" in p.sources["env.chunk"]


def test_libero_bench_with_kept_spans_only_reads_them(tmp_path):
    """gpu-dec07f keeps its spans in modes.tar.gz (no timeline.json): the chunk steps come from
    `sync-best`'s spans, two envs per process at once, priced as one env alone (share 0.8)."""
    p = profile_from_bench("docs/benchmarks/gpu-dec07f-libero-oft1b-pinned/spatial/bench.json")
    assert p.sources["env.chunk"] == "kept spans sync-best env_step spans as one slot alone"
    assert p.env.process_share == 0.8
    # measured: 453 ms a step with both envs stepping, 335 ms in `full`; 256 ms of CPU in a step
    assert 230.0 < p.env.chunk.mean_ms() < 290.0


def test_kept_spans_pick_each_modes_median_repeat(tmp_path):
    from rlvla3.bench.span_file import save_spans
    from rlvla3.core.timeline import Span
    from rlvla3.plan.timeline_costs import load_kept_spans

    for run, dur in (("sync_r1", 1.0), ("sync_r2", 2.0), ("full-host_r2", 3.0), ("full_r2", 4.0)):
        (tmp_path / "modes" / run).mkdir(parents=True)
        save_spans(str(tmp_path / "modes" / run / "spans.jsonl.gz"), [Span("env0/slot0", "env_step", 5.0, dur)])
    got = load_kept_spans(str(tmp_path), {"sync": 2, "full": 2, "full@host": 2, "async-rollout": 1})
    assert {m: [s.dur for s in v] for m, v in got.items()} == {"sync": [2.0], "full": [4.0], "full@host": [3.0]}
    # one run per mode (no repeats): the folder is the mode's name; packed as the device scripts pack it
    import tarfile
    one = tmp_path / "one"
    (one / "modes" / "sync-best").mkdir(parents=True)
    save_spans(str(one / "modes" / "sync-best" / "spans.jsonl.gz"), [Span("env1/slot1", "reset", 1.0, 0.5)])
    with tarfile.open(tmp_path / "modes.tar.gz", "w:gz") as tar:
        tar.add(one / "modes", arcname="modes")
    packed = tmp_path / "packed"
    packed.mkdir()
    (tmp_path / "modes.tar.gz").rename(packed / "modes.tar.gz")
    got = load_kept_spans(str(packed), {"sync-best": 1})
    assert [(s.name, s.track, s.start, s.dur) for s in got["sync-best"]] == [("reset", "env1/slot1", 1.0, 0.5)]


def test_libero_simulators_bound_shares_each_process_core_as_the_bench_steps_them():
    """The bench's simulators alone step both envs of a process at once: each step takes 1 + 0.8 of
    its time alone. gpu-dec07f measured 353 env steps/s; each env at its own speed would be 2 / 1.8
    of the prediction."""
    p = profile_from_bench("docs/benchmarks/gpu-dec07f-libero-oft1b-pinned/spatial/bench.json", "full")
    shared = stage_bounds(p).simulators
    assert shared == pytest.approx(353.0, rel=0.15)
    p.env.process_share = 0.0
    assert stage_bounds(p).simulators == pytest.approx(shared * 1.8, rel=1e-9)
