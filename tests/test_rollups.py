"""The ratings' roll-ups: equal to a recount from the events however they were stored, the
views reading them give what reading every event gave, and `kiosk-host verify` finds a
damaged roll-up and rebuilds it."""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk_host import storage as storages
from kiosk_host.aggregator import views
from kiosk_host.aggregator.writer import Raw, Writer
from kiosk_host.rules.recognition import Rating, attribute, board, to_payload
from kiosk_host.rules.stores import StoreConfig, parse_stores
from kiosk_host.storage.postgres import _INSERT_EVENT as PG_INSERT_EVENT
from kiosk_host.storage.postgres import PG_MIGRATIONS
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import _INSERT_EVENT as INSERT_EVENT
from kiosk_host.storage.sqlite import (
    MIGRATIONS,
    EventRow,
    RollupCheck,
    Storage,
    _event_values,
    rollup_key,
)
from tests.cli_run import run_cli
from tests.postgres import BACKENDS, Postgres
from tests.test_event_order import STORES, case_code

NOW = 1_763_900_000  # Sun 23 Nov 2025 12:13:20 UTC
DAY = 86400


# -- what is stored, however it comes, is counted once ---------------------------------------


def rating(store: str, device: str, seq: int, at: int | None, score: int, **fields: Any) -> Raw:
    """A kiosk's rating message as the receiver hands it over (arriving 7 s after `at`)."""
    p = {"v": 1, "kind": "rating", "store": store, "device": device, "seq": seq, "ts": at,
         "up_ms": seq * 1000, "score": score, "scale": 4, "station": device, "staff": None,
         **fields}  # fmt: skip
    return (f"kiosk/v1/{store}/{device}/event", json.dumps(p).encode(), (at or NOW) + 7)


def other(store: str, device: str, seq: int, at: int, kind: str, **fields: Any) -> Raw:
    p = {"v": 1, "kind": kind, "store": store, "device": device, "seq": seq, "ts": at,
         "up_ms": seq * 1000, **fields}  # fmt: skip
    return (f"kiosk/v1/{store}/{device}/event", json.dumps(p).encode(), at + 7)


def kiosk_stream(rng: random.Random, store: str, device: str, n: int) -> list[Raw]:
    """A kiosk's events in seq order: ratings (some from a kiosk whose clock is not set, some
    at night when the store is closed), sign-ins and sign-outs, and follow-ups of
    breakdowns, accepted or not."""
    out: list[Raw] = []
    seq = 0
    while seq < n:
        seq += 1
        at = NOW - rng.randrange(3 * DAY)
        roll = rng.random()
        if roll < 0.15:
            kind = rng.choice(("staff_signin", "staff_signout"))
            out.append(other(store, device, seq, at, kind, staff=rng.choice(("ana", "ben-k")),
                             station=device))  # fmt: skip
            continue
        score = rng.randint(1, 4)
        staff = rng.choice((None, "ana", "ben-k"))
        synced = roll > 0.25
        out.append(rating(store, device, seq, at if synced else None, score, staff=staff,
                          station=rng.choice((device, "desk"))))  # fmt: skip
        if score <= 2 and rng.random() < 0.5 and seq < n:
            seq += 1
            accepted = rng.random() < 0.5
            fields: dict[str, Any] = {"rating_seq": seq - 1, "accepted": accepted}
            if accepted:
                fields["code"] = case_code(device, seq - 1)
            out.append(other(store, device, seq, at + 5, "follow_up", **fields))
    return out


def check_matches(s: Store) -> None:
    found = s.rollup_check()
    assert (found.differing, found.first) == (0, [])


def test_the_rollups_equal_a_recount_after_ingest_with_duplicates_and_regressions(
    store_url: str,
) -> None:
    rng = random.Random(7)
    s = storages.open(store_url)
    try:
        w = Writer(s, STORES)
        streams = [kiosk_stream(rng, store, f"till-{k}", 60)
                   for store in ("north", "south") for k in range(3)]  # fmt: skip
        sent: list[Raw] = [m for stream in streams for m in stream]
        rng.shuffle(sent)  # any order of arrival: follow-ups before their ratings too
        cuts = sorted(rng.sample(range(1, len(sent)), 14))
        batches = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)], strict=True)]
        stored = 0
        for batch in batches:
            again = rng.sample(sent, 3)  # redelivered: some in the same batch, some later
            stored += w.write(batch + again + batch[:2]).events
            check_matches(s)
        assert stored == len(sent)
        # A kiosk whose count went back: the same seqs with other scores, kept apart
        went_back = [rating("north", "till-0", seq, NOW - 50, 1) for seq in (1, 2, 3)]
        reply = w.write(went_back + sent[:5])
        assert (reply.events, reply.duplicates) == (0, 5)
        check_matches(s)
        ratings = [m for m in sent if b'"kind": "rating"' in m[1]]
        assert s.rollup_check().ratings == len(ratings)
    finally:
        s.close()


