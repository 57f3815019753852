"""The order in which a kiosk's events are stored does not change the cases or the figures."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk_host.aggregator.views import case_list, recognition, report, summary
from kiosk_host.aggregator.writer import Raw, Writer
from kiosk_host.rules.stores import Stores, parse_stores
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.identifiers import CODE_ALPHABET, KIOSK_LETTERS, check_character

NOW = 1_763_900_000  # Sun 23 Nov 2025 12:13:20 UTC: the fixed present of every comparison
HOUR = 3600
STORES_TOML = """
[stores.north]
tz = "Europe/Berlin"
window_hours = 24
[stores.north.hours]
mon = "07:00-22:00"
tue = "07:00-22:00"
wed = "07:00-22:00"
thu = "07:00-22:00"
fri = "07:00-22:00"
sat = "08:00-20:00"
sun = "09:00-18:00"
[[stores.north.roster]]
station = "till-0"
staff = "cleo"
start = "07:00"
end = "15:00"
[stores.south]
window_hours = 6
"""
STORES: Stores = parse_stores(STORES_TOML)
KIOSKS = {"north": ("till-0", "till-1", "till-2"), "south": ("till-0", "till-1")}
STAFF = (None, "ana", "ben-k")


def case_code(device: str, seq: int) -> str:
    """The code the kiosk shows for its rating `seq` (`case_code` in firmware/wire.py): its
    letter (here the number its name ends in picks it), n = seq x 7919 mod 29,791 in base 31,
    then the check character of kiosk_host.wire.identifiers."""
    n = seq * 7919 % 29791
    letter = KIOSK_LETTERS[int(device.rsplit("-", 1)[1])]
    body = letter + CODE_ALPHABET[n // 961] + CODE_ALPHABET[n // 31 % 31] + CODE_ALPHABET[n % 31]
    return body + check_character(body)


@dataclass
class Happening:
    """One thing a kiosk sends, before its seq is known: when, and what."""

    store: str
    device: str
    at: int  # when it happened (the kiosk's clock, set)
    synced: bool  # False: the kiosk sends ts null, and the host takes the arrival time
    kind: str
    fields: dict[str, Any]
    rating: Happening | None = None  # a follow-up's rating
    case: Happening | None = None  # a verdict's case: the rating whose follow-up opened it
    seq: int = 0


@st.composite
def customers(draw: st.DrawFn, store: str) -> list[Happening]:
    """One store's day and a half: ratings (breakdowns among them), follow-ups accepted or
    declined, verdicts given on any kiosk of the store (in time, late, repeated), sign-ins
    and sign-outs."""
    out: list[Happening] = []
    for _ in range(draw(st.integers(1, 8))):
        device = draw(st.sampled_from(KIOSKS[store]))
        at = NOW - draw(st.integers(60, 36 * HOUR))
        kind = draw(st.sampled_from(("rating", "rating", "rating", "signin", "signout")))
        if kind != "rating":
            staff = draw(st.sampled_from(STAFF[1:]))
            fields = {"staff": staff, "station": device}
            out.append(Happening(store, device, at, True, f"staff_{kind}", fields))
            continue
        score = draw(st.integers(1, 4))
        station = draw(st.sampled_from((device, "desk")))
        fields = {"score": score, "scale": 4, "station": station,
                  "staff": draw(st.sampled_from(STAFF))}  # fmt: skip
        synced = draw(st.integers(0, 9)) > 0  # now and then a kiosk whose clock is not set
        rating = Happening(store, device, at, synced, "rating", fields)
        out.append(rating)
        answers = ("none", "declined", "accepted", "accepted")
        answer = draw(st.sampled_from(answers)) if score <= 2 else "none"
        if answer == "none":
            continue
        follow_at = at + draw(st.integers(1, 20))
        accepted = answer == "accepted"
        out.append(Happening(store, device, follow_at, True, "follow_up",
                             {"accepted": accepted}, rating=rating))  # fmt: skip
        if not accepted:
            continue
        for _ in range(draw(st.integers(0, 3))):
            when = follow_at + draw(st.integers(30, 30 * HOUR))
            if when >= NOW - 10:
                continue
            outcome = draw(st.sampled_from(("wow", "fixed", "not_fixed")))
            where = draw(st.sampled_from(KIOSKS[store]))
            out.append(Happening(store, where, when, True, "recovery_confirm",
                                 {"outcome": outcome}, case=rating))  # fmt: skip
    return out


ARRIVAL_S = 7  # each event reaches the host this long after it happened, whatever the order


def messages(happenings: list[Happening]) -> list[tuple[Raw, tuple[int, str, str, int]]]:
    """Each kiosk's events with its seqs (1, 2, ... in the order they happened), as the
    messages the receiver hands the writer, each with its place in kiosk order."""
    by_kiosk: dict[tuple[str, str], list[Happening]] = {}
    for h in sorted(happenings, key=lambda h: (h.at, h.kind != "rating")):
        by_kiosk.setdefault((h.store, h.device), []).append(h)
    for mine in by_kiosk.values():
        for seq, h in enumerate(mine, start=1):
            h.seq = seq
    out = []
    for h in happenings:
        p: dict[str, Any] = {"v": 1, "kind": h.kind, "store": h.store, "device": h.device,
                             "seq": h.seq, "ts": h.at if h.synced else None,
                             "up_ms": h.at % 86400 * 1000, **h.fields}  # fmt: skip
        if h.rating is not None:
            p["rating_seq"] = h.rating.seq
            if h.fields["accepted"]:
                p["code"] = case_code(h.device, h.rating.seq)
        if h.case is not None:
            p["case"] = case_code(h.case.device, h.case.seq)
        topic = f"kiosk/v1/{h.store}/{h.device}/event"
        out.append(((topic, json.dumps(p).encode(), h.at + ARRIVAL_S), (h.at, *topic_key(h))))
    return out


def topic_key(h: Happening) -> tuple[str, str, int]:
    return h.store, h.device, h.seq


@contextmanager
def writer(folder: Path, name: str) -> Iterator[Writer]:
    storage = Storage(folder / f"{name}.db")
    try:
        yield Writer(storage, STORES)
    finally:
        storage.close()


def store_batches(w: Writer, batches: list[list[Raw]], ticks: list[bool]) -> None:
    """Hand the writer each batch as the receiver does; after some, a tick (deadlines, views)."""
    for batch, tick in zip(batches, ticks, strict=True):
        w.handle(batch)
        if tick:
            w.tick(NOW)


def snapshot(storage: Store) -> dict[str, Any]:
    """Everything the order must not change, at NOW: each case with every field, the
    summary, the case list, the report and the recognition board of each store, the events
    stored, and the verdicts set aside."""
    out: dict[str, Any] = {}
    for store in KIOSKS:
        cfg = STORES.get(store)
        cases = sorted(storage.cases(store), key=lambda c: (c.device, c.rating_seq))
        out[store] = {
            "cases": [dataclasses.asdict(c) for c in cases],
            "summary": summary(storage, cfg, store, NOW),
            "case_list": case_list(storage, store, NOW),
            "report": report(storage, cfg, store, NOW, 3),
            "recognition": recognition(storage, cfg, store, NOW),
            "events": storage.event_count(store),
        }
    out["dead"] = sorted((d.topic, d.payload, d.rule, d.reason) for d in storage.dead_letters(999))
    return out


@pytest.mark.slow  # forty worlds of two stores, each stored in a shuffled order
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    world=st.tuples(customers("north"), customers("south")),
    data=st.data(),
)
def test_any_order_of_storing_gives_the_same_cases_and_figures(
    world: tuple[list[Happening], list[Happening]], data: st.DataObject
) -> None:
    raws = messages(world[0] + world[1])
    in_order = [raw for raw, _ in sorted(raws, key=lambda r: r[1])]  # as each kiosk sent them
    shuffled: list[Raw] = list(data.draw(st.permutations([raw for raw, _ in raws])))
    for _ in range(data.draw(st.integers(0, 4))):  # some come twice (a redelivery)
        again = data.draw(st.sampled_from(shuffled))
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), again)
    batches: list[list[Raw]] = []
    start = 0
    while start < len(shuffled):  # batches of any size, as the receiver gathers them
        size = data.draw(st.integers(1, 5))
        batches.append(shuffled[start : start + size])
        start += size
    ticks = data.draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    with freeze_time(datetime.fromtimestamp(NOW, UTC)), tempfile.TemporaryDirectory() as tmp:
        with writer(Path(tmp), "in-order") as w:
            store_batches(w, [[raw] for raw in in_order], [True] * len(in_order))
            expected = snapshot(w.storage)
        with writer(Path(tmp), "shuffled") as w:
            store_batches(w, batches, ticks)
            w.tick(NOW)
            got = snapshot(w.storage)
    assert got == expected
    assert sum(expected[s]["events"] for s in KIOSKS) == len(raws)  # every event kept once


# --- the rules of order, one at a time ------------------------------------------------------

S = "north"
RATED = NOW - 5 * HOUR


def event(device: str, seq: int, kind: str, at: int, **fields: Any) -> Raw:
    p = {"v": 1, "kind": kind, "store": S, "device": device, "seq": seq, "ts": at,
         "up_ms": 1000, **fields}  # fmt: skip
    return (f"kiosk/v1/{S}/{device}/event", json.dumps(p).encode(), at + ARRIVAL_S)


CODE = case_code("till-1", 4)
RATING = event("till-1", 4, "rating", RATED, score=1, scale=4, station="desk", staff=None)
FOLLOW_UP = event("till-1", 5, "follow_up", RATED + 12, rating_seq=4, accepted=True, code=CODE)


def verdict(seq: int, outcome: str, at: int) -> Raw:
    return event("till-2", seq, "recovery_confirm", at, case=CODE, outcome=outcome)


def stored_case(tmp_path: Path, *batches: list[Raw]) -> dict[str, Any]:
    with freeze_time(datetime.fromtimestamp(NOW, UTC)), writer(tmp_path, "one") as w:
        for batch in batches:
            w.handle(batch)
        (case,) = w.storage.cases(S)
        return dataclasses.asdict(case)


def test_a_follow_up_before_its_rating_takes_the_ratings_time_and_station_when_it_comes(
    tmp_path: Path,
) -> None:
    case = stored_case(tmp_path, [FOLLOW_UP])
    assert (case["opened_at"], case["station"]) == (RATED + 12, "till-1")  # until the rating
    case = stored_case(tmp_path, [RATING])
    assert (case["opened_at"], case["station"], case["deadline"]) == (
        RATED,
        "desk",
        NOW + 19 * HOUR,
    )


def test_a_verdict_before_its_case_counts_when_the_case_arrives(tmp_path: Path) -> None:
    case = stored_case(tmp_path, [verdict(1, "wow", RATED + HOUR)], [FOLLOW_UP], [RATING])
    assert (case["state"], case["verdict_at"], case["opened_at"]) == ("wow", RATED + HOUR, RATED)


def test_verdicts_count_in_the_order_they_were_given_not_stored(tmp_path: Path) -> None:
    not_yet, made_right = verdict(1, "not_fixed", RATED + HOUR), verdict(2, "fixed", RATED + 7200)
    # the later verdict stored first: alone it would make the case recovered, and the earlier
    # "Not yet" then be refused; given in this order, the case escalated, then was made right
    case = stored_case(tmp_path, [RATING, FOLLOW_UP], [made_right], [not_yet])
    assert (case["state"], case["escalations"], case["verdict"]) == ("recovered", 1, "fixed")


def test_a_not_yet_given_before_the_staff_fix_and_stored_after_it_leaves_the_case_fixed(
    tmp_path: Path,
) -> None:
    """The customer said "Not yet" an hour after the rating; staff fixed the case an hour
    later; the kiosk that took the "Not yet" was offline and delivers it only now. Taken at
    its own time it came before the fix: the case escalated, then was fixed."""
    with writer(tmp_path, "fix") as w:
        with freeze_time(datetime.fromtimestamp(RATED + 60, UTC)):
            w.handle([RATING, FOLLOW_UP])
        with freeze_time(datetime.fromtimestamp(RATED + 2 * HOUR, UTC)):
            w.engine.fix(w.storage, S, CODE, "ana", "a new charger")
        with freeze_time(datetime.fromtimestamp(NOW, UTC)):
            w.handle([verdict(1, "not_fixed", RATED + HOUR)])
        (case,) = w.storage.cases(S)
    assert (case.state, case.escalations, case.fixed_by, case.fixed_at, case.note) == (
        "fixed", 1, "ana", RATED + 2 * HOUR, "a new charger",
    )  # fmt: skip


def refusals(tmp_path: Path, name: str, *batches: list[Raw]) -> list[tuple[int, str]]:
    """The seqs of the verdicts set aside after storing these batches, and why."""
    with freeze_time(datetime.fromtimestamp(NOW, UTC)), writer(tmp_path, name) as w:
        for batch in batches:
            w.handle(batch)
        letters = w.storage.dead_letters()
    return sorted((json.loads(d.payload)["seq"], d.reason) for d in letters)


def test_a_verdict_given_earlier_and_stored_later_changes_why_the_others_are_refused(
    tmp_path: Path,
) -> None:
    """Two "Yes, wow!" verdicts are stored, the second refused for the first; then comes a
    "Yes" that was given before either: both are refused for it, as when stored in order."""
    made_right = event("till-0", 9, "recovery_confirm", RATED + HOUR, case=CODE, outcome="fixed")
    wow, wow_again = verdict(1, "wow", RATED + 2 * HOUR), verdict(2, "wow", RATED + 3 * HOUR)
    because = f"case {CODE} already has a verdict: the customer confirmed it was made right"
    in_order = refusals(
        tmp_path, "in-order", [RATING], [FOLLOW_UP], [made_right], [wow], [wow_again]
    )
    assert in_order == [(1, because), (2, because)]
    late = [[RATING, FOLLOW_UP], [wow], [wow_again], [made_right]]
    assert refusals(tmp_path, "one-by-one", *late) == in_order
    assert (
        refusals(tmp_path, "one-batch", [RATING, FOLLOW_UP, wow, wow_again, made_right]) == in_order
    )


def test_a_rating_stored_after_its_verdicts_takes_back_a_refusal_its_deadline_undoes(
    tmp_path: Path,
) -> None:
    """Until the rating comes, the follow-up's time opens the case, 12 s after the rating: a
    "Yes, wow!" given 5 s after the rating's deadline looks in time, and the "Yes" after it
    refused. With the rating both are late: none is refused, as when stored in order."""
    rated = NOW - 30 * HOUR
    rating = event("till-1", 4, "rating", rated, score=1, scale=4, station="desk", staff=None)
    follow_up = event("till-1", 5, "follow_up", rated + 12, rating_seq=4, accepted=True, code=CODE)
    wow, made_right = (
        verdict(1, "wow", rated + 24 * HOUR + 5),
        verdict(2, "fixed", rated + 24 * HOUR + 8),
    )
    assert refusals(tmp_path, "in-order", [rating], [follow_up], [wow], [made_right]) == []
    assert refusals(tmp_path, "late", [follow_up], [wow], [made_right], [rating]) == []
    assert refusals(tmp_path, "early", [follow_up], [wow], [made_right]) == [
        (2, f"case {CODE} already has a verdict: the customer said Wow!")
    ]
