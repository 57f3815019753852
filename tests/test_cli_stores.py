"""One source of store settings for every command, so that the CLI shows what the dashboard
shows: --stores, else $KIOSK_STORES, else the settings `serve` kept in the database, else the
defaults; local times and time left in `cases list`; alerts named by a short prefix."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from argparse import Namespace
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.views import recognition, report
from kiosk_host.rules.recovery import Alert, duration, local_time, open_case, settle
from kiosk_host.rules.stores import parse_stores
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.identifiers import check_character
from tests.broker import Mosquitto
from tests.cli_run import run_cli
from tests.test_dashboard_api import message, store_messages
from tests.virtual_kiosks import KIOSK_HOST, wait_until

STORES_TOML = """
[stores.north]
tz = "Europe/Berlin"

[[stores.north.roster]]
station = "till-1"
staff = "ana"
start = "00:00"
end = "24:00"

[stores.north.names]
ana = "Ana"
"""
TOKYO_TOML = '[stores.north]\ntz = "Asia/Tokyo"\n'
HOUR = 3600


def kiosk_host(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGS` as a manager runs it (in this process), without $KIOSK_STORES unless
    `env` sets it."""
    return run_cli(args, {"KIOSK_STORES": None, **(env or {})})


def as_json(*args: str, env: dict[str, str] | None = None) -> Any:
    done = kiosk_host(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def low_ratings(db: Path, now: int, hours_ago: list[float]) -> list[int]:
    """At each time, a top rating at north/till-1 and a low one at till-2 a minute later,
    nobody signed in: only the roster (Ana at till-1) can credit them. The low ones' times."""
    storage = Storage(db)
    stores = parse_stores(STORES_TOML)
    batch = []
    lows = []
    for seq, h in enumerate(hours_ago, start=1):
        at = int(now - h * HOUR)
        batch.append(message("north", "till-1", seq, "rating", at, score=4, scale=4,
                             station="till-1", staff=None))  # fmt: skip
        batch.append(message("north", "till-2", seq, "rating", at + 60, score=1, scale=4,
                             station="till-2", staff=None))  # fmt: skip
        lows.append(at + 60)
    store_messages(storage, Engine(stores), batch, now)
    storage.close()
    return lows


def keep(db: Path, text: str, source: str) -> None:
    """The settings as `serve` keeps them (test_serve_keeps_... shows that it does)."""
    storage = Storage(db)
    storage.save_store_settings(text, source, int(time.time()))
    storage.close()


def local_hours(tz: str, times: list[int]) -> Counter[tuple[str, str]]:
    zone = ZoneInfo(tz)
    local = [datetime.fromtimestamp(t, zone) for t in times]
    return Counter((t.date().isoformat(), f"{t:%H}") for t in local)


def shown_hours(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter({(r["day"], h): n for r in rows for h, n in r["breakdowns_by_hour"].items()})


def test_every_command_reads_the_settings_serve_kept_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kiosk.db"
    now = int(time.time())
    hours_ago = [0.5, 1.5, 3.25, 5]
    times = low_ratings(db, now, hours_ago)
    bare = tmp_path / "bare.db"
    shutil.copy(db, bare)  # the same data, no settings kept: every store on the defaults
    keep(db, STORES_TOML, str(tmp_path / "stores.toml"))
    week = ("report", "--store", "north", "--period", "week")

    # Berlin's hours and Ana on the roster, as the dashboard shows them, with no --stores.
    assert shown_hours(as_json(*week, "--db", str(db))) == local_hours("Europe/Berlin", times)
    assert shown_hours(as_json(*week, "--db", str(bare))) == local_hours("UTC", times)
    board = as_json("recognition", "--store", "north", "--db", str(db))
    expected = recognition(Storage(db), parse_stores(STORES_TOML).get("north"), "north", now)
    assert [(p["staff"], p["name"]) for p in board["staff"]] == [("ana", "Ana")]
    assert board["staff"] == expected["staff"]
    assert as_json("recognition", "--store", "north", "--db", str(bare))["staff"] == []
    text = kiosk_host("recognition", "--store", "north", "--db", str(db))
    assert text.returncode == 0 and text.stdout.startswith("Ana: ")
    day = kiosk_host("report", "--store", "north", "--period", "week", "--db", str(db)).stdout
    berlin = local_hours("Europe/Berlin", times)
    for (when, hour), n in berlin.items():
        assert f"{hour}h {n}" in next(line for line in day.splitlines() if line.startswith(when))

    # $KIOSK_STORES comes before the database, --stores before both.
    tokyo = tmp_path / "tokyo.toml"
    tokyo.write_text(TOKYO_TOML)
    env = {"KIOSK_STORES": str(tokyo)}
    assert shown_hours(as_json(*week, "--db", str(db), env=env)) == local_hours("Asia/Tokyo", times)
    assert as_json("recognition", "--store", "north", "--db", str(db), env=env)["staff"] == []
    named = tmp_path / "stores.toml"
    named.write_text(STORES_TOML)
    with_file = as_json(*week, "--db", str(db), "--stores", str(named), env=env)
    assert shown_hours(with_file) == local_hours("Europe/Berlin", times)
    cfg = parse_stores(STORES_TOML).get("north")
    assert [r["counts"] for r in with_file] == [
        r["counts"] for r in report(Storage(db), cfg, "north", now, 7)
    ]

    # Every read command takes the same settings: a store they describe is known to all.
    for args in (("devices", "--store", "north"), ("alerts", "list", "--store", "north"),
                 ("cases", "list", "--store", "north")):  # fmt: skip
        assert kiosk_host(*args, "--db", str(db)).returncode == 0, args
    refused = kiosk_host("devices", "--store", "south", "--db", str(db))
    assert refused.returncode == 2 and "no such store" in refused.stderr


def test_a_bad_kiosk_stores_file_is_one_line_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    Storage(db).close()
    bad = tmp_path / "bad.toml"
    bad.write_text('[stores.north]\ntz = "Mars/Olympus"\n')
    done = kiosk_host("report", "--store", "north", "--db", str(db), env={"KIOSK_STORES": str(bad)})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert str(bad) in done.stderr and "Mars/Olympus" in done.stderr
    missing = kiosk_host("report", "--store", "north", "--db", str(db),
                         env={"KIOSK_STORES": str(tmp_path / "gone.toml")})  # fmt: skip
    assert missing.returncode == 2 and "$KIOSK_STORES" in missing.stderr


def test_cases_list_shows_local_times_and_the_time_left_or_overdue(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    keep(db, STORES_TOML, "stores.toml")
    cfg = parse_stores(STORES_TOML).get("north")
    now = int(time.time())
    storage = Storage(db)
    soon = "A2B3" + check_character("A2B3")
    late = "B2C3" + check_character("B2C3")
    running = open_case(cfg, "north", soon, "till-1", "till-1", 1, now - 24 * HOUR + 8070)
    overdue = settle(open_case(cfg, "north", late, "till-2", "till-2", 2, now - 27 * HOUR - 330),
                     now)  # fmt: skip
    with storage.transaction():
        storage.save_case(running)
        storage.save_case(overdue)
    storage.close()
    lines = kiosk_host("cases", "list", "--store", "north", "--db", str(db)).stdout.splitlines()
    zone = ZoneInfo("Europe/Berlin")

    def shown(t: int) -> str:
        return f"{local_time(cfg, t)} {datetime.fromtimestamp(t, zone):%Z}"

    assert lines == [
        f"{late} breached at till-2, opened {shown(overdue.opened_at)}, deadline "
        f"{shown(overdue.deadline)} (overdue by 3 h 5 min)",
        f"{soon} open at till-1, opened {shown(running.opened_at)}, deadline "
        f"{shown(running.deadline)} (2 h 14 min left)",
    ]
    assert duration(2 * HOUR + 14 * 60) == "2 h 14 min"  # the same words as the alerts
    listed = as_json("cases", "list", "--store", "north", "--db", str(db))
    assert [(c["code"], c["overdue"], c["opened"]) for c in listed] == [
        (late, True, overdue.opened_at), (soon, False, running.opened_at),
    ]  # fmt: skip


def alerts_sharing_a_prefix(storage: Storage, now: int) -> tuple[list[str], str]:
    """Case alerts of store north until two ids share their first two characters: every id,
    and that prefix."""
    ids: list[str] = []
    for n in range(2000):
        code = f"A{n:03d}"
        alert = Alert("case_opened", "info", "north", code, "till-1", now + n, "New case", now)
        storage.add_alert(alert)
        ids.append(alert.id)
        shared = [i for i in ids[:-1] if i[:2] == alert.id[:2]]
        if shared:
            return ids, alert.id[:2]
    raise AssertionError("no two ids share two characters")


def test_alerts_are_acknowledged_by_a_short_unique_prefix(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    now = int(time.time())
    low_ratings(db, now, [1.0])  # two stores with ratings, and alerts
    storage = Storage(db)
    rating = message("south", "till-1", 1, "rating", now, score=4, scale=4, station="till-1",
                     staff=None)  # fmt: skip
    store_messages(storage, Engine(parse_stores("")), [rating], now)
    with storage.transaction():
        ids, common = alerts_sharing_a_prefix(storage, now)
        storage.add_alert(Alert("praise", "info", "south", None, None, None, "10 top", 1))
    storage.close()
    both = [i for i in ids if i.startswith(common)]
    listed = kiosk_host("alerts", "list", "--store", "north", "--db", str(db)).stdout
    short = {line.split()[0] for line in listed.splitlines()}
    assert all(len(s) >= 8 for s in short) and len(short) == len(ids)
    one = next(s for s in short if ids[0].startswith(s))

    done = kiosk_host("alerts", "ack", one, "--by", "maria", "--store", "north", "--db", str(db))
    assert done.returncode == 0 and ids[0] in done.stdout, done.stderr
    upper = kiosk_host("alerts", "comment", one.upper(), "called back", "--db", str(db))
    assert upper.returncode == 0, upper.stderr
    (acked,) = [a for a in as_json("alerts", "list", "--store", "north", "--db", str(db))
                if a["id"] == ids[0]]  # fmt: skip
    assert (acked["acked_by"], acked["comment"]) == ("maria", "called back")

    ambiguous = kiosk_host("alerts", "ack", common, "--by", "maria", "--db", str(db))
    assert ambiguous.returncode == 2 and len(ambiguous.stderr.strip().splitlines()) == 1
    assert "ambiguous" in ambiguous.stderr and all(i in ambiguous.stderr for i in both)
    unknown = kiosk_host("alerts", "ack", "zz", "--by", "maria", "--db", str(db))
    assert unknown.returncode == 2 and "no alert 'zz'" in unknown.stderr
    elsewhere = kiosk_host("alerts", "ack", one, "--by", "maria", "--store", "south",
                           "--db", str(db))  # fmt: skip
    assert elsewhere.returncode == 2 and "in store south" in elsewhere.stderr
    nowhere = kiosk_host("alerts", "ack", one, "--by", "maria", "--store", "west", "--db", str(db))
    assert nowhere.returncode == 2 and "no such store" in nowhere.stderr
    untouched = [a for a in as_json("alerts", "list", "--store", "north", "--db", str(db))
                 if a["id"] != ids[0]]  # fmt: skip
    assert all(a["acked_by"] is None for a in untouched)


def test_the_demos_printed_commands_work_as_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiosk_host.demo.run import STORES_FILE, Demo, Fix, N, scaled_stores

    args = Namespace(speed=1.0, minutes=0.0, var=str(tmp_path / "var"), http_port=None,
                     mqtt_port=None, smtp_port=None, broker="mqtt://127.0.0.1:1")  # fmt: skip
    demo = Demo(args)
    demo.var.mkdir(parents=True)
    text = scaled_stores(STORES_FILE.read_text(), 1.0)
    keep(demo.db, text, str(demo.stores))  # as the demo's serve keeps them
    now = int(time.time())
    low_ratings_demo = [message(N, "till-2", 1, "rating", now - 60, score=1, scale=4,
                                station="till-2", staff=None)]  # fmt: skip
    code = "B2B3" + check_character("B2B3")
    follow_up = message(N, "till-2", 2, "follow_up", now - 50, rating_seq=1, accepted=True,
                        code=code)  # fmt: skip
    storage = Storage(demo.db)
    stores = parse_stores(text)
    store_messages(storage, Engine(stores), low_ratings_demo, now)
    store_messages(storage, Engine(stores), [follow_up], now)
    storage.close()
    before = tmp_path / "before.db"
    shutil.copy(demo.db, before)

    demo.codes[(N, "cold-coffee")] = code
    demo.fix(Fix(0, N, "cold-coffee", "ben", "fresh coffee"))
    demo.look()
    out = capsys.readouterr().out
    assert "refused" not in out, out
    printed = [line.split("$ ", 1)[1] for line in out.splitlines() if "   $ " in line]
    assert len(printed) == 5 and all("--stores" not in p for p in printed)
    fixed_by_demo = Storage(demo.db).case_by_code(N, code)
    shutil.copy(before, demo.db)  # as before the demo ran it: now the copied command runs it
    for line in printed:
        done = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (line, done.stderr)
    again = Storage(demo.db).case_by_code(N, code)
    assert again is not None and fixed_by_demo is not None
    assert (again.state, again.fixed_by, again.note) == ("fixed", "ben", "fresh coffee")
    assert (fixed_by_demo.state, fixed_by_demo.fixed_by) == ("fixed", "ben")
    # the copied report speaks Berlin's hours, as the dashboard does
    rows = as_json("report", "--store", N, "--period", "day", "--db", str(demo.db))
    berlin = parse_stores(text).get(N)
    assert rows == report(Storage(demo.db), berlin, N, int(time.time()), 1)


@pytest.mark.e2e  # serve as a separate process on the broker
def test_serve_keeps_its_store_settings_for_every_other_command(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "kiosk.db"
    named = tmp_path / "stores.toml"
    named.write_text(STORES_TOML)
    proc = subprocess.Popen(
        [str(KIOSK_HOST), "serve", "--broker", mosquitto.url, "--db", str(db), "--stores",
         str(named), "--client-id", "agg-stores"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        lines.extend(proc.stderr)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: any("serving" in s for s in lines) or proc.poll() is not None, 30,
                   "serve started")  # fmt: skip
        assert proc.poll() is None, lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    storage = Storage(db)
    assert storage.store_settings() == (STORES_TOML, str(named.resolve()))
    storage.close()
    named.unlink()  # the file may go: the database remembers what serve loaded
    low_ratings(db, int(time.time()), [1.0])
    board = as_json("recognition", "--store", "north", "--db", str(db))
    assert [(p["staff"], p["name"]) for p in board["staff"]] == [("ana", "Ana")]