def legacy_rows(rng: random.Random, store: str, n: int) -> list[EventRow]:
    """Rows as a database from before payloads were canonical may hold them: stations and
    staff that are no identifiers or not text, scales that are no whole number from 1 to 999
    or missing, a rating without a score; mixed with other kinds and events outside hours."""
    odd: list[Any] = [None, 4, True, 4.5, "", "Till 1", "x" * 40, ["a"], {"b": 1}, "till-1"]
    rows = []
    for seq in range(1, n + 1):
        at = NOW - rng.randrange(2 * DAY)
        kind = rng.choice(("rating", "rating", "rating", "staff_signin", "follow_up"))
        p: dict[str, Any] = {"v": 1, "kind": kind, "store": store, "device": "k", "seq": seq}
        for key in ("station", "staff", "scale"):
            if rng.random() < 0.8:
                p[key] = rng.choice([*odd, 0, 1, 3, 5, 999, 1000, -4, False])
        if kind == "rating" and rng.random() < 0.95:
            p["score"] = rng.randint(1, 5)
        raw = json.dumps(p)
        rows.append(EventRow(store, "k", seq, kind, at, at, at, False, p, raw, rng.random() < 0.2))
    return rows


def test_rows_stored_without_the_engine_and_odd_payloads_count_by_the_recounts_rules(
    store_url: str,
) -> None:
    rng = random.Random(3)
    s = storages.open(store_url)
    try:
        rows = legacy_rows(rng, "east", 300)
        for start in range(0, 300, 70):
            s.write_batch(rows[start : start + 70])  # every kind in one insert, no engine
            check_matches(s)
        s.write_batch(rows[:100])  # all of them again
        s.write_batch(rows[250:] + rows[250:260])  # duplicates inside a batch
        check_matches(s)
        scored = [r for r in rows if r.kind == "rating" and "score" in r.payload]
        assert s.rollup_check().ratings == len(scored)
    finally:
        s.close()


