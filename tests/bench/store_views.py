"""Time to build a store's summary and case list with 1,000,000 events and 10,000 open cases
stored, against the target of 50 ms (the ratings read from their roll-ups)."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from kiosk_host.aggregator.views import case_list, summary
from kiosk_host.rules.recovery import Case
from kiosk_host.rules.stores import DEFAULT
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import EventRow, Storage

EVENTS = 1_000_000
OPEN_CASES = 10_000
TARGET_MS = 50
NOW = 1763900000


STORES = ("big", "s2", "s3", "s4", "s5")
STATIONS = ("till-1", "till-2", "till-3", "help-desk")
STAFF = ("null", "null", *(f'"{s}"' for s in ("ana", "ben", "cleo", "dan", "eve", "finn", "gus",
                                              "hana", "ivo", "jo")))  # fmt: skip
YEAR_S = 365 * 86400
# A rating's canonical payload (keys sorted, compact), written from a template: a fill of ten
# million is bound by the time each takes to make.
PAYLOAD = (
    '{"device":"till-1","kind":"rating","scale":4,"score":%d,"seq":%d,"staff":%s,'
    '"station":"%s","store":"%s","ts":%d,"up_ms":0,"v":1}'
)


def rating_payload(rng: random.Random, i: int) -> tuple[str, int, int, str]:
    """The `i`th rating of the benchmark's year: its store, time, score and payload's text.
    A busy store (and four more beside it), four stations, a dozen staff working shifts of
    eight hours at them (signed in, or not: then the roster counts)."""
    store = STORES[i % 5] if i % 2 else "big"
    at = NOW - rng.getrandbits(25) % YEAR_S
    bits = rng.getrandbits(4)
    score, station = bits % 4 + 1, bits >> 2
    staff = STAFF[(station * 7 + at // 86400 * 3 + at % 86400 // 28800 * 5) % len(STAFF)]
    return store, at, score, PAYLOAD % (score, i + 1, staff, STATIONS[station], store, at)


def fill(storage: Store, events: int = EVENTS) -> None:
    """A year of one busy store (and four more beside it), stored batch by batch as the
    aggregator stores them (roll-ups kept as it goes), and its open cases."""
    rng = random.Random(1)
    batch: list[EventRow] = []
    for i in range(events):
        store, at, _, raw = rating_payload(rng, i)
        batch.append(
            EventRow(store, "till-1", i + 1, "rating", at, at, at, False, json.loads(raw), raw)
        )
        if len(batch) == 50_000:
            storage.write_batch(batch)
            batch = []
    storage.write_batch(batch)
    open_cases(storage, rng)


def open_cases(storage: Store, rng: random.Random) -> None:
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
