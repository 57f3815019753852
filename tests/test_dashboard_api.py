"""The dashboard's API on a real server: every figure equals `kiosk-host ... --json`.

The JSON views, CSV exports, health, metrics, live stream and the managers' token, against
the real app on a loopback port, over a database filled through the library.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk_host.aggregator import metrics
from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.writer import classify
from kiosk_host.dashboard.server import DashboardServer, serve_dashboard
from kiosk_host.rules.stores import Stores, load_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import DeadLetter, DeviceStatus, EventRow
from kiosk_host.wire.contract import Contract
from kiosk_host.wire.identifiers import check_character
from tests.postgres import BACKENDS, Postgres
from tests.test_host_ingest import case_code
from tests.virtual_kiosks import KIOSK_HOST

TOKEN = "managers-token-0123456789"
STORES_TOML = """
[stores.north]
tz = "Europe/Berlin"

[stores.north.names]
ana = "Ana"

[stores.south]
tz = "America/New_York"
low_threshold = 1

[stores.south.hours]
mon = "07:00-21:00"
tue = "07:00-21:00"
wed = "07:00-21:00"
thu = "07:00-21:00"
fri = "07:00-21:00"
sat = "08:00-14:00"
sun = "closed"

[stores.quiet]
tz = "Asia/Kolkata"
"""
FILLED = {"north": 1, "south": 2, "dark": 3}  # store: seed; dark is in no stores.toml
WEEK_S = 7 * 86400


def message(
    store: str, device: str, seq: int, kind: str, at: int, **extra: Any
) -> tuple[str, bytes]:
    """A kiosk event as the kiosk publishes it."""
    payload = {"v": 1, "kind": kind, "store": store, "device": device, "seq": seq, "ts": at,
               "up_ms": seq * 1000, **extra}  # fmt: skip
    return f"kiosk/v1/{store}/{device}/event", json.dumps(payload).encode()


def store_messages(
    storage: Store, engine: Engine, messages: list[tuple[str, bytes]], arrived: int
) -> None:
    """Classify as ingest does and store in one transaction, the recovery engine applied."""
    contract = Contract.load()
    items = [classify(contract, t, p, arrived, engine.stores) for t, p in messages]
    storage.write_batch(
        [i for i in items if isinstance(i, EventRow)],
        [i for i in items if isinstance(i, DeadLetter)],
        [i for i in items if isinstance(i, DeviceStatus)],
        apply=engine.apply,
    )


def fill_store(
    storage: Store, stores: Stores, store: str, now: int, seed: int, ratings: int = 300
) -> list[tuple[int, int]]:
    """Nine days of a store through the library: ratings with staff, accepted and declined
    follow-ups, cases fixed, wowed, recovered, escalated, left open and breached, kiosks
    online and offline, and refused messages. Returns each rating's (time, score)."""
    rng = random.Random(seed)
    clock = [now]
    engine = Engine(stores, now=lambda: clock[0])
    low = stores.get(store).low_threshold
    # Nothing within minutes of where the recognition's day or week begins: the CLI that the
    # dashboard is compared with looks a few seconds later. (A verdict comes 20 min after.)
    edges = (now - WEEK_S, now - 86400)
    times = sorted(
        at
        for at in (now - rng.randrange(60, 9 * 86400) for _ in range(ratings))
        if not any(e - 1800 <= at <= e + 600 for e in edges)
    )
    rated = []
    batch = []
    for seq, at in enumerate(times, start=1):
        device = f"till-{seq % 3 + 1}"
        score = rng.choice((1, 1, 2, 3, 4, 4, 4, 4))
        staff = rng.choice((None, "ana", "ben", "cara"))
        batch.append(message(store, device, seq, "rating", at, score=score, scale=4,
                             station=device, staff=staff))  # fmt: skip
        rated.append((device, seq, at, score))
    store_messages(storage, engine, batch, now)
    # Each case lives its life at its own time: opened, then fixed and confirmed, or not.
    accepted = [(d, seq, at) for d, seq, at, score in rated if score <= low and seq % 3]
    declined = [message(store, d, seq + 10_000, "follow_up", at + 20, rating_seq=seq,
                        accepted=False) for d, seq, at, score in rated
                if score <= low and not seq % 3]  # fmt: skip
    store_messages(storage, engine, declined, now)
    for k, (device, seq, at) in enumerate(accepted):
        code = case_code(device, seq)
        clock[0] = at + 20
        follow_up = message(store, device, seq + 10_000, "follow_up", at + 20, rating_seq=seq,
                            accepted=True, code=code)  # fmt: skip
        store_messages(storage, engine, [follow_up], at + 20)
        if at + 1300 > now - 60 or k % 5 == 0:  # left open: breached once its window closed
            continue
        outcome = ("fixed_only", "wow", "fixed", "not_fixed")[k % 5 - 1]
        if outcome != "not_fixed":
            clock[0] = at + 600
            engine.fix(storage, store, code, rng.choice(("ana", "ben")), "a coffee on us")
        if outcome != "fixed_only":  # else: unconfirmed once its window closed
            clock[0] = at + 1200
            verdict = message(store, device, seq + 20_000, "recovery_confirm", at + 1200,
                              case=code, outcome=outcome)  # fmt: skip
            store_messages(storage, engine, [verdict], at + 1200)
    clock[0] = now
    engine.tick(storage)
    engine.stream_alerts(storage, [store])
    status = {"v": 1, "state": "online", "fw": "1.4.2", "board": "esp32-devkitc",
              "ts": now - 100, "up_ms": 5000, "config_error": None}  # fmt: skip
    kiosks = [
        (f"kiosk/v1/{store}/till-1/status", json.dumps(status).encode()),
        (f"kiosk/v1/{store}/till-2/status", json.dumps(status).encode()),
        (f"kiosk/v1/{store}/till-3/status", b'{"v": 1, "state": "offline"}'),
        (f"kiosk/v1/{store}/till-1/event", b"{not json"),
        (f"kiosk/v1/{store}/till-1/event", message(store, "till-2", 1, "rating", now)[1]),
    ]
    store_messages(storage, engine, kiosks, now - 100)
    telemetry = {"v": 1, "ts": now - 30, "up_ms": 75000, "heap_free": 48213, "rssi": -61,
                 "outbox": 2, "dropped": 0, "suppressed": 1, "config_error": None}  # fmt: skip
    store_messages(
        storage, engine, [(f"kiosk/v1/{store}/till-1/telemetry", json.dumps(telemetry).encode())],
        now - 30,
    )  # fmt: skip
    return [(at, score) for _, _, at, score in rated]