def schema_8(url: str, rows: list[EventRow]) -> None:
    """A database as a host from before the roll-ups left it: schema 8, holding `rows`."""
    if storages.is_postgres(url):
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            c.execute("INSERT INTO schema_version VALUES (8)")
            for script in PG_MIGRATIONS[:8]:
                c.execute(script.encode())
            with c.cursor() as cur:
                cur.executemany(PG_INSERT_EVENT, [_event_values(e) for e in rows])
        return
    c = sqlite3.connect(url, isolation_level=None)
    try:
        for script in MIGRATIONS[:8]:
            for statement in script.split(";"):
                c.execute(statement)
        c.execute("PRAGMA user_version = 8")
        c.executemany(INSERT_EVENT, [_event_values(e) for e in rows])
    finally:
        c.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_counts_the_events_already_stored(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rows = legacy_rows(random.Random(5), "west", 200)
    if backend == "sqlite":
        url = str(tmp_path / "kiosk.db")
    else:
        server: Postgres = request.getfixturevalue("postgres")
        url = server.database(empty=True)
    schema_8(url, rows)
    s = storages.open(url)
    try:
        found = s.rollup_check()
        scored = [r for r in rows if r.kind == "rating" and "score" in r.payload]
        assert (found.ratings, found.differing) == (len(scored), 0)
        assert s.rollup_check().rows == len({rollup_key(r) for r in scored})
    finally:
        s.close()
        if backend != "sqlite":
            server.drop(url)


# -- the views read the roll-ups and give what reading every event gave ----------------------


def old_score_counts(s: Store, store: str, since: int, until: int) -> tuple[dict[int, int], int]:
    counts: dict[int, int] = {}
    outside = 0
    for e in s.ratings(store, since, until):
        if e.kind != "rating":
            continue
        if e.outside:
            outside += 1
        else:
            counts[e.payload["score"]] = counts.get(e.payload["score"], 0) + 1
    return counts, outside


def old_summary(s: Store, cfg: StoreConfig, store: str, now: int) -> dict[str, Any]:
    """The summary's figures counted from every event of the day, as before the roll-ups."""
    since, until = views.day_bounds(cfg, now)
    counts, outside = old_score_counts(s, store, since, until)
    ratings = sum(counts.values())
    low = sum(n for score, n in counts.items() if score <= cfg.low_threshold)
    return {
        "counts": [counts.get(score, 0) for score in range(1, cfg.scale + 1)],
        "ratings": ratings, "breakdowns": low, "outside_hours": outside,
        "satisfaction": round((ratings - low) / ratings, 4) if ratings else None,
    }  # fmt: skip


def old_report(s: Store, cfg: StoreConfig, store: str, now: int, days: int) -> list[Any]:
    """Each day's ratings by local hour and score, counted event by event."""
    today = datetime.fromtimestamp(now, cfg.tz).date()
    first = today - timedelta(days=days - 1)
    since, until = views.local_bounds(cfg, first, today)
    per_day: dict[date, dict[str, Any]] = {
        first + timedelta(days=n): {"counts": {}, "hours": {}, "outside": 0} for n in range(days)
    }
    for e in s.ratings(store, since, until):
        if e.kind != "rating":
            continue
        local = datetime.fromtimestamp(e.at, cfg.tz)
        tally = per_day[local.date()]
        if e.outside:
            tally["outside"] += 1
            continue
        score = e.payload["score"]
        tally["counts"][score] = tally["counts"].get(score, 0) + 1
        hour = tally["hours"].setdefault(local.hour, {})
        hour[score] = hour.get(score, 0) + 1
    return [
        (day.isoformat(), [t["counts"].get(x, 0) for x in range(1, cfg.scale + 1)], t["outside"],
         {f"{h:02d}": [by.get(x, 0) for x in range(1, cfg.scale + 1)]
          for h, by in sorted(t["hours"].items())})
        for day, t in per_day.items()
    ]  # fmt: skip


def old_recognition(s: Store, cfg: StoreConfig, store: str, now: int, days: int) -> Any:
    """The board with every rating of the period read and credited one by one."""
    since = now - days * DAY
    ratings = [
        Rating(staff or attribute((), cfg, station, at), score, at, scale)
        for at, score, staff, station, scale in s.rating_credits(store, since, now)
    ]
    cases = s.recovered_between(store, since, now)
    return to_payload(board(cfg, ratings, cases, since, now), store, now)


# Zones with 30- and 45-minute offsets, and one whose clocks went back on 2 Nov 2025 (inside
# the week before NOW); hours and a roster that begin or end off the quarter hour.
ZONES_TOML = """
[stores.kolkata]
tz = "Asia/Kolkata"
[stores.kolkata.hours]
mon = "07:10-21:55"
tue = "07:10-21:55"
wed = "07:00-22:00"
thu = "07:10-21:55"
fri = "07:10-21:55"
sat = "08:00-20:00"
sun = "09:05-18:40"
[[stores.kolkata.roster]]
station = "till-1"
staff = "ana"
start = "08:05"
end = "14:50"
[[stores.kolkata.roster]]
station = "desk"
staff = "ben-k"
start = "14:50"
end = "02:07"
[stores.kathmandu]
tz = "Asia/Kathmandu"
[[stores.kathmandu.roster]]
station = "till-1"
staff = "cleo"
start = "06:45"
end = "13:15"
[stores.newyork]
tz = "America/New_York"
[stores.newyork.hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "08:00-20:00"
thu = "08:00-20:00"
fri = "08:00-20:00"
sat = "10:00-01:30"
sun = "12:00-18:00"
[[stores.newyork.roster]]
station = "till-1"
staff = "ana"
start = "01:00"
end = "03:00"
[[stores.newyork.roster]]
station = "desk"
staff = "dan"
start = "09:20"
end = "17:00"
"""
ZONES = parse_stores(ZONES_TOML)
TIMES = ("07:10", "08:05", "14:50", "02:07", "06:45", "13:15", "01:00", "01:30", "09:20", "12:00")


@st.composite
def stored_ratings(draw: st.DrawFn, store: str) -> list[EventRow]:
    """A store's ratings over the nine days before NOW: many near the times its hours and
    roster change (off the quarter hour), the rest anywhere; some outside hours, some with
    a staff member signed in, at two stations."""
    tz = ZONES.get(store).tz
    out = []
    for seq in range(1, draw(st.integers(1, 60)) + 1):
        if draw(st.booleans()):
            day = (datetime.fromtimestamp(NOW, tz) - timedelta(days=draw(st.integers(0, 8)))).date()
            hh, mm = map(int, draw(st.sampled_from(TIMES)).split(":"))
            start = datetime.combine(day, time(hh, mm), tzinfo=tz).timestamp()
            at = int(start) + draw(st.integers(-900, 900))
        else:
            at = NOW - draw(st.integers(0, 9 * DAY))
        score = draw(st.integers(1, 4))
        p = {"v": 1, "kind": "rating", "store": store, "device": "till-1", "seq": seq, "ts": at,
             "up_ms": 0, "score": score, "scale": draw(st.sampled_from((4, 4, 5))),
             "station": draw(st.sampled_from(("till-1", "desk"))),
             "staff": draw(st.sampled_from((None, None, "ana", "eve")))}  # fmt: skip
        outside = draw(st.integers(0, 4)) == 0
        out.append(EventRow(store, "till-1", seq, "rating", at, at, at, False, p, "", outside))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    store=st.sampled_from(sorted(ZONES.configs)),
    data=st.data(),
    now=st.integers(NOW - 2 * DAY, NOW),
    batches=st.integers(1, 4),
)
def test_the_views_from_the_rollups_equal_those_from_every_event(
    store: str, data: st.DataObject, now: int, batches: int
) -> None:
    rows = data.draw(stored_ratings(store))
    cfg = ZONES.get(store)
    with tempfile.TemporaryDirectory() as tmp:
        s = Storage(Path(tmp) / "kiosk.db")
        try:
            for k in range(batches):
                s.write_batch(rows[k::batches])
            assert s.rollup_check().ratings == len(rows)
            for days in (1, 7):
                assert views.recognition(s, cfg, store, now, days) == old_recognition(
                    s, cfg, store, now, days
                )
                got = views.report(s, cfg, store, now, days)
                assert [(r["day"], r["counts"], r["outside_hours"], r["ratings_by_hour"])
                        for r in got] == old_report(s, cfg, store, now, days)  # fmt: skip
            summary = views.summary(s, cfg, store, now)
            assert {k: summary[k] for k in old_summary(s, cfg, store, now)} == old_summary(
                s, cfg, store, now
            )
            # any window, aligned to the quarter or not, against the events
            since = now - data.draw(st.integers(0, 3 * DAY))
            assert s.score_counts_between(store, since, now) == old_score_counts(
                s, store, since, now
            )
        finally:
            s.close()


