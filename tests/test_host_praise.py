"""Praise: one alert per run of top ratings, however it grows and in whatever order it arrives."""

from __future__ import annotations

import json

from kiosk_host.aggregator.writer import Raw, Writer
from kiosk_host.rules.stores import Stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store

STORE = "happy"
T0 = 1_763_900_000


def rating(device: str, seq: int, at: int, score: int = 4) -> Raw:
    event = {
        "v": 1, "kind": "rating", "store": STORE, "device": device, "seq": seq, "ts": at,
        "up_ms": seq * 1000, "score": score, "scale": 4, "station": device, "staff": None,
    }  # fmt: skip
    return (f"kiosk/v1/{STORE}/{device}/event", json.dumps(event).encode(), at + 1)


def praises(storage: Store) -> list[dict[str, object]]:
    return [a for a in storage.alerts(STORE) if a["type"] == "praise"]


def deliver(writer: Writer, *batch: Raw) -> None:
    """Store a batch and look for surge and praise, as each tick of the aggregator does."""
    writer.write(list(batch))
    writer.engine.stream_alerts(writer.storage, [STORE])


def test_a_run_is_praised_once_when_a_late_rating_lands_inside_it(store_url: str) -> None:
    writer = Writer(open_storage(store_url), Stores({}))
    for seq in range(1, 11):  # till-1: ten top ratings, one a second
        deliver(writer, rating("till-1", seq, T0 + seq))
    (first,) = praises(writer.storage)
    assert first["ts"] == T0 + 10 and "10 top ratings in a row" in str(first["text"])
    # till-2's top rating of T0 + 5 arrives only now: the run is 11 long and its tenth rating
    # is another one, yet it is the same run
    deliver(writer, rating("till-2", 1, T0 + 5))
    deliver(writer, rating("till-1", 11, T0 + 11))
    assert praises(writer.storage) == [first]


def test_a_run_twice_as_long_is_still_one_run_and_the_next_run_is_praised(store_url: str) -> None:
    writer = Writer(open_storage(store_url), Stores({}))
    for seq in range(1, 26):
        deliver(writer, rating("till-1", seq, T0 + seq))
    assert len(praises(writer.storage)) == 1  # 25 in a row: one praise, not one at 10 and 20
    deliver(writer, rating("till-1", 26, T0 + 26, score=2))  # the run ends
    for seq in range(27, 36):
        deliver(writer, rating("till-1", seq, T0 + seq))
    assert len(praises(writer.storage)) == 1  # nine: not yet
    deliver(writer, rating("till-1", 36, T0 + 36))
    assert [a["ts"] for a in praises(writer.storage)] == [T0 + 36, T0 + 10]  # newest first
