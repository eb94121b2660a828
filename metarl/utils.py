"""Process-level settings: thread counts and seeds."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads. Tiny models on CPU run far faster with 1 thread."""
    if n is None or n <= 0:
        return
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
