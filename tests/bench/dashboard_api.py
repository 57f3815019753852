"""Time of each JSON request behind a store's dashboard page, against the 50 ms target.

Over HTTP against the dashboard's own server, each request worked out afresh (nothing kept):
on SQLite with 1,000,000 events stored as the aggregator stores them (the store-views
benchmark's database), and on PostgreSQL with 10,000,000 events copied straight into a
throw-away cluster (COPY) and their roll-ups built as `kiosk-host verify --repair` builds
them; 10,000 open cases, twenty kiosks and a thousand alerts beside them on both. Then, on
SQLite, the same requests kept (the dashboard's cache).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from kiosk_host import storage as storages
from kiosk_host.dashboard.server import serve_dashboard
from kiosk_host.rules.recovery import Alert
from kiosk_host.rules.stores import Stores
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import DeviceStatus
from tests.bench.store_views import EVENTS, NOW, OPEN_CASES, fill, open_cases, rating_payload
from tests.postgres import Postgres

TARGET_MS = 50
ROUNDS = 5
PG_EVENTS = 10_000_000
COPY_ROWS = 100_000  # rows written to COPY at a time
PAGE = (  # what the store page asks for (its live stream sends the same views)
    "/api/stores/big/summary",
    "/api/stores/big/report?period=week",
    "/api/stores/big/report?period=day",
    "/api/stores/big/cases",
    "/api/stores/big/alerts",
    "/api/stores/big/recognition?period=week",
    "/api/stores/big/recognition?period=day",
    "/api/stores/big/devices",
    "/api/stores",
)


def kiosks_and_alerts(storage: Store) -> None:
    """Twenty kiosks with their telemetry, and a thousand alerts, beside the events."""
    status = {"v": 1, "state": "online", "fw": "1.4.2", "board": "esp32-devkitc", "ts": NOW,
              "up_ms": 1000, "config_error": None}  # fmt: skip
    telemetry = {"v": 1, "ts": NOW, "up_ms": 1000, "heap_free": 48_000, "rssi": -60,
                 "outbox": 0, "dropped": 0, "suppressed": 0, "config_error": None}  # fmt: skip
    devices = [
        DeviceStatus("big", f"till-{n}", payload, NOW, payload is telemetry)
        for n in range(20)
        for payload in (status, telemetry)
    ]
    storage.write_batch([], devices=devices)
    with storage.transaction():
        for n in range(1000):
            storage.add_alert(Alert("case_opened", "info", "big", f"A{n:03d}"[:4], "till-1",
                                    NOW + 86400, f"New case {n}", NOW - n * 60))  # fmt: skip


def copy_events(url: str, events: int) -> None:
    """`events` ratings (the store-views benchmark's year, more of it) COPYed straight into
    the events table, then the roll-ups built from them with the repair's own statement."""
    rng = random.Random(1)
    columns = "store, device, seq, kind, at, device_ts, arrived, time_flagged, payload, score"
    with psycopg.connect(url, autocommit=True) as c, c.cursor() as cur:
        # a throw-away cluster: checkpoints no more often than the load needs, and the
        # events' own indexes (but their key) made again once they are in, in one pass each
        cur.execute("ALTER SYSTEM SET max_wal_size = '16GB'")
        cur.execute("SELECT pg_reload_conf()")
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'"
            " AND indexname <> 'events_pkey'"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for start in range(0, events, COPY_ROWS):
                lines = []
                for i in range(start, min(start + COPY_ROWS, events)):
                    store, at, score, raw = rating_payload(rng, i)
                    lines.append(f"{store}\ttill-1\t{i + 1}\trating\t{at}\t{at}\t{at}\t0\t{raw}"
                                 f"\t{score}\n")  # fmt: skip
                copy.write("".join(lines))
        cur.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            cur.execute(definition)
        cur.execute("ANALYZE events")


def best_ms(client: httpx.Client, path: str) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        response = client.get(path)
        best = min(best, time.perf_counter() - start)
        assert response.status_code == 200, (path, response.text)
    return best * 1000


def measure(db: str, cache_s: float) -> dict[str, float]:
    """Each request's best time over HTTP against the dashboard's server on `db`."""
    server = serve_dashboard("127.0.0.1:0", db, Stores({}), None, now=lambda: NOW, cache_s=cache_s)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            figures = {}
            for path in PAGE:
                client.get(path)  # the connection, the thread's database connection
                figures[path] = best_ms(client, path)
            return figures
    finally:
        server.stop()


def show(title: str, figures: dict[str, float]) -> None:
    print(title)
    for path, ms in figures.items():
        print(f"  {path}: {ms:.1f} ms, {ms / TARGET_MS:.2f} of the {TARGET_MS} ms target")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "dashboard.db")
        storage = storages.open(db)
        fill(storage)
        kiosks_and_alerts(storage)
        storage.close()
        fresh, kept = measure(db, 0.0), measure(db, 3600.0)
    show(f"dashboard JSON requests over HTTP, SQLite, {EVENTS:,} events and {OPEN_CASES:,} open "
         "cases, worked out:", fresh)  # fmt: skip
    show("  the same kept (the dashboard's cache):", kept)

    server = Postgres()
    try:
        server.start()
        url = server.database()
        started = time.monotonic()
        copy_events(url, PG_EVENTS)
        copied = time.monotonic() - started
        storage = storages.open(url)
        started = time.monotonic()
        held = storage.rebuild_rollups()
        built = time.monotonic() - started
        open_cases(storage, random.Random(2))
        kiosks_and_alerts(storage)
        storage.close()
        pg = measure(url, 0.0)
    finally:
        server.close()
    print(f"PostgreSQL filled with {PG_EVENTS:,} events by COPY in {copied:.0f} s; roll-ups "
          f"built in {built:.0f} s ({held.rows:,} rows)")  # fmt: skip
    show(f"dashboard JSON requests over HTTP, PostgreSQL, {PG_EVENTS:,} events and "
         f"{OPEN_CASES:,} open cases, worked out:", pg)  # fmt: skip


if __name__ == "__main__":
    main()
