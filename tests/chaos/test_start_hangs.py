"""Hangs at start (issue 22): an env's first reset and a generator's start that never return.
Each has a deadline; when it expires the worker is named, its Python stack printed, and it
is either replaced (the run goes on) or the run stops with exit code 4 within seconds."""

import subprocess
import sys
import time

import pytest

from rlvla3.runtime.config import load_config
from rlvla3.runtime.train_loop import train


def _args(tmp_path, name, *extra):
    return ["preset=tiny-test", "run.mode=full", f"run.output_dir={tmp_path}", f"run.name={name}",
            "run.total_env_steps=2000", "sft.enabled=false", *extra]


def test_full_replaces_an_env_worker_whose_first_reset_hangs(tmp_path, capfd):
    s = train(load_config(_args(tmp_path, "reset", "faults.env.enabled=true", "faults.env.kind=hang_first_reset",
                                 "faults.env.lives=1", "faults.first_reset_timeout_s=2")))
    f = s["faults"]
    assert f["worker_hangs"] == 1 and f["worker_restarts"] == 1
    assert s["env_steps"] >= 2000 and s["train_steps"] >= 1
    out = capfd.readouterr()
    text = out.out + out.err
    assert "a slot's first reset running for" in text and "faults.first_reset_timeout_s=2" in text
    assert "Python stack" in text and "hang_forever" in text  # the stuck frame is shown


def _cli(tmp_path, name, *extra, timeout=150):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "rlvla3.cli.main", "train", *_args(tmp_path, name, *extra)],
                       capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def test_full_stops_with_exit_4_when_the_replacement_hangs_too(tmp_path):
    # every life hangs and no restart is allowed: a clear stop instead of a silent wait
    p, wall = _cli(tmp_path, "reset-stop", "faults.env.enabled=true", "faults.env.kind=hang_first_reset",
                   "faults.first_reset_timeout_s=3", "faults.max_worker_restarts=0")
    assert p.returncode == 4, p.stderr[-3000:]
    assert "a slot's first reset running for" in p.stderr and "restarts already spent" in p.stderr
    assert "hang_forever" in p.stdout + p.stderr  # its stack was printed
    assert wall < 90, f"took {wall:.0f} s: the stop must come within 60 s of the deadline (plus start-up)"


@pytest.mark.parametrize("mode", ["full"])  # sync starts its workers through the same start_session
def test_a_generator_that_never_starts_stops_the_run_with_exit_4(tmp_path, mode):
    p, wall = _cli(tmp_path, f"gen-{mode}", f"run.mode={mode}", "faults.generator_hang_at_start=true",
                   "faults.start_timeout_s=20")
    assert p.returncode == 4, p.stderr[-3000:]
    assert "no answer within 20 s" in p.stderr and "Generator" in p.stderr
    assert "hang_forever" in p.stderr  # the generator's stack, stuck in its constructor
    assert wall < 20 + 60, f"took {wall:.0f} s: the stop must come within 60 s of the 20 s deadline"
