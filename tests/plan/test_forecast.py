"""Profiles from committed benchmarks, the collective cost model, placements and the CLI."""

import json

import pytest

from rlvla3.plan.forecast import Placement, Scale, allreduce_s, broadcast_s, forecast, placements
from rlvla3.plan.cpu_calibration import defaults_at, respell, transport
from rlvla3.plan.from_bench import poll_ms_at, profile_from_bench
from rlvla3.plan.profile import StageProfile

BENCH = "docs/benchmarks/gpu-eta2-2gen/bench.json"


def test_ring_allreduce_and_broadcast_follow_the_bandwidth_model():
    gb = 1e9
    # 8 ranks in one node: 2 x 7/8 x 1 GB / 360 GB/s + 14 hops of 10 us
    assert allreduce_s(gb, 8) == pytest.approx(2 * 7 / 8 * gb / 360e9 + 14 * 10e-6)
    # 16 ranks cross nodes: 40 GB/s per GPU
    assert allreduce_s(gb, 16) == pytest.approx(2 * 15 / 16 * gb / 40e9 + 30 * 10e-6)
    assert allreduce_s(gb, 1) == 0.0
    assert broadcast_s(gb, 3, 8) == pytest.approx(gb / 360e9 + 2 * 10e-6)


def test_placements_cover_colocated_and_splits():
    ps = placements(8)
    assert ps[0].name == "colocated"
    assert {(p.trainer_gpus, p.generator_gpus) for p in ps[1:]} == {(t, 8 - t) for t in range(1, 8)}
    assert [p.name for p in placements(1)] == ["colocated"]


def test_profile_from_bench_reads_stage_costs_not_results(tmp_path):
    with open(BENCH) as f:
        bench = json.load(f)
    p = profile_from_bench(BENCH)
    b = bench["bounds"]
    assert p.trainer.samples_per_s == b["trainer_samples_per_s"]
    assert p.generator.act_ms_by_batch[64] == pytest.approx(64 / b["generator_samples_per_s_by_batch"]["64"] * 1000)
    assert (p.layout.slots, p.layout.num_generators, p.layout.staleness, p.layout.global_batch) == (64, 2, 2, 480)
    assert p.layout.poll_ms == 20.0  # run on 2026-11-25, when the driver polled every 20 ms
    assert 50 < p.env.chunk.mean_ms() < 70  # 4 sub-steps of the 15 ms emulated simulator
    assert p.sources["env.chunk"].startswith("timeline.json")
    path = tmp_path / "profile.json"
    p.save(str(path))
    q = StageProfile.load(str(path))
    assert q.to_dict() == p.to_dict()


def test_poll_interval_history():
    assert poll_ms_at("2026-11-24 20:00:00 UTC", 50) == 5.0
    assert poll_ms_at("2026-11-25 03:27:56 UTC", 50) == 20.0
    assert poll_ms_at("2026-12-05 10:00:00 UTC", 50) == 50


def test_a_run_before_a_default_changed_keeps_the_old_default_unless_it_set_the_key():
    assert defaults_at("2026-12-05 11:50:43 UTC", []) == ["algo.staleness=1"]
    assert defaults_at("2026-12-05 11:54:09 UTC", ["algo.staleness=2"]) == []
    assert defaults_at("2026-12-05 12:11:08 UTC", []) == []
    assert defaults_at("", []) == []  # no date: today's defaults
    assert defaults_at("2026-12-02 10:00:00 UTC", []) == ["generator.request_transport=ray", "algo.staleness=1"]


def test_an_old_run_s_retired_key_is_read_in_today_s_spelling():
    from rlvla3.plan.from_bench import _config

    assert respell(["run.rollout_nice=4", "rollout.slots_per_worker=2"]) == ["process.nice=4", "rollout.slots_per_worker=2"]
    bench = {"workload": "tabletop-emulated", "date": "2026-12-02 10:00:00 UTC",
             "overrides": ["preset=quickstart", "run.rollout_nice=4"]}
    assert _config(bench, "full").process.nice == 4  # loads, where the raw key is refused


def test_the_request_transport_is_the_override_else_the_default_on_the_run_s_date():
    assert transport({"date": "2026-12-02 10:00:00 UTC", "overrides": []}) == "ray"
    assert transport({"date": "2026-12-02 10:00:00 UTC", "overrides": ["generator.request_transport=socket"]}) == "socket"
    assert transport({"date": "2026-12-04 10:00:00 UTC", "overrides": []}) == "socket"
    assert transport({"date": "2026-12-04 10:00:00 UTC", "overrides": ["generator.request_transport=ray"]}) == "ray"


def test_one_gpu_forecast_of_the_own_layout_matches_the_plain_prediction(make_profile):
    """Colocated on one GPU with the profile's envs is the profile itself (one generator's share)."""
    p = make_profile(chunk_ms=50.0, reset_ms=100.0, slots=16, act_ms=1.0)
    f = forecast(p, Scale(1, 16), Placement("colocated", 1, 1, 1), "full", measured_cores=16, seconds=30)
    assert f.env_steps_per_s == pytest.approx(16 * 10 * 4 / 0.6, rel=0.04)


