"""Next week's risky hours on the dashboard: `GET /api/stores/{store}/risk` over ratings stored
through the ingest path in a real SQLite file, with the dashboard's clock frozen."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from kiosk_host.aggregator import risk
from kiosk_host.aggregator.engine import Engine
from kiosk_host.dashboard.server import serve_dashboard
from kiosk_host.rules.forecast import PRIOR_HOURS
from kiosk_host.rules.stores import Stores, parse_stores
from kiosk_host.storage import open as open_storage
from tests.test_dashboard_api import message, store_messages

BERLIN = ZoneInfo("Europe/Berlin")
STORES_TOML = """
[stores.north]
tz = "Europe/Berlin"

[stores.north.hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "08:00-20:00"
thu = "08:00-20:00"
fri = "08:00-20:00"
sat = "09:00-18:00"
sun = "closed"

[stores.fresh]
tz = "Europe/Berlin"

[stores.empty]
"""
# Sunday 30 November 2025, 23:00 in Berlin: the history is the eight whole weeks from Monday
# 6 October (the clocks went back on Sunday 26 October, a closed day); the coming week is
# Monday 1 to Sunday 7 December.
NOW = int(datetime(2025, 11, 30, 23, 0, tzinfo=BERLIN).timestamp())
FIRST = date(2025, 10, 6)
OPEN_HOURS_A_WEEK = 5 * 12 + 9


def at(day: date, hour: int, minute: int = 10) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).timestamp())


def eight_weeks() -> list[tuple[int, int]]:
    """(time, score) of north's ratings: a good one every open day at noon; Thursdays 18:00
    two breakdowns every week, Saturdays 14:00 one every week, Tuesday 09:00 five on one day
    only; and breakdowns outside opening hours (a Sunday, a Monday at 21:00) that count for
    nothing."""
    out = []
    for n in range(56):
        day = FIRST + timedelta(days=n)
        wd = day.weekday()
        if wd != 6:
            out.append((at(day, 12), 4))
        if wd == 3:
            out += [(at(day, 18, 5), 1), (at(day, 18, 40), 2)]
        if wd == 5:
            out.append((at(day, 14, 30), 2))
        if day == FIRST + timedelta(days=8):  # a Tuesday
            out += [(at(day, 9, m), 1) for m in (1, 12, 24, 36, 48)]
        if wd == 6 and n < 20:
            out.append((at(day, 11), 1))
        if wd == 0:
            out.append((at(day, 21), 1))
    return out


def store(db: str, stores: Stores, name: str, ratings: list[tuple[int, int]]) -> None:
    storage = open_storage(db)
    try:
        batch = [
            message(name, "till-1", seq, "rating", t, score=score, scale=4, station="till-1",
                    staff=None)
            for seq, (t, score) in enumerate(sorted(ratings), start=1)
        ]  # fmt: skip
        store_messages(storage, Engine(stores, now=lambda: NOW), batch, NOW)
    finally:
        storage.close()


@dataclass
class Served:
    url: str
    db: str
    stores: Stores

    def risk(self, name: str) -> Any:
        r = httpx.get(f"{self.url}/api/stores/{name}/risk", timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        return r.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("risk")
    stores = parse_stores(STORES_TOML)
    db = str(tmp / "kiosk.db")
    store(db, stores, "north", eight_weeks())
    # a store ten days old, and a store whose customers never had a breakdown
    store(db, stores, "fresh", [(NOW - d * 86400 - 3600, 1 + d % 2) for d in range(10)])
    store(db, stores, "calm", [(NOW - d * 86400 - 3600, 4) for d in range(40)])
    server = serve_dashboard("127.0.0.1:0", db, stores, None, now=lambda: NOW)
    try:
        yield Served(server.url, db, stores)
    finally:
        server.stop()


def test_the_riskiest_hours_of_next_week_are_shrunk_toward_the_stores_mean(
    served: Served,
) -> None:
    view = served.risk("north")
    assert (view["from"], view["to"]) == ("2025-12-01", "2025-12-07")
    assert view["weeks"] == 8.0 and view["days"] == 48  # Sundays are closed
    k = PRIOR_HOURS
    mu = (16 + 8 + 5) / (8 * OPEN_HOURS_A_WEEK)  # outside opening hours counts for nothing
    assert view["store_rate"] == round(mu, 4)

    def shrunk(breakdowns: int) -> float:
        return (breakdowns + k * mu) / (8 + k)

    assert [(t["weekday"], t["hour"]) for t in view["top"]] == [
        ("thu", 18), ("sat", 14), ("tue", 9),
    ]  # fmt: skip
    assert [t["expected"] for t in view["top"]] == [round(shrunk(n), 2) for n in (16, 8, 5)]
    assert view["top"][1]["reason"] == (
        f"Saturdays 14:00-15:00: {shrunk(8):.1f} breakdowns expected (8 in the last 8 Saturdays)"
    )
    assert view["top"][2]["bad_days"] == 1 and view["top"][1]["bad_days"] == 8
    # the one bad Tuesday is pulled down from its own 5/8 toward the store's mean
    assert mu < view["top"][2]["expected"] < 5 / 8
    expected = view["expected"]
    assert list(expected) == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert all(len(hours) == 24 for hours in expected.values())
    assert expected["sun"] == [0] * 24  # closed
    quiet = round(shrunk(0), 3)
    assert expected["mon"] == [quiet if 8 <= h < 20 else 0 for h in range(24)]
    assert expected["sat"][:9] == [0] * 9 and expected["sat"][18:] == [0] * 6
    assert expected["thu"][18] == round(shrunk(16), 3)
    total = (OPEN_HOURS_A_WEEK - 3) * shrunk(0) + shrunk(16) + shrunk(8) + shrunk(5)
    assert view["summary"] == (
        f"{total:.1f} breakdowns expected next week in all, from 8 weeks of history."
    )
    # the endpoint gives what the library gives
    storage = open_storage(served.db)
    try:
        assert view == risk.next_week(storage, served.stores.get("north"), "north", NOW)
    finally:
        storage.close()


def test_a_new_store_a_store_without_breakdowns_and_one_without_ratings(
    served: Served,
) -> None:
    fresh = served.risk("fresh")
    assert fresh["weeks"] == round(10 / 7, 1) and fresh["days"] == 10
    # always open: every hour of next week expects something, the 22:00 hours the most
    assert len(fresh["top"]) == 3 and all(t["hour"] == 22 for t in fresh["top"])
    assert all(x > 0 for hours in fresh["expected"].values() for x in hours)
    calm = served.risk("calm")
    assert calm["top"] == [] and calm["store_rate"] == 0
    assert all(x == 0 for hours in calm["expected"].values() for x in hours)
    assert calm["summary"] == "No breakdowns in 5.7 weeks of history: no hour stands out."
    empty = served.risk("empty")  # in stores.toml, never a rating
    assert (empty["store_rate"], empty["days"], empty["weeks"], empty["top"]) == (None, 0, 0, [])
    assert empty["summary"] == "No ratings in the last 8 weeks: nothing to forecast from."


def test_an_unknown_store_is_refused(served: Served) -> None:
    r = httpx.get(f"{served.url}/api/stores/nowhere/risk", timeout=30)
    assert r.status_code == 404 and "no store 'nowhere'" in r.json()["error"]
