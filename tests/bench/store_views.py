"""Time to build a store's summary and case list with 1,000,000 events and 10,000 open cases
stored, against the target of 50 ms."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from kiosk_host.aggregator.views import case_list, summary
from kiosk_host.rules.recovery import Case
from kiosk_host.rules.stores import DEFAULT
from kiosk_host.storage.sqlite import EventRow, Storage

EVENTS = 1_000_000
OPEN_CASES = 10_000
TARGET_MS = 50
NOW = 1763900000


def fill(storage: Storage) -> None:
    """A year of one busy store (and four more beside it), and its open cases."""
    rng = random.Random(1)
    stores = ("big", "s2", "s3", "s4", "s5")
    batch: list[EventRow] = []
    for i in range(EVENTS):
        store = stores[i % 5] if i % 2 else "big"
        at = NOW - rng.randrange(365 * 86400)
        score = rng.randint(1, 4)
        p = {
            "v": 1, "kind": "rating", "store": store, "device": "till-1", "seq": i + 1,
            "ts": at, "up_ms": 0, "score": score, "scale": 4, "station": "till-1", "staff": None,
        }  # fmt: skip
        batch.append(
            EventRow(store, "till-1", i + 1, "rating", at, at, at, False, p, json.dumps(p))
        )
        if len(batch) == 50_000:
            storage.write_batch(batch)
            batch = []
    storage.write_batch(batch)
    with storage.transaction():
        for n in range(OPEN_CASES):
            opened = NOW - rng.randrange(86400)
            storage.save_case(Case("big", f"A{n:03d}"[:4], "till-1", "till-1", n + 1, opened,
                                   opened + 86400))  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "views.db")
        fill(storage)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            figures = summary(storage, DEFAULT, "big", NOW)
            cases = case_list(storage, "big", NOW)
            best = min(best, time.perf_counter() - start)
        assert figures["open_cases"] == OPEN_CASES and len(cases["cases"]) == 50
        storage.close()
    ms = best * 1000
    print(
        f"summary and case list of a store with {EVENTS:,} events and {OPEN_CASES:,} open cases: "
        f"{ms:.1f} ms; {ms / TARGET_MS:.2f} of the {TARGET_MS} ms target"
    )