def test_each_back_end_reads_from_its_rollups_what_every_event_gives(store_url: str) -> None:
    """The comparison above, on the same ratings in each back-end, at unaligned times."""
    rng = random.Random(13)
    s = storages.open(store_url)
    try:
        for store in sorted(ZONES.configs):
            tz = ZONES.get(store).tz
            rows = []
            for seq in range(1, 301):
                day = (datetime.fromtimestamp(NOW, tz) - timedelta(days=rng.randrange(9))).date()
                hh, mm = map(int, rng.choice(TIMES).split(":"))
                near = datetime.combine(day, time(hh, mm), tzinfo=tz).timestamp()
                at = (
                    int(near) + rng.randrange(-900, 900)
                    if seq % 2
                    else NOW - rng.randrange(9 * DAY)
                )
                p = {"v": 1, "kind": "rating", "store": store, "device": "till-1", "seq": seq,
                     "ts": at, "up_ms": 0, "score": rng.randint(1, 4), "scale": 4,
                     "station": rng.choice(("till-1", "desk")),
                     "staff": rng.choice((None, "ana", "eve"))}  # fmt: skip
                rows.append(EventRow(store, "till-1", seq, "rating", at, at, at, False, p, "",
                                     rng.random() < 0.2))  # fmt: skip
            s.write_batch(rows)
            cfg = ZONES.get(store)
            for now in (NOW, NOW - 3 * DAY - 7 * 60 - 13):
                for days in (1, 7):
                    assert views.recognition(s, cfg, store, now, days) == old_recognition(
                        s, cfg, store, now, days
                    )
                    got = views.report(s, cfg, store, now, days)
                    assert [(r["day"], r["counts"], r["outside_hours"], r["ratings_by_hour"])
                            for r in got] == old_report(s, cfg, store, now, days)  # fmt: skip
                assert s.score_counts_between(store, now - DAY - 61, now) == old_score_counts(
                    s, store, now - DAY - 61, now
                )
        check_matches(s)
    finally:
        s.close()


