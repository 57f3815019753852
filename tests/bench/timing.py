"""Rates of small callables, best of several rounds so that a busy machine disturbs less."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate_per_second(fn: Callable[[], object], rounds: int = 5, min_seconds: float = 0.2) -> float:
    """Calls per second of `fn`, the best round of `rounds`, each lasting at least `min_seconds`."""
    n = 1
    while True:  # find a batch size that takes long enough to time well
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - start >= min_seconds:
            break
        n *= 2
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best
