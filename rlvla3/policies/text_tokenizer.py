"""A word-level instruction tokenizer with a fixed vocabulary stored in the policy config.

Tiny policies do not need a subword tokenizer; real VLAs bring their own (HF tokenizers).
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

PAD, UNK = 0, 1

DEFAULT_VOCAB = [
    "reach", "push", "put", "pick", "place", "move", "the", "a", "to", "in", "on", "into",
    "block", "zone", "bowl", "red", "green", "blue", "yellow", "purple", "orange", "cube",
]


class WordTokenizer:
    def __init__(self, vocab: Sequence[str], max_len: int):
        self.vocab = list(vocab)
        self.index = {w: i + 2 for i, w in enumerate(self.vocab)}  # 0 = pad, 1 = unknown
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2

    def encode(self, texts: List[str]) -> np.ndarray:
        out = np.full((len(texts), self.max_len), PAD, dtype=np.int64)
        for row, text in enumerate(texts):
            words = text.lower().replace(",", " ").replace(".", " ").split()[: self.max_len]
            out[row, : len(words)] = [self.index.get(w, UNK) for w in words]
        return out