def test_plan_command_prints_predictions(tmp_path, capsys):
    from rlvla3.cli.main import main

    out = tmp_path / "p.json"
    assert main(["profile", "--bench", BENCH, "--out", str(out)]) == 0
    assert main(["plan", "--profile", str(out), "--modes", "sync,full", "--seconds", "10"]) == 0
    text = capsys.readouterr().out
    assert "| sync |" in text and "| full |" in text and "stage bounds" in text
    assert main(["plan", "--profile", str(out), "--modes", "nope"]) == 2
    cpu = tmp_path / "cpu.json"
    assert main(["profile", "--bench", "docs/benchmarks/cpu-dec05-eta/bench-eta2/bench.json", "--out", str(cpu)]) == 0
    assert main(["plan", "--profile", str(cpu), "--in-trainer-process"]) == 2  # a CPU run: no GPU shared
    assert "--in-trainer-process" in capsys.readouterr().err


def test_plan_with_the_generator_in_the_trainer_process_as_a_libero_run_measured_it(tmp_path, capsys):
    """gpu-dec07g: `full` on LIBERO with oft-1b, one H100, in two processes and (the call before) with
    the generator in the trainer's process: 275 and 281 env steps/s, 35.5 and 36.2 trained samples/s.
    From the two-process run's profile the plan predicts the host a few percent ahead, not more."""
    from rlvla3.cli.main import main

    out = tmp_path / "p.json"
    bench = "docs/benchmarks/gpu-dec07g-libero-oft1b-host/full/bench.json"
    assert main(["profile", "--bench", bench, "--mode", "full", "--out", str(out)]) == 0
    capsys.readouterr()
    rows = {}
    for extra in ([], ["--in-trainer-process"]):
        assert main(["plan", "--profile", str(out), "--modes", "full", "--seconds", "60", *extra]) == 0
        row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| full |")).split("|")
        rows[bool(extra)] = (float(row[2].replace(",", "")), float(row[3]))  # env steps/s, trained samples/s
    assert rows[False][0] == pytest.approx(275.0, rel=0.10)
    assert rows[False][1] <= rows[True][1] <= 1.15 * rows[False][1]
    assert rows[False][0] <= rows[True][0] <= 1.10 * rows[False][0]


def test_a_mode_run_in_its_own_layout_is_predicted_in_it():
    from rlvla3.plan.from_bench import mode_layout
    from rlvla3.plan.validate import validate_bench

    path = "docs/benchmarks/gpu-dec05-libero-oft1b/gb392/bench.json"
    with open(path) as f:
        bench = json.load(f)
    base = profile_from_bench(path).layout
    assert (base.slots_per_worker, base.max_batch) == (1, 16)  # full's, the reference mode
    best = mode_layout(bench, "sync-best", base)  # --mode-override 'sync-best:rollout.slots_per_worker=2 ...'
    assert (best.slots, best.max_batch, best.global_batch) == (28, 32, 392)
    assert mode_layout(bench, "sync", base) is base
    rows = {r.mode: r for r in validate_bench(path, seconds=20)}
    assert rows["sync-best"].predicted_env > 1.3 * rows["sync"].predicted_env  # twice the envs per lock-step batch


def test_plan_reads_a_model_s_cuda_graph_rows_and_keeps_the_trainer_without_training_rows(tmp_path, capsys):
    from rlvla3.cli.main import main
    from rlvla3.plan.cli import apply_model

    prof_path = tmp_path / "p.json"
    assert main(["profile", "--bench", BENCH, "--out", str(prof_path)]) == 0
    model = {"params_total": 100, "params_trainable": 100, "dtype": "bfloat16", "training": [],
             "inference": [{"batch": 1, "ms_per_call": 30.0}, {"batch": 8, "ms_per_call": 33.0}],
             "cuda_graphs": {"inference": [{"batch": 1, "ms_per_call": 10.0}, {"batch": 8, "ms_per_call": 22.0}]}}
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(model))
    prof = StageProfile.load(str(prof_path))
    trainer_rate = prof.trainer.samples_per_s
    apply_model(prof, str(mpath), graphs=True)
    assert prof.generator.act_ms_by_batch == {1: 10.0, 8: 22.0} and prof.trainer.samples_per_s == trainer_rate
    assert "from CUDA graphs" in prof.sources["model"] and "the profile's" in prof.sources["model"]
    apply_model(prof, str(mpath))
    assert prof.generator.act_ms_by_batch == {1: 30.0, 8: 33.0}
    del model["cuda_graphs"]
    mpath.write_text(json.dumps(model))
    with pytest.raises(ValueError, match="no CUDA-graph rows"):
        apply_model(prof, str(mpath), graphs=True)
    assert main(["plan", "--profile", str(prof_path), "--graphs"]) == 2
    assert "--graphs reads a --model" in capsys.readouterr().err
