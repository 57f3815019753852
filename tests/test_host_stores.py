"""A store's settings from stores.toml: defaults, local time, opening hours, roster, bad files."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_host.errors import UserError
from kiosk_host.rules.stores import (
    DEFAULT,
    StoreConfig,
    is_open,
    load_stores,
    local_day,
    parse_stores,
    rostered,
)

BERLIN = ZoneInfo("Europe/Berlin")

FULL = """
[stores.store-12]
tz = "Europe/Berlin"
scale = 5
low_threshold = 3
window_hours = 48
near_hours = 6
surge_window_min = 30
surge_min_ratings = 8
surge_share = 0.5
praise_run = 12

[stores.store-12.hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "closed"
fri = "18:00-02:00"
sat = "09:00-13:00, 14:00-18:00"

[[stores.store-12.roster]]
station = "till-1"
staff = "ana"
days = ["mon", "tue"]
start = "08:00"
end = "14:00"

[[stores.store-12.roster]]
station = "till-1"
staff = "ben-k"
start = "12:00"
end = "20:00"

[[stores.store-12.roster]]
station = "bar"
staff = "cleo"
days = ["fri"]
start = "18:00"
end = "02:00"

[stores.store-12.names]
ana = "Ana"
"""


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=BERLIN).timestamp())


@pytest.fixture(scope="module")
def cfg() -> StoreConfig:
    return parse_stores(FULL).get("store-12")


def test_a_store_the_file_does_not_describe_gets_the_defaults() -> None:
    stores = parse_stores(FULL)
    other = stores.get("store-99")
    assert "store-99" not in stores and "store-12" in stores
    assert other == DEFAULT
    assert other.tz_name == "UTC"
    assert (other.scale, other.low_threshold) == (4, 2)
    assert (other.window_minutes, other.near_minutes, other.window_s) == (1440, 240, 86_400)
    assert (other.surge_window_min, other.surge_min_ratings, other.surge_share) == (60, 10, 0.4)
    assert other.praise_run == 10 and other.roster == () and other.hours is None
    assert is_open(other, 0) and is_open(other, 1_748_541_600)
    assert parse_stores("").get("store-12") == DEFAULT


def test_every_key_is_read(cfg: StoreConfig) -> None:
    assert cfg.tz_name == "Europe/Berlin"
    assert (cfg.scale, cfg.low_threshold, cfg.window_minutes, cfg.near_minutes) == (5, 3, 2880, 360)
    assert (cfg.surge_window_min, cfg.surge_min_ratings, cfg.surge_share) == (30, 8, 0.5)
    assert cfg.praise_run == 12
    assert [(e.station, e.staff) for e in cfg.roster] == [
        ("till-1", "ana"),
        ("till-1", "ben-k"),
        ("bar", "cleo"),
    ]
    assert cfg.name_of("ana") == "Ana" and cfg.name_of("ben-k") is None


def test_a_window_to_the_minute() -> None:
    cfg = parse_stores("[stores.demo]\nwindow_minutes = 5\nnear_minutes = 2\n").get("demo")
    assert (cfg.window_minutes, cfg.near_minutes) == (5, 2)
    assert (cfg.window_s, cfg.near_s, cfg.window_text) == (300, 120, "5 min")
    hours = parse_stores("[stores.s1]\nwindow_hours = 2\nnear_minutes = 90\n").get("s1")
    assert (hours.window_s, hours.near_s, hours.window_text) == (7200, 5400, "2 h")
    assert StoreConfig(window_minutes=90).window_text == "1 h 30 min"
    assert DEFAULT.window_text == "24 h"


@pytest.mark.parametrize(
    ("table", "near_minutes"),
    [
        ("", 240),  # the product's 4 h before a 24 h deadline
        ("window_hours = 48", 240),
        ("window_hours = 6", 60),  # a sixth of a window shorter than 24 h
        ("window_minutes = 3", 0),  # too short for a warning of whole minutes
        ("window_minutes = 12", 2),
        ("window_minutes = 12\nnear_minutes = 0", 0),
    ],
)
def test_without_a_near_key_the_warning_is_4_hours_or_a_sixth_of_a_shorter_window(
    table: str, near_minutes: int
) -> None:
    assert parse_stores(f"[stores.s1]\n{table}\n").get("s1").near_minutes == near_minutes


def test_load_stores_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stores.toml"
    path.write_text(FULL, encoding="utf-8")
    assert load_stores(path).get("store-12").tz_name == "Europe/Berlin"
    assert load_stores(str(path)).get("store-12").scale == 5


def test_opening_hours_follow_the_local_clock_across_daylight_saving(cfg: StoreConfig) -> None:
    # Monday 2025-06-02, summer (UTC+2): 06:00 UTC is 08:00 in Berlin, the store opens.
    assert is_open(cfg, berlin(2025, 6, 2, 8, 0))
    assert is_open(cfg, int(datetime(2025, 6, 2, 6, 0, tzinfo=ZoneInfo("UTC")).timestamp()))
    # Monday 2025-12-01, winter (UTC+1): 06:00 UTC is 07:00 in Berlin, still closed.
    assert not is_open(cfg, int(datetime(2025, 12, 1, 6, 0, tzinfo=ZoneInfo("UTC")).timestamp()))
    assert is_open(cfg, berlin(2025, 12, 1, 8, 0))
    # The end is exclusive.
    assert is_open(cfg, berlin(2025, 12, 1, 19, 59, 59))
    assert not is_open(cfg, berlin(2025, 12, 1, 20, 0))


def test_closed_days_split_hours_and_hours_past_midnight(cfg: StoreConfig) -> None:
    assert not is_open(cfg, berlin(2025, 6, 4, 12, 0))  # Wednesday: "closed"
    assert not is_open(cfg, berlin(2025, 6, 5, 12, 0))  # Thursday: left out, closed
    assert is_open(cfg, berlin(2025, 6, 7, 12, 59))  # Saturday morning
    assert not is_open(cfg, berlin(2025, 6, 7, 13, 30))  # Saturday lunch break
    assert is_open(cfg, berlin(2025, 6, 7, 14, 0))
    assert not is_open(cfg, berlin(2025, 6, 6, 17, 59))  # Friday before opening
    assert is_open(cfg, berlin(2025, 6, 6, 23, 30))  # Friday night
    assert is_open(cfg, berlin(2025, 6, 7, 1, 59))  # early Saturday: Friday's hours
    assert not is_open(cfg, berlin(2025, 6, 7, 2, 0))
    assert not is_open(cfg, berlin(2025, 6, 8, 1, 0))  # early Sunday: Saturday ends at 18:00


def test_local_day_is_the_stores_calendar_day(cfg: StoreConfig) -> None:
    late = int(datetime(2025, 6, 2, 22, 30, tzinfo=ZoneInfo("UTC")).timestamp())
    assert local_day(cfg, late) == date(2025, 6, 3)  # 00:30 in Berlin
    assert local_day(DEFAULT, late) == date(2025, 6, 2)


def test_roster_by_station_weekday_and_local_time(cfg: StoreConfig) -> None:
    monday, thursday = (2025, 6, 2), (2025, 6, 5)
    assert rostered(cfg, "till-1", berlin(*monday, 9, 0)) == "ana"
    assert rostered(cfg, "till-1", berlin(*monday, 13, 0)) == "ana"  # overlap: first entry wins
    assert rostered(cfg, "till-1", berlin(*monday, 14, 0)) == "ben-k"
    assert rostered(cfg, "till-1", berlin(*thursday, 9, 0)) is None  # ana is Mon/Tue only
    assert rostered(cfg, "till-1", berlin(*thursday, 12, 0)) == "ben-k"  # every day
    assert rostered(cfg, "till-1", berlin(*monday, 20, 0)) is None
    assert rostered(cfg, "till-2", berlin(*monday, 9, 0)) is None
    assert rostered(cfg, "bar", berlin(2025, 6, 7, 1, 0)) == "cleo"  # Friday's shift
    assert rostered(cfg, "bar", berlin(2025, 6, 8, 1, 0)) is None
    assert rostered(DEFAULT, "till-1", 1_748_541_600) is None


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("[stores.store-12\n", ["not valid TOML"]),
        ('[stores."Store 12"]\n', ["'Store 12'", "store id"]),
        ("[other]\nx = 1\n", ["'other'"]),
        ('[stores.s1]\ntz = "Mars/Olympus"\n', ["'s1'", "'tz'", "IANA time zone", "Mars/Olympus"]),
        ("[stores.s1]\nscale = 7\n", ["'s1'", "'scale'", "from 3 to 5", "7"]),
        ("[stores.s1]\nscale = 3\nlow_threshold = 3\n", ["'low_threshold'", "from 1 to 2"]),
        ('[stores.s1]\nwindow_hours = "24"\n', ["'window_hours'", "whole number", "'24'"]),
        ("[stores.s1]\nnear_hours = 24\n", ["'near_hours'", "from 0 to 23"]),
        ("[stores.s1]\nwindow_hours = 0\n", ["'window_hours'", "from 1 to 336"]),
        ("[stores.s1]\nwindow_minutes = 0\n", ["'window_minutes'", "from 1 to 20160"]),
        ("[stores.s1]\nwindow_minutes = 20161\n", ["'window_minutes'", "20161"]),
        ("[stores.s1]\nwindow_minutes = 2.5\n", ["'window_minutes'", "whole number", "2.5"]),
        ("[stores.s1]\nwindow_minutes = 5\nnear_minutes = 5\n", ["'near_minutes'", "0 to 4"]),
        ("[stores.s1]\nwindow_minutes = 90\nnear_hours = 2\n", ["'near_hours'", "0 to 1"]),
        (
            "[stores.s1]\nwindow_hours = 24\nwindow_minutes = 5\n",
            ["'s1'", "'window_hours' or 'window_minutes', not both"],
        ),
        (
            "[stores.s1]\nnear_hours = 1\nnear_minutes = 5\n",
            ["'near_hours' or 'near_minutes', not both"],
        ),
        ("[stores.s1]\nsurge_share = 1.5\n", ["'surge_share'", "share above 0 and below 1"]),
        ("[stores.s1]\nsurge_min_ratings = true\n", ["'surge_min_ratings'", "whole number"]),
        ("[stores.s1]\npraise_runs = 3\n", ["'praise_runs'", "unknown key"]),
        ('[stores.s1.hours]\nmonday = "08:00-20:00"\n', ["'hours.monday'", "weekday"]),
        ('[stores.s1.hours]\nmon = "8-20"\n', ["'hours.mon'", "08:00-20:00"]),
        ('[stores.s1.hours]\nmon = "08:00-25:00"\n', ["'hours.mon'", "HH:MM", "25:00"]),
        ('[stores.s1.hours]\nmon = "08:00-08:00"\n', ["'hours.mon'", "some length"]),
        ('[stores.s1.hours]\nmon = "closed"\n', ["'hours'", "at least one open day"]),
        (
            '[[stores.s1.roster]]\nstation = "till-1"\nstart = "08:00"\nend = "12:00"\n',
            ["'s1'", "'roster[0].staff'", "identifier"],
        ),
        (
            '[[stores.s1.roster]]\nstation = "till-1"\nstaff = "ana"\ndays = ["mo"]\n'
            'start = "08:00"\nend = "12:00"\n',
            ["'roster[0].days'", "weekdays"],
        ),
        (
            '[[stores.s1.roster]]\nstation = "till-1"\nstaff = "ana"\nshift = "early"\n',
            ["'s1'", "unknown key 'roster[0].shift'", "station"],
        ),
        (
            '[[stores.s1.roster]]\nstation = "till-1"\nstaff = "ana"\nstart = "8am"\n'
            'end = "12:00"\n',
            ["'roster[0].start'", "HH:MM", "8am"],
        ),
        ('[stores.s1.names]\nana = ""\n', ["'names.ana'", "1 to 24 characters"]),
    ],
)
def test_a_bad_file_names_the_store_the_key_and_what_was_expected(
    toml: str, names: list[str]
) -> None:
    with pytest.raises(ValueError) as err:
        parse_stores(toml, "conf/stores.toml")
    message = str(err.value)
    assert message.startswith("conf/stores.toml: ")
    for word in names:
        assert word in message, message


def test_a_missing_or_binary_file_is_a_users_error_that_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nowhere\.toml: No such file"):
        load_stores(tmp_path / "nowhere.toml")
    binary = tmp_path / "stores.toml"
    binary.write_bytes(b"\xff\xfe[stores]")
    with pytest.raises(UserError, match=r"stores\.toml: not UTF-8"):
        load_stores(binary)


@given(st.integers(min_value=1_577_836_800, max_value=4_102_444_799))
def test_an_always_open_store_is_open_and_its_day_is_the_utc_day(unix_s: int) -> None:
    assert is_open(DEFAULT, unix_s)
    assert local_day(DEFAULT, unix_s) == date(1970, 1, 1) + timedelta(days=unix_s // 86400)
