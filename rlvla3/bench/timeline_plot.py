"""Gantt-style PNG of span timelines (one subplot per group, one row per track).

Complements the Chrome trace export: a static image that fits in a report and
shows at a glance where tracks sit idle (the white gaps).
"""
from __future__ import annotations

from rlvla3.core.timeline import Span, track_sort_key


def select_tracks(tracks: list[str], max_tracks: int) -> list[str]:
    """Up to `max_tracks` tracks evenly spread over the (already sorted) list."""
    n = len(tracks)
    if n <= max_tracks:
        return list(tracks)
    if max_tracks <= 1:
        return list(tracks[:max_tracks])
    # Endpoints included; indices are distinct because n > max_tracks.
    idx = [round(i * (n - 1) / (max_tracks - 1)) for i in range(max_tracks)]
    return [tracks[i] for i in idx]


def plot_gantt(groups: dict[str, list[Span]], path: str, window_s: float = 3.0, max_tracks: int = 24,
               title: str = "") -> str:
    """Draw `window_s` seconds from the middle of each group's spans; return path.

    Starting mid-run skips warm-up (compilation, first resets) so the picture
    shows steady-state overlap. x is seconds since that window start.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: workers and CI have no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = sorted({s.name for spans in groups.values() for s in spans})
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {n: cmap(i % cmap.N) for i, n in enumerate(names)}

    n_groups = max(1, len(groups))
    rows = [min(max_tracks, len({s.track for s in spans})) for spans in groups.values()] or [1]
    # Row-proportional heights keep bar thickness similar across groups.
    ratios = [0.25 * max(r, 2) + 0.5 for r in rows]
    header_in = 0.35 if (names or title) else 0.0  # room for legend / suptitle
    height = sum(ratios) + 0.3 * len(ratios) + 0.6 + header_in
    fig, axes = plt.subplots(n_groups, 1, sharex=True, figsize=(12, height), squeeze=False,
                             gridspec_kw={"height_ratios": ratios})

    for ax, (group, spans) in zip(axes[:, 0], groups.items()):
        if not spans:
            ax.set_title(f"{group} (0 tracks)", fontsize=9, loc="left")
            ax.text(0.5, 0.5, "no spans", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
            continue
        lo = min(s.start for s in spans)
        hi = max(s.start + s.dur for s in spans)
        w0 = (lo + hi) / 2.0
        w1 = w0 + window_s

        all_tracks = sorted({s.track for s in spans}, key=track_sort_key)
        shown = select_tracks(all_tracks, max_tracks)
        row_of = {t: i for i, t in enumerate(shown)}

        # Group bars per (row, name) so each broken_barh call draws many bars.
        bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for s in spans:
            row = row_of.get(s.track)
            a, b = max(s.start, w0), min(s.start + s.dur, w1)
            if row is None or b <= a:
                continue
            bars.setdefault((row, s.name), []).append((a - w0, b - a))
        for (row, name), xr in bars.items():
            ax.broken_barh(xr, (row - 0.4, 0.8), facecolors=colors[name], linewidth=0)

        ax.set_ylim(len(shown) - 0.5, -0.5)  # first track on top
        ax.set_yticks(range(len(shown)))
        ax.set_yticklabels(shown, fontsize=7)
        label = f"{group} ({len(shown)} of {len(all_tracks)} tracks)" if len(shown) < len(all_tracks) \
            else f"{group} ({len(all_tracks)} tracks)"
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_axisbelow(True)  # grid behind bars
        ax.grid(axis="x", alpha=0.3)

    axes[-1, 0].set_xlim(0.0, window_s)
    axes[-1, 0].set_xlabel(f"seconds from window start (window {window_s:g} s, mid-run)")
    if names:
        handles = [Patch(facecolor=colors[n], label=n) for n in names]
        fig.legend(handles=handles, loc="upper right", ncol=min(len(names), 6), fontsize=8)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - header_in / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
