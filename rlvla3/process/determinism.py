"""`run.deterministic`: torch's deterministic kernels in the processes that train a policy (the
SFT stage and the trainer), so that one recipe on one machine gives one set of weights.

Without it, a GPU clone of the MT10 recipe (100 demos per task x 12 epochs, the same demos every
time) ended at losses 3.477, 3.494, 3.531 and 3.864 on four runs, 40.5% to 11.5% held-out
(docs/metaworld.md): atomics in the backward passes and cuDNN's timed choice of algorithm
differ from run to run. On the CPU the same code was already reproducible.

What it does not make deterministic: the asynchronous schedules, whose batches depend on when
each env slot asks (the interleaving is timing, not arithmetic).
"""

from __future__ import annotations

import os

import torch

CUBLAS_KEY = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"  # what CUDA's docs give for reproducible cuBLAS (extra workspace per stream)


def use_deterministic_kernels() -> None:
    """Deterministic kernels from here on in this process. An op that has no deterministic kernel
    warns (once per op) instead of stopping a run hours in: the run goes on, and the warning names
    what may still differ."""
    # cuBLAS reads it when it makes its handle, at the first GPU matmul: set before that, in this
    # process (a Ray worker does not inherit the driver's later changes). A user's own value stays.
    os.environ.setdefault(CUBLAS_KEY, CUBLAS_VALUE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False  # timed algorithm choice: a different pick per run
