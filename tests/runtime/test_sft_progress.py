"""`rlvla3 sft` shows that long work is alive: a line while demos are collected and one per
epoch of training once PROGRESS_S has passed (10 s; a CPU clone at 128² trains for many minutes)."""
from rlvla3.runtime import sft_command
from rlvla3.runtime.config import load_config


def test_sft_prints_collection_and_epoch_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sft_command, "PROGRESS_S", 0.0)
    cfg = load_config(["preset=tiny-test", "run.progress=false", "sft.epochs=3"])
    out = sft_command.run_sft(cfg, str(tmp_path / "sft"))
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("SFT: epoch ")]
    assert [e.split(",")[0] for e in epochs] == ["SFT: epoch 1/3", "SFT: epoch 2/3"]  # the last: the summary line
    assert f"loss {out['losses'][0]:.3f}" in epochs[0]
    assert any(line.startswith("SFT: 3 epochs in ") for line in lines)
    assert any("demos collected" in line for line in lines)
