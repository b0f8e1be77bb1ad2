"""Where an action round trip goes, from a bench's timeline.json (the `action_rt` spans).

    python tools/round_trip_report.py docs/benchmarks/cpu-dec05-wait/defaults/timeline.json [MODE]

Prints, per traced mode (or MODE), the table `rlvla3 bench` writes into table.md
(bench/round_trip.py), over the trace's seconds (timeline.json keeps the first 10 s of the
window, bench.json's `round_trip` the whole window).
"""

import json
import sys

from rlvla3.bench.round_trip import breakdown, to_lines
from rlvla3.core.timeline import Span


def spans_by_mode(trace: dict) -> dict:
    events = trace["traceEvents"]
    modes = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    tracks = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    out = {m: [] for m in modes.values()}
    for e in events:
        if e.get("ph") == "X":
            out[modes[e["pid"]]].append(Span(tracks[(e["pid"], e["tid"])], e["name"], e["ts"] / 1e6, e["dur"] / 1e6,
                                             e.get("args", {})))
    return out


def main(path: str, mode: str = "") -> None:
    with open(path) as f:
        by_mode = spans_by_mode(json.load(f))
    for name, spans in by_mode.items():
        if mode and name != mode:
            continue
        b = breakdown(spans)
        lines = to_lines(b) if b else ["no action_rt spans (a lock-step mode, or an older bench)"]
        print(f"{name}:\n" + "\n".join(lines))
        print()


if __name__ == "__main__":
    main(*sys.argv[1:])