@dataclass
class Dashboard:
    url: str
    db: str  # a SQLite file or a PostgreSQL URL
    stores_file: Path
    stores: Stores
    now: int
    ratings: dict[str, list[tuple[int, int]]]

    def cli(self, *args: str, stores: bool = True) -> Any:
        """`kiosk-host ARGS --json --db DB` as a manager would run it, parsed."""
        extra = ["--stores", str(self.stores_file)] if stores else []
        out = subprocess.run(
            [str(KIOSK_HOST), *args, "--json", "--db", self.db, *extra],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def post(self, path: str, body: Any, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30)


def fill(db: str, stores: Stores, now: int) -> dict[str, list[tuple[int, int]]]:
    storage = open_storage(db)
    try:
        return {s: fill_store(storage, stores, s, now, seed) for s, seed in FILLED.items()}
    finally:
        storage.close()


@pytest.fixture(scope="module", params=BACKENDS)
def dashboard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """The dashboard over nine days of three stores, on each storage back-end in turn."""
    tmp = tmp_path_factory.mktemp("dashboard")
    stores_file = tmp / "stores.toml"
    stores_file.write_text(STORES_TOML)
    stores = load_stores(stores_file)
    postgres: Postgres | None = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        db = postgres.database()
    else:
        db = str(tmp / "kiosk.db")
    now = int(time.time())
    ratings = fill(db, stores, now)
    server = serve_dashboard("127.0.0.1:0", db, stores, TOKEN)
    try:
        yield Dashboard(server.url, db, stores_file, stores, now, ratings)
    finally:
        server.stop()
        if postgres is not None:
            gc.collect()  # storages left open give their connections back first
            postgres.drop(db)


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def local_days(tz: str, now: int, days: int) -> tuple[int, int]:
    """The last `days` local days up to today in zone `tz`, as Unix seconds, worked out here
    from the zone alone."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).date()
    first = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), zone)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone)
    return int(first.timestamp()), int(end.timestamp())


# -- every figure as the CLI gives it ---------------------------------------------------------


SUMMARY_FIGURES = ("counts", "ratings", "breakdowns", "satisfaction", "outside_hours",
                   "open_cases", "overdue_cases", "recovered_in_time")  # fmt: skip


@pytest.mark.e2e  # about 60 runs of the kiosk-host command beside the dashboard
def test_every_number_equals_the_clis_json_output(dashboard: Dashboard) -> None:
    overview = dashboard.get("/api/stores")
    # every store of stores.toml and every store with data, by name
    named = sorted(set(dashboard.stores.configs) | set(FILLED))
    assert [s["store"] for s in overview["stores"]] == named
    for row in overview["stores"]:
        store = row["store"]
        (today,) = dashboard.cli("report", "--store", store, "--period", "day")
        summary = dashboard.get(f"/api/stores/{store}/summary")
        assert without(row, "kiosks", "kiosks_down", "low_threshold", "ts") == without(
            summary, "ts"
        )
        for key in SUMMARY_FIGURES:
            assert summary[key] == today[key], (store, key)
        assert summary["day"] == today["day"]

        devices = dashboard.cli("devices", "--store", store)
        # health is read at each one's own moment: the kiosks are the same, the counts add up
        down = row["kiosks_down"]
        assert row["kiosks"] == {"online": len(devices) - len(down), "offline": len(down)}
        assert set(down) <= {d["device"] for d in devices}
        shown = dashboard.get(f"/api/stores/{store}/devices")["devices"]
        timed = ("online", "last_seen", "health", "late_s")
        assert [without(d, *timed) for d in shown] == [without(d, *timed) for d in devices]
        assert all(d["health"] in ("online", "offline", "refused") for d in shown + devices)

        for period in ("day", "week"):
            report = dashboard.get(f"/api/stores/{store}/report", period=period)
            assert report["days"] == dashboard.cli("report", "--store", store, "--period", period)
            board = dashboard.get(f"/api/stores/{store}/recognition", period=period)
            cli_board = dashboard.cli("recognition", "--store", store, "--period", period)
            assert without(board, "ts", "period") == without(cli_board, "ts", "period")

        every = dashboard.cli("cases", "list", "--store", store)
        listed = dashboard.get(f"/api/stores/{store}/cases", state="all", limit=10_000)
        assert sorted(listed["cases"], key=json.dumps) == sorted(every, key=json.dumps)
        for state in ("open", "fixed", "wow", "recovered", "breached", "unconfirmed"):
            cli_cases = dashboard.cli("cases", "list", "--store", store, "--state", state)
            shown_cases = dashboard.get(f"/api/stores/{store}/cases", state=state, limit=10_000)
            assert shown_cases["cases"] == cli_cases, (store, state)
        alerts = dashboard.get(f"/api/stores/{store}/alerts")["alerts"]
        assert alerts == dashboard.cli("alerts", "list", "--store", store)


def test_the_figures_add_up_to_the_ratings_stored(dashboard: Dashboard) -> None:
    for store, ratings in dashboard.ratings.items():
        cfg = dashboard.stores.get(store)
        since, until = local_days(cfg.tz_name, dashboard.now, 7)
        week = [(at, score) for at, score in ratings if since <= at < until]
        days = dashboard.get(f"/api/stores/{store}/report", period="week")["days"]
        assert len(days) == 7 and days[-1]["day"] == dashboard.get(
            f"/api/stores/{store}/summary")["day"]  # fmt: skip
        assert sum(d["ratings"] + d["outside_hours"] for d in days) == len(week)
        for d in days:
            by_hour = [sum(counts) for counts in d["ratings_by_hour"].values()]
            assert sum(by_hour) == d["ratings"] == sum(d["counts"])
            assert sum(d["breakdowns_by_hour"].values()) == d["breakdowns"]
            assert d["breakdowns"] == sum(d["counts"][: cfg.low_threshold])
        if store == "south":  # opening hours: some presses kept apart, none on Sundays
            assert sum(d["outside_hours"] for d in days) > 0
            assert all(d["ratings"] == 0 for d in days if d["weekday"] == "Sun")
            continue
        # always open: every rating counts, in the local hour the store's zone says
        zone = ZoneInfo(cfg.tz_name)
        heat: dict[tuple[str, str], int] = {}
        for at, score in week:
            if score <= cfg.low_threshold:
                local = datetime.fromtimestamp(at, zone)
                key = (local.date().isoformat(), f"{local.hour:02d}")
                heat[key] = heat.get(key, 0) + 1
        shown = {(d["day"], h): n for d in days for h, n in d["breakdowns_by_hour"].items()}
        assert shown == heat
        board = dashboard.get(f"/api/stores/{store}/recognition")
        assert board["team"]["ratings"] == sum(
            1 for at, _ in ratings if at >= dashboard.now - WEEK_S
        )
        assert all(p["reasons"] for p in board["staff"])


def test_the_pages_render_with_their_store(dashboard: Dashboard) -> None:
    page = httpx.get(dashboard.url + "/stores/north", timeout=30)
    assert page.status_code == 200
    assert 'data-store="north"' in page.text and 'data-tz="Europe/Berlin"' in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    assert "'self'" in page.headers["content-security-policy"]
    overview = httpx.get(dashboard.url + "/", timeout=30)
    assert overview.status_code == 200 and "/static/overview.js" in overview.text
    for name in ("common.js", "store.js", "charts.js", "overview.js", "dashboard.css"):
        assert httpx.get(f"{dashboard.url}/static/{name}", timeout=30).status_code == 200


def test_unknown_stores_and_bad_parameters_are_refused_with_the_reason(
    dashboard: Dashboard,
) -> None:
    cases = [
        ("/api/stores/nowhere/summary", 404, "no store 'nowhere'"),
        ("/api/stores/north/report?period=month", 400, "period='month'"),
        ("/api/stores/north/cases?state=lost", 400, "'lost' is no case state"),
        ("/api/stores/north/cases?limit=0", 400, "limit='0'"),
        ("/api/stores/north/ratings.csv?from=2025-13-01", 400, "not a day"),
        ("/api/stores/north/ratings.csv?from=2025-02-02&to=2025-02-01", 400, "is after"),
        ("/api/stores/north/pictures.csv", 404, "no export"),
    ]
    for path, status, reason in cases:
        r = httpx.get(dashboard.url + path, timeout=30)
        assert r.status_code == status, path
        assert reason in r.json()["error"], (path, r.json())
    page = httpx.get(dashboard.url + "/stores/nowhere", timeout=30)
    assert page.status_code == 404 and "no store" in page.text


# -- exports ------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_exports_hold_every_rating_and_case_of_the_days_asked(dashboard: Dashboard) -> None:
    for store in ("north", "south"):
        cfg = dashboard.stores.get(store)
        days = dashboard.get(f"/api/stores/{store}/report", period="week")["days"]
        first, last = days[0]["day"], days[-1]["day"]
        r = httpx.get(f"{dashboard.url}/api/stores/{store}/ratings.csv",
                      params={"from": first, "to": last}, timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = read_csv(r.text)
        since, until = local_days(cfg.tz_name, dashboard.now, 7)
        assert len(rows) == len([1 for at, _ in dashboard.ratings[store] if since <= at < until])
        for d in days:
            of_day = [row for row in rows if row["time"].startswith(d["day"])]
            assert sum(row["outside_hours"] == "0" for row in of_day) == d["ratings"]
            assert sum(row["outside_hours"] == "1" for row in of_day) == d["outside_hours"]
            assert sum(row["breakdown"] == "1" and row["outside_hours"] == "0"
                       for row in of_day) == d["breakdowns"]  # fmt: skip
        assert [int(row["unix"]) for row in rows] == sorted(int(row["unix"]) for row in rows)

        cases = httpx.get(f"{dashboard.url}/api/stores/{store}/cases.csv",
                          params={"from": first, "to": last}, timeout=30)  # fmt: skip
        every = dashboard.cli("cases", "list", "--store", store)
        opened = sorted(c["code"] for c in every if since <= c["opened_at"] < until)
        assert sorted(row["code"] for row in read_csv(cases.text)) == opened
        assert {row["state"] for row in read_csv(cases.text)} <= {
            "open", "fixed", "wow", "recovered", "breached", "unconfirmed",
        }  # fmt: skip


def test_an_export_of_a_single_day_defaults_to_today(dashboard: Dashboard) -> None:
    r = httpx.get(f"{dashboard.url}/api/stores/north/ratings.csv", timeout=30)
    (today,) = dashboard.cli("report", "--store", "north", "--period", "day")
    assert len(read_csv(r.text)) == today["ratings"] + today["outside_hours"]
    assert r.text.startswith("time,unix,device,seq,station,staff,score,scale,breakdown,")


# -- health and metrics ---------------------------------------------------------------------


def scrape(dashboard: Dashboard) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = httpx.get(dashboard.url + "/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_healthz_and_metrics(dashboard: Dashboard) -> None:
    health = dashboard.get("/healthz")
    assert health["status"] == "ok" and health["schema"] >= 3
    before = scrape(dashboard)
    metrics.record_commit(messages=5, events=3, duplicates=1, dead=1, seconds=0.004)
    after = scrape(dashboard)
    assert after["kiosk_events_stored_total"][()] - before["kiosk_events_stored_total"][()] == 3
    assert after["kiosk_commit_seconds_count"][()] - before["kiosk_commit_seconds_count"][()] == 1
    for store in ("north", "south", "dark", "quiet"):
        waiting = [c for c in dashboard.cli("cases", "list", "--store", store)
                   if c["state"] in ("open", "fixed")]  # fmt: skip
        assert after["kiosk_open_cases"][(("store", store),)] == len(waiting)
    letters = dashboard.cli("deadletter", "--limit", "100000", stores=False)
    assert after["kiosk_dead_letters_stored"][()] == len(letters) > 0


# -- live updates -------------------------------------------------------------------------


def events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a server-sent-events stream."""
    name = data = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and name:
            yield name, data
            name = data = ""


def test_the_live_stream_pushes_a_changed_summary_without_asking(dashboard: Dashboard) -> None:
    url = dashboard.url + "/api/stores/quiet/stream"
    seen: dict[str, Any] = {}
    pushed = None
    with httpx.stream("GET", url, timeout=httpx.Timeout(30, read=30)) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for name, data in events(stream.iter_lines()):
            if name == "clock" and pushed is None:
                assert set(seen) == {"summary", "report", "cases", "alerts", "recognition",
                                     "devices"}  # fmt: skip
                assert seen["summary"] == dashboard.get("/api/stores/quiet/summary")
                storage = open_storage(dashboard.db)  # another process's commit, as ingest's
                at = int(time.time()) - 5
                fresh = message("quiet", "till-1", 1, "rating", at, score=4, scale=4,
                                station="till-1", staff=None)  # fmt: skip
                store_messages(storage, Engine(dashboard.stores), [fresh], at + 5)
                storage.close()
                pushed = seen["summary"]["ratings"] + 1
            elif name != "clock":
                seen[name] = json.loads(data)
                if pushed is not None and name == "summary":
                    assert seen["summary"]["ratings"] == pushed
                    break
    assert seen["summary"]["counts"] == [0, 0, 0, 1]


# -- changes need the managers' token -------------------------------------------------------


def test_acknowledging_and_commenting_need_the_token(dashboard: Dashboard) -> None:
    (alert, *_) = dashboard.cli("alerts", "list", "--store", "north")
    path = f"/api/stores/north/alerts/{alert['id']}/ack"
    refused = dashboard.post(path, {"by": "maria"}, token=None)
    assert refused.status_code == 401
    assert "token" in refused.json()["error"] and "Bearer" in refused.headers["www-authenticate"]
    wrong = dashboard.post(path, {"by": "maria"}, token="not-the-managers-token")
    assert wrong.status_code == 403 and "not this dashboard's token" in wrong.json()["error"]
    comment = f"/api/stores/north/alerts/{alert['id']}/comment"
    assert dashboard.post(comment, {"text": "sneaky"}, token=None).status_code == 401
    (same,) = [a for a in dashboard.cli("alerts", "list", "--store", "north")
               if a["id"] == alert["id"]]  # fmt: skip
    assert (same["acked_by"], same["comment"]) == (None, None)  # nothing changed

    assert dashboard.post(path, {"by": "maria"}).status_code == 200
    assert dashboard.post(comment, {"text": "called the customer back"}).status_code == 200
    (done,) = [a for a in dashboard.cli("alerts", "list", "--store", "north")
               if a["id"] == alert["id"]]  # fmt: skip
    assert (done["acked_by"], done["comment"]) == ("maria", "called the customer back")
    assert alert["id"] in [a["id"] for a in dashboard.get("/api/stores/north/alerts")["alerts"]
                           if a["acked_by"] == "maria"]  # fmt: skip

    assert dashboard.post(path, {"by": ""}).status_code == 400
    assert (
        dashboard.post(
            "/api/stores/south/alerts/" + alert["id"] + "/ack", {"by": "maria"}
        ).status_code
        == 404
    )  # another store's alert
    assert httpx.get(dashboard.url + "/api/token", timeout=30).status_code == 401
    ok = httpx.get(dashboard.url + "/api/token", timeout=30,
                   headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert ok.status_code == 200


def test_marking_a_case_fixed_needs_the_token_and_acts_as_the_cli(dashboard: Dashboard) -> None:
    first, second = dashboard.cli("cases", "list", "--store", "north", "--state", "open")[:2]
    path = f"/api/stores/north/cases/{first['code']}/fix"
    body = {"staff": "dora", "note": "replaced the cup"}
    assert dashboard.post(path, body, token=None).status_code == 401
    assert dashboard.post(path, body, token="x" * 20).status_code == 403
    assert dashboard.cli("cases", "list", "--store", "north", "--state", "open")[0] == first

    fixed = dashboard.post(path, body)
    assert fixed.status_code == 200
    (listed,) = [c for c in dashboard.cli("cases", "list", "--store", "north")
                 if c["code"] == first["code"]]  # fmt: skip
    assert fixed.json() == listed
    assert (listed["state"], listed["fixed_by"], listed["note"]) == (
        "fixed", "dora", "replaced the cup",
    )  # fmt: skip

    again = dashboard.post(path, body)
    cli = subprocess.run(
        [str(KIOSK_HOST), "cases", "fix", first["code"], "--store", "north", "--staff", "dora",
         "--db", dashboard.db], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.status_code == 409 and cli.returncode == 2
    assert again.json()["error"] in cli.stderr  # the same rule, in the same words

    by_cli = dashboard.cli("cases", "fix", second["code"], "--store", "north", "--staff", "eli")
    shown = dashboard.get("/api/stores/north/cases")["cases"]
    assert by_cli in shown and fixed.json() in shown

    nowhere = "ZZZZ" + check_character("ZZZZ")  # a code no kiosk of the store has shown yet
    assert dashboard.post(f"/api/stores/north/cases/{nowhere}/fix", body).status_code == 404
    assert dashboard.post(path, {"staff": "Not An Id"}).status_code == 400
    slip = second["code"][:4] + ("2" if second["code"][4] != "2" else "3")  # one wrong character
    refused = dashboard.post(f"/api/stores/north/cases/{slip}/fix", body)
    assert refused.status_code == 400 and "fails its check" in refused.json()["error"]


def test_a_code_typed_in_any_case_is_the_kiosks_code(dashboard: Dashboard) -> None:
    waiting = [c for c in dashboard.get("/api/stores/south/cases")["cases"]
               if c["state"] == "open" and not c["overdue"]]  # fmt: skip
    code = waiting[0]["code"]
    typed = code.lower()
    assert typed != code
    path = f"/api/stores/south/cases/{typed}/fix"
    assert dashboard.post(path, {"staff": "ana"}, token=None).status_code == 401
    fixed = dashboard.post(path, {"staff": "ana"})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["code"], fixed.json()["state"]) == (code, "fixed")
    again = dashboard.post(f"/api/stores/south/cases/{code[:2].lower()}{code[2:]}/fix",
                           {"staff": "ana"})  # fmt: skip
    assert again.status_code == 409 and code in again.json()["error"]


def test_the_roster_gives_names_for_the_fix_form(dashboard: Dashboard) -> None:
    assert dashboard.get("/api/stores/north/roster") == {
        "store": "north", "staff": [{"staff": "ana", "name": "Ana"}],
    }  # fmt: skip
    assert dashboard.get("/api/stores/quiet/roster") == {"store": "quiet", "staff": []}
    r = httpx.get(dashboard.url + "/api/stores/nowhere/roster", timeout=30)
    assert r.status_code == 404 and "nowhere" in r.json()["error"]
    page = httpx.get(dashboard.url + "/stores/north", timeout=30).text
    assert '<option value="ana">Ana</option>' in page  # names shown, ids sent


def test_overdue_cases_stay_listed_until_a_person_closes_them(dashboard: Dashboard) -> None:
    every = dashboard.cli("cases", "list", "--store", "dark")
    needing = sorted(
        (c for c in every if c["state"] in ("open", "fixed", "breached", "unconfirmed")
         and c["closed_by"] is None), key=lambda c: (c["deadline"], c["code"]),
    )  # fmt: skip
    listed = dashboard.get("/api/stores/dark/cases")
    assert listed["states"] == ["open", "fixed", "breached", "unconfirmed"]
    assert [c["code"] for c in listed["cases"]] == [c["code"] for c in needing]
    overdue = [c for c in listed["cases"] if c["overdue"]]
    assert overdue and listed["cases"][: len(overdue)] == overdue  # the overdue ones first
    assert {c["state"] for c in overdue} == {"breached", "unconfirmed"}
    assert all(c["opened"] == c["opened_at"] for c in listed["cases"])
    breached = [c for c in overdue if c["state"] == "breached"]

    # a late fix: the fix button works on an overdue case, counted as late
    late = dashboard.post(f"/api/stores/dark/cases/{breached[0]['code']}/fix", {"staff": "eli"})
    assert late.status_code == 200, late.text
    assert (late.json()["state"], late.json()["late"], late.json()["overdue"]) == (
        "unconfirmed", True, True,
    )  # fmt: skip
    assert late.json() in dashboard.get("/api/stores/dark/cases")["cases"]

    # closing needs the token, a name, an overdue case; then it leaves the list
    path = f"/api/stores/dark/cases/{breached[0]['code']}/close"
    body = {"by": "maria", "note": "the customer was called back"}
    assert dashboard.post(path, body, token=None).status_code == 401
    assert dashboard.post(path, {"by": ""}).status_code == 400
    closed = dashboard.post(path, body)
    assert closed.status_code == 200, closed.text
    assert (closed.json()["closed_by"], closed.json()["close_note"]) == (
        "maria", "the customer was called back",
    )  # fmt: skip
    assert closed.json()["state"] == "unconfirmed" and not closed.json()["overdue"]
    shown = [c["code"] for c in dashboard.get("/api/stores/dark/cases")["cases"]]
    assert breached[0]["code"] not in shown
    (kept,) = [
        c
        for c in dashboard.cli("cases", "list", "--store", "dark", "--state", "unconfirmed")
        if c["code"] == breached[0]["code"]
    ]
    assert kept == closed.json()
    again = dashboard.post(path, body)
    cli = subprocess.run(
        [str(KIOSK_HOST), "cases", "close", breached[0]["code"], "--store", "dark", "--by",
         "maria", "--db", dashboard.db], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.status_code == 409 and cli.returncode == 2
    assert again.json()["error"] in cli.stderr  # the same rule, in the same words
    running = [c for c in listed["cases"] if not c["overdue"]]
    refused = dashboard.post(f"/api/stores/dark/cases/{running[0]['code']}/close", body)
    assert refused.status_code == 409 and "still in its window" in refused.json()["error"]
    nowhere = "ZZZZ" + check_character("ZZZZ")
    assert dashboard.post(f"/api/stores/dark/cases/{nowhere}/close", body).status_code == 404

    # and by the CLI: the dashboard's list follows
    by_cli = dashboard.cli("cases", "close", breached[1]["code"], "--store", "dark", "--by",
                           "maria")  # fmt: skip
    assert by_cli["closed_by"] == "maria"
    shown = [c["code"] for c in dashboard.get("/api/stores/dark/cases")["cases"]]
    assert breached[1]["code"] not in shown


def test_without_a_token_the_dashboard_is_read_only(dashboard: Dashboard) -> None:
    server: DashboardServer = serve_dashboard("127.0.0.1:0", dashboard.db, dashboard.stores, None)
    try:
        (alert, *_) = dashboard.cli("alerts", "list", "--store", "south")
        r = httpx.post(f"{server.url}/api/stores/south/alerts/{alert['id']}/ack",
                       json={"by": "x"}, headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=30)  # fmt: skip
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        assert httpx.get(f"{server.url}/api/stores", timeout=30).status_code == 200
    finally:
        server.stop()
    assert scrape(dashboard)["kiosk_open_cases"]  # the first dashboard's gauges still serve


def test_a_token_too_short_or_an_address_in_use_stops_serve(tmp_path: Path) -> None:
    short = tmp_path / "token"
    short.write_text("short\n")
    db = str(tmp_path / "kiosk.db")
    out = subprocess.run(
        [str(KIOSK_HOST), "serve", "--broker", "mqtt://127.0.0.1:1", "--db", db, "--http",
         "127.0.0.1:0", "--token-file", str(short)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "at least 16 characters" in out.stderr
    server = serve_dashboard("127.0.0.1:0", db, Stores({}), None)
    try:
        out = subprocess.run(
            [str(KIOSK_HOST), "serve", "--broker", "mqtt://127.0.0.1:1", "--db", db, "--http",
             f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2 and "cannot listen" in out.stderr
    finally:
        server.stop()


def test_the_day_range_of_an_export_is_the_stores_local_days(dashboard: Dashboard) -> None:
    today = date.fromtimestamp(dashboard.now)
    far = today - timedelta(days=500)
    days = {"from": far.isoformat(), "to": today.isoformat()}
    r = httpx.get(f"{dashboard.url}/api/stores/north/cases.csv", params=days, timeout=30)
    assert r.status_code == 400 and "at most" in r.json()["error"]


@pytest.mark.parametrize(
    ("tz", "now"),
    [
        ("Europe/Berlin", 1761652800),  # Tue 28 Oct 2025: the week has the 25-hour Sunday
        ("America/New_York", 1741780800),  # Wed 12 Mar 2025: the week has the 23-hour Sunday
        ("Asia/Kathmandu", 1763900000),  # UTC+05:45: hours begin at a quarter past
    ],
)
def test_the_report_counts_each_local_day_and_hour(store_url: str, tz: str, now: int) -> None:
    from kiosk_host.aggregator import views as summary
    from kiosk_host.rules.stores import parse_stores

    stores = parse_stores(f'[stores.s]\ntz = "{tz}"\n\n[stores.s.hours]\n' + "\n".join(
        f'{day} = "07:30-22:15"' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ))  # fmt: skip
    storage = open_storage(store_url)
    rng = random.Random(tz)
    times = [now - seq * 397 for seq in range(1, 1800)]  # every 6 min 37 s, nine days back
    scores = [rng.randint(1, 4) for _ in times]
    batch = [
        message("s", "till-1", seq, "rating", at, score=score, scale=4,
                station="till-1", staff=None)
        for seq, (at, score) in enumerate(zip(times, scores, strict=True), start=1)
    ]  # fmt: skip
    store_messages(storage, Engine(stores), batch, now)
    rows = summary.report(storage, stores.get("s"), "s", now, 7)
    # the same figures worked out here, from the local time of each rating
    zone = ZoneInfo(tz)
    counts: dict[str, Counter[int]] = {}
    hours: dict[str, dict[str, Counter[int]]] = {}
    outside: Counter[str] = Counter()
    for at, score in zip(times, scores, strict=True):
        local = datetime.fromtimestamp(at, zone)
        day = local.date().isoformat()
        if not "07:30" <= local.strftime("%H:%M") < "22:15":
            outside[day] += 1
            continue
        counts.setdefault(day, Counter())[score] += 1
        hours.setdefault(day, {}).setdefault(f"{local.hour:02d}", Counter())[score] += 1
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)
    assert rows[-1]["day"] == datetime.fromtimestamp(now, zone).date().isoformat()
    for row in rows:
        day = row["day"]
        tally = counts.get(day, Counter())
        low = tally[1] + tally[2]
        assert row["counts"] == [tally[s] for s in (1, 2, 3, 4)]
        assert row["ratings"] == tally.total()
        assert row["breakdowns"] == low
        assert row["satisfaction"] == (round(1 - low / tally.total(), 4) if tally else None)
        assert row["outside_hours"] == outside[day]
        by_hour = hours.get(day, {})
        assert row["ratings_by_hour"] == {
            h: [c[s] for s in (1, 2, 3, 4)] for h, c in sorted(by_hour.items())
        }
        assert row["breakdowns_by_hour"] == {
            h: c[1] + c[2] for h, c in sorted(by_hour.items()) if c[1] + c[2]
        }
    assert sum(r["outside_hours"] for r in rows) > 0
    storage.close()