def test_a_quarter_whose_roster_changes_inside_it_is_credited_rating_by_rating(
    tmp_path: Path,
) -> None:
    """Ana's shift at till-1 in Kolkata begins at 08:05: a rating at 08:02 goes to nobody, one
    at 08:07 to her, though both fall in the quarter from 08:00."""
    cfg = ZONES.get("kolkata")
    monday = datetime(2025, 11, 17, 8, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    times = [int(monday.timestamp()) + m * 60 for m in (2, 7, 8, 9)]
    scores = (1, 4, 4, 4)
    p = {"v": 1, "kind": "rating", "store": "kolkata", "device": "till-1", "ts": 0, "up_ms": 0,
         "score": 4, "scale": 4, "station": "till-1", "staff": None}  # fmt: skip
    s = Storage(tmp_path / "kiosk.db")
    try:
        s.write_batch(
            EventRow(
                "kolkata",
                "till-1",
                seq,
                "rating",
                at,
                at,
                at,
                False,
                {**p, "seq": seq, "score": score},
            )
            for seq, (at, score) in enumerate(zip(times, scores, strict=True), start=1)
        )
        quarter = times[0] // 900
        # 07:10 (Monday's opening) and 08:05 (her shift) fall inside quarters: read apart
        assert views.uneven_quarters(cfg, quarter - 4, quarter + 4) == {quarter - 4, quarter}
        payload = views.recognition(s, cfg, "kolkata", NOW, 7)
        assert payload["team"]["ratings"] == 4
        assert [(p["staff"], p["ratings"]) for p in payload["staff"]] == [("ana", 3)]
        assert payload == old_recognition(s, cfg, "kolkata", NOW, 7)
    finally:
        s.close()


# -- kiosk-host verify ---------------------------------------------------------------------


def damage(url: str) -> None:
    """One roll-up row counts two ratings too many, and one is missing."""
    statements = (
        "UPDATE rating_rollup SET n = n + 2 WHERE quarter = (SELECT min(quarter) FROM"
        " rating_rollup)",
        "DELETE FROM rating_rollup WHERE quarter = (SELECT max(quarter) FROM rating_rollup)",
    )
    if storages.is_postgres(url):
        with psycopg.connect(url, autocommit=True) as c:
            for q in statements:
                c.execute(q)
        return
    with sqlite3.connect(url) as c:
        for q in statements:
            c.execute(q)
    c.close()


def test_verify_finds_a_damaged_rollup_names_it_and_repairs_it(store_url: str) -> None:
    s = storages.open(store_url)
    w = Writer(s, STORES)
    w.write(kiosk_stream(random.Random(11), "north", "till-0", 80))
    s.save_store_settings('[stores.north]\ntz = "Europe/Berlin"\n', "stores.toml", NOW)
    held = s.rollup_check()
    s.close()
    ok = run_cli(["verify", "--db", store_url])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"roll-ups match the events: {held.ratings} ratings in {held.rows} rows\n"

    damage(store_url)
    bad = run_cli(["verify", "--db", store_url])
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("roll-ups differ from the events in ")
    assert any(" stored vs " in line and "+01:00" in line for line in lines[1:])
    assert lines[-1] == "kiosk-host verify --repair rebuilds them from the events"
    as_json = json.loads(run_cli(["verify", "--db", store_url, "--json"]).stdout)
    assert not as_json["match"] and as_json["differing"] == len(as_json["differences"]) >= 2
    first = as_json["differences"][0]
    assert first["stored"] == first["counted"] + 2 and first["local"].endswith("+01:00")

    fixed = run_cli(["verify", "--db", store_url, "--repair"])
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines()[-1] == (
        f"repaired: rebuilt from the events, {held.ratings} ratings in {held.rows} rows"
    )
    again = run_cli(["verify", "--db", store_url, "--json"])
    assert again.returncode == 0
    assert json.loads(again.stdout) == {
        "match": True, "ratings": held.ratings, "rows": held.rows, "differing": 0,
        "differences": [], "repaired": None,
    }  # fmt: skip


def test_the_rollups_match_at_every_moment_while_another_connection_stores(
    store_url: str,
) -> None:
    """Checks made while a writer stores batch after batch on a connection of its own find
    the roll-ups matching each time: they move in the events' own transaction, and a check
    reads one moment."""
    sent = kiosk_stream(random.Random(2), "north", "till-1", 400)
    writing = storages.open(store_url)
    reading = storages.open(store_url)
    done = threading.Event()
    checks: list[RollupCheck] = []

    def write() -> None:
        w = Writer(writing, STORES)
        try:
            for start in range(0, len(sent), 10):
                w.write(sent[start : start + 10])
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while not done.is_set():
            checks.append(reading.rollup_check())
        thread.join()
        checks.append(reading.rollup_check())
    finally:
        writing.close()
        reading.close()
    assert [c for c in checks if c.differing] == []
    assert len({c.ratings for c in checks}) > 2  # checked while it grew, not only before or after
    assert checks[-1].ratings == sum(1 for m in sent if b'"kind": "rating"' in m[1])


def test_verify_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    result = run_cli(["verify", "--db", str(tmp_path / "none.db")])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no such database" in result.stderr
