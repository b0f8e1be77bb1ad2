"""A measurement window's spans on disk (`rlvla3 bench --keep-spans`): one JSON object per line,
gzip-compressed, so that a committed benchmark can be re-measured later (`measure.window_metrics`
on `load_spans`) when a question comes up that its bench.json does not answer."""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Iterable, List

from rlvla3.core.timeline import Span

NAME = "spans.jsonl.gz"


def save_spans(path: str, spans: Iterable[Span]) -> int:
    """Write the spans; returns how many."""
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for s in spans:
            f.write(json.dumps(dataclasses.asdict(s), separators=(",", ":"), default=_plain) + "\n")
            n += 1
    return n


def _plain(x):
    """numpy scalars and arrays in span args (counts from len() of arrays, batch sizes) as JSON."""
    return x.tolist() if hasattr(x, "tolist") else str(x)


def load_spans(path: str) -> List[Span]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [Span(**d) for d in map(json.loads, f)]
