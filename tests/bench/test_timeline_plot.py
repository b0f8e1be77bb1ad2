"""Checks for rlvla3.bench.timeline_plot (renders real PNGs with Agg)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from rlvla3.core.timeline import Span
from rlvla3.bench.timeline_plot import plot_gantt, select_tracks

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _spans(n_tracks: int, t0: float = 1000.0, length: float = 10.0) -> list[Span]:
    out = []
    for k in range(n_tracks):
        t = t0
        while t < t0 + length:
            out.append(Span(f"env0/slot{k}", "env_step", t, 0.2))
            out.append(Span(f"env0/slot{k}", "wait_action", t + 0.2, 0.1))
            t += 0.4  # 0.1 s idle gap per cycle
    out.append(Span("trainer", "micro_batch", t0 + 4.0, 2.0, {"mb": 0}))
    return out


@pytest.fixture
def captured_figs(monkeypatch):
    """Keep figures alive past plot_gantt's plt.close so tests can inspect axes."""
    figs = []
    real_close = plt.close

    def close(fig=None):
        figs.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", close)
    return figs


def _check_png(path) -> np.ndarray:
    data = open(path, "rb").read()
    assert data.startswith(PNG_SIG) and len(data) > 1000
    img = mpimg.imread(str(path))
    rgb = img[..., :3]
    assert (rgb < 0.9).any(axis=-1).sum() > 1000  # plenty of non-white pixels
    return img


def test_two_groups_png(tmp_path, captured_figs):
    groups = {"sync": _spans(3), "full": _spans(5, t0=5000.0)}
    out = tmp_path / "gantt.png"
    assert plot_gantt(groups, str(out), window_s=2.0, title="modes") == str(out)
    _check_png(out)
    (fig,) = captured_figs
    ax_sync, ax_full = fig.axes
    assert ax_sync.get_title(loc="left") == "sync (4 tracks)"
    assert ax_full.get_title(loc="left") == "full (6 tracks)"
    assert [t.get_text() for t in ax_sync.get_yticklabels()] == [
        "env0/slot0", "env0/slot1", "env0/slot2", "trainer"
    ]
    assert ax_full.get_xlim() == pytest.approx((0.0, 2.0))
    # One legend for all names.
    (legend,) = fig.legends
    assert sorted(t.get_text() for t in legend.get_texts()) == [
        "env_step", "micro_batch", "wait_action"
    ]
    # Bars exist and are clipped to the window.
    for ax in fig.axes:
        assert ax.collections
        for coll in ax.collections:
            for p in coll.get_paths():
                xs = p.vertices[:, 0]
                assert xs.min() >= -1e-9 and xs.max() <= 2.0 + 1e-9


def test_empty_group_draws_no_spans(tmp_path, captured_figs):
    out = tmp_path / "empty.png"
    plot_gantt({"sync": _spans(2), "idle": []}, str(out))
    _check_png(out)
    ax_idle = captured_figs[0].axes[1]
    assert "no spans" in [t.get_text() for t in ax_idle.texts]
    # All groups empty must not crash either.
    out2 = tmp_path / "all_empty.png"
    plot_gantt({"a": []}, str(out2))
    assert open(out2, "rb").read().startswith(PNG_SIG)


def test_respects_max_tracks(tmp_path, captured_figs):
    out = tmp_path / "many.png"
    plot_gantt({"full": _spans(63)}, str(out), max_tracks=24)  # 64 tracks
    _check_png(out)
    ax = captured_figs[0].axes[0]
    assert ax.get_title(loc="left") == "full (24 of 64 tracks)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 24
    assert labels[0] == "env0/slot0" and labels[-1] == "trainer"  # ends kept


def test_select_tracks_even():
    tracks = [f"t{i}" for i in range(10)]
    assert select_tracks(tracks, 20) == tracks
    assert select_tracks(tracks, 4) == ["t0", "t3", "t6", "t9"]
    sel = select_tracks(tracks, 9)
    assert len(set(sel)) == 9
    assert select_tracks(tracks, 1) == ["t0"]
