"""The host's side of end-to-end acknowledgement and of seqs that never repeat: each kiosk's
high-water mark after the commit, and a seq that went back told from a duplicate."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from kiosk_host.aggregator.leader import Alone
from kiosk_host.aggregator.writer import Raw, Writer
from kiosk_host.storage import open as open_storage
from kiosk_host.wire.contract import Contract, Message

ARRIVED = 1763900100
STORE = "marks"


def event(seq: int, device: str = "till-1", score: int = 4, up_ms: int | None = None) -> Raw:
    payload = {
        "v": 1, "kind": "rating", "store": STORE, "device": device, "seq": seq,
        "ts": 1763900000 + seq, "up_ms": seq * 1000 if up_ms is None else up_ms,
        "score": score, "scale": 4, "station": device, "staff": None,
    }  # fmt: skip
    return (f"kiosk/v1/{STORE}/{device}/event", json.dumps(payload).encode(), ARRIVED)


def ack(device: str, seq: int) -> tuple[str, bytes, bool]:
    return (f"kiosk/v1/{STORE}/{device}/ack", b'{"v":1,"seq":%d}' % seq, True)


def test_the_mark_is_contiguous_whatever_the_order_of_arrival(
    store_url: str, contract: Contract
) -> None:
    storage = open_storage(store_url)
    writer = Writer(storage)
    writer.write([event(1), event(2), event(4), event(1, "till-2")])
    assert writer.marks_due == {(STORE, "till-1"): 2, (STORE, "till-2"): 1}
    sent = writer.marks(100.0)
    assert sorted(sent) == [ack("till-1", 2), ack("till-2", 1)]
    for topic, payload, _ in sent:
        assert isinstance(contract.validate(topic, payload), Message)
    writer.write([event(6)])  # above the gap: stored, the mark stays
    assert writer.marks_due == {}
    writer.write([event(3)])  # the gap fills: the mark runs on over 4, stops before 5
    assert writer.marks_due == {(STORE, "till-1"): 4}
    writer.write([event(5)])
    assert writer.marks_due == {(STORE, "till-1"): 6}
    storage.close()
    again = open_storage(store_url)  # kept in the database, not only in the writer
    assert (again.mark(STORE, "till-1"), again.mark(STORE, "till-2")) == (6, 1)
    assert again.mark(STORE, "till-9") == 0
    again.close()


@pytest.mark.e2e  # PostgreSQL: two aggregators of a group (SQLite has one: `serve` holds it)
def test_two_members_of_a_group_each_see_what_the_other_stored(postgres_url: str) -> None:
    # Each with whatever it saw of the kiosk before: one stores 1, the other 3 above the gap,
    # then the first fills it. Its mark covers 3.
    east, west = Writer(open_storage(postgres_url)), Writer(open_storage(postgres_url))
    east.write([event(1)])
    west.write([event(3)])
    east.write([event(2)])
    assert east.marks_due == {(STORE, "till-1"): 3}
    west.write([event(1)])  # a redelivery at the other member: the mark never goes back
    assert west.storage.mark(STORE, "till-1") == 3
    assert west.marks_due[(STORE, "till-1")] == 3
    east.storage.close()
    west.storage.close()


def test_a_kiosks_mark_goes_out_at_most_once_a_second_and_the_last_one_always(
    store_url: str,
) -> None:
    writer = Writer(open_storage(store_url))
    writer.write([event(1)])
    assert writer.marks(50.0) == [ack("till-1", 1)]
    writer.write([event(2)])
    writer.write([event(1, "till-2")])
    # till-1 went out 0.4 s ago: it waits; till-2 has not been sent at all: it goes.
    assert writer.marks(50.4) == [ack("till-2", 1)]
    writer.write([event(3)])
    assert writer.marks(50.9) == []
    assert writer.marks(51.0) == [ack("till-1", 3)]  # the last of the burst, once
    assert writer.marks(60.0) == []


def test_a_duplicate_sends_the_mark_again(store_url: str) -> None:
    # A kiosk sending again what is stored may have lost the mark with a broker's crash.
    writer = Writer(open_storage(store_url))
    writer.write([event(1), event(2)])
    assert writer.marks(10.0) == [ack("till-1", 2)]
    reply = writer.write([event(1)])
    assert (reply.events, reply.duplicates) == (0, 1)
    assert writer.marks(11.0) == [ack("till-1", 2)]


def test_a_seq_that_went_back_is_kept_and_alerted_and_a_true_duplicate_is_counted_once(
    store_url: str, contract: Contract
) -> None:
    storage = open_storage(store_url)
    writer = Writer(storage)
    reply = writer.write([event(1), event(2)])
    assert (reply.events, reply.duplicates, reply.dead) == (2, 0, 0)
    reply = writer.write([event(2)])  # the same event again: a redelivery
    assert (reply.events, reply.duplicates, reply.dead) == (0, 1, 0)
    assert storage.dead_letters() == []
    # The kiosk's count went back: a new press under seq 2, another score and uptime.
    regressed = event(2, score=1, up_ms=77)
    reply = writer.write([regressed])
    assert (reply.events, reply.duplicates, reply.dead) == (0, 0, 1)
    (letter,) = storage.dead_letters()
    assert (letter.topic, letter.rule, letter.field) == (regressed[0], "regression", "/seq")
    assert json.loads(letter.payload) == json.loads(regressed[1])  # kept whole
    stored = storage.event(STORE, "till-1", 2)
    assert stored is not None and stored.payload["score"] == 4  # the first stays as it was
    published = writer.tick(ARRIVED)
    alerts = [json.loads(p) for t, p, _ in published if t == f"kiosk/v1/{STORE}/alerts"]
    assert [(a["type"], a["severity"], a["device"]) for a in alerts] == [
        ("seq_regression", "critical", "till-1")
    ]
    for topic, payload, _ in published:
        assert isinstance(contract.validate(topic, payload), Message), payload
    # More of the same kiosk: each kept, the technician told once an hour, not per event.
    reply = writer.write([event(1, score=2, up_ms=78), event(3)])
    assert (reply.events, reply.duplicates, reply.dead) == (1, 0, 1)
    assert [d.rule for d in storage.dead_letters()] == ["regression", "regression"]
    assert not [t for t, _, _ in writer.tick(ARRIVED + 1) if t.endswith("/alerts")]
    storage.close()


def test_a_regression_and_its_original_in_one_batch(store_url: str) -> None:
    storage = open_storage(store_url)
    writer = Writer(storage)
    reply = writer.write([event(1), event(1, score=2, up_ms=5), event(1)])
    assert (reply.events, reply.duplicates, reply.dead) == (1, 1, 1)
    assert [d.rule for d in storage.dead_letters()] == ["regression"]
    storage.close()


def status(device: str, kept_from: int | None) -> Raw:
    payload: dict[str, object] = {
        "v": 1, "state": "online", "fw": "0.1.0", "board": "esp32-devkitc", "ts": None,
        "up_ms": 900, "config_error": None,
    }  # fmt: skip
    if kept_from is not None:
        payload["kept_from"] = kept_from
    return (f"kiosk/v1/{STORE}/{device}/status", json.dumps(payload).encode(), ARRIVED)


def test_the_mark_passes_what_the_kiosk_no_longer_keeps(store_url: str) -> None:
    # Events 3 to 9 were let go by a full outbox while nothing reached the broker: they never
    # come. The kiosk's status says it keeps 10 on; the mark passes the gap, up to what is
    # stored, so the kiosk's outbox can let go of 10 and 11.
    storage = open_storage(store_url)
    writer = Writer(storage)
    writer.write([event(1), event(2), event(10), event(11)])
    assert writer.marks_due == {(STORE, "till-1"): 2}
    writer.marks(0.0)
    writer.write([status("till-1", None)])  # older firmware says nothing: nothing moves
    assert writer.marks_due == {}
    writer.write([status("till-1", 10)])
    assert writer.marks_due == {(STORE, "till-1"): 11}
    writer.write([event(3)])  # comes after all, from the broker: stored, the mark stays
    assert storage.seqs(STORE, "till-1") == [1, 2, 3, 10, 11]
    assert storage.mark(STORE, "till-1") == 11
    writer.write([status("till-1", 5)])  # an old retained status: the mark never goes back
    assert storage.mark(STORE, "till-1") == 11
    storage.close()


class BrokenLeader(Alone):
    """A leadership whose every question fails with an error nobody expected."""

    def leading(self) -> bool:
        raise RuntimeError("the group's database went away mid-question")

    def stored(self, stores: Iterable[str], rated: Iterable[str], transactions: int) -> None:
        raise RuntimeError("the group's database went away mid-notification")


def test_a_leadership_that_fails_never_stops_storing(tmp_path: Path) -> None:
    """The writer keeps storing and acknowledging when asking or telling the group fails:
    it follows for that tick and logs why."""
    storage = open_storage(str(tmp_path / "kiosk.db"))
    writer = Writer(storage, leader=BrokenLeader())
    reply = writer.handle([event(1), event(2)])
    assert reply.events == 2 and reply.publish == [ack("till-1", 2)]
    reply = writer.handle([event(3)])
    assert reply.events == 1
    assert storage.mark(STORE, "till-1") == 3
