"""`kiosk-host migrate`: a SQLite database copied whole into PostgreSQL, or refused untouched."""

from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kiosk_host import storage
from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.leader import leader_for
from kiosk_host.aggregator.views import case_list, recognition, report, summary
from kiosk_host.aggregator.writer import Writer
from kiosk_host.rules.recovery import Alert
from kiosk_host.rules.stores import Stores, parse_stores
from kiosk_host.storage.sqlite import MIGRATIONS, EventRow, Storage
from kiosk_host.wire.contract import canonical
from tests.broker import free_port
from tests.cli_run import run_cli
from tests.postgres import Postgres
from tests.test_dashboard_api import FILLED, STORES_TOML, fill_store, message, store_messages
from tests.test_database_lifecycle import damage, filled
from tests.test_host_ingest import rating
from tests.test_storage_backends import answers
from tests.virtual_kiosks import KIOSK_HOST, wait_until

NOW = 1_763_900_000
UNREACHABLE = "postgresql://kiosk:hunter2@127.0.0.1:{port}/kiosk"  # nothing listens there


@pytest.fixture
def database(postgres: Postgres) -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema yet), dropped at the end."""
    url = postgres.database(empty=True)
    try:
        yield url
    finally:
        gc.collect()  # storages the test left open give their connections back first
        postgres.drop(url)


def chain_file(path: Path) -> tuple[Path, Stores]:
    """A SQLite database as `serve` leaves it: three stores' days through the ingest path
    (ratings, follow-ups, verdicts, cases, alerts, refused messages, kiosks' status and
    telemetry, marks), the store settings, an alert acknowledged, a dead letter of bytes that
    are no text."""
    stores = parse_stores(STORES_TOML)
    s = Storage.open(str(path))
    for store, seed in FILLED.items():
        fill_store(s, stores, store, NOW, seed)
    s.save_store_settings(STORES_TOML, "/etc/kiosk/stores.toml", NOW)
    assert s.note_alert(str(s.alerts("north")[0]["id"]), "maria", "called back")
    garbage = [("kiosk/v1/north/till-1/event", b"\x00\xff\xfe{")]
    store_messages(s, Engine(stores), garbage, NOW - 5)
    s.close()
    return path, stores


def views(s: storage.Store, stores: Stores) -> dict[str, Any]:
    """What the dashboard and the CLI show of each store at NOW, and every storage read."""
    out: dict[str, Any] = {"reads": answers(s, NOW)}
    for store in FILLED:  # a read with no order of its own: rows come as each table keeps them
        found = out["reads"][store]["recovered_between"]
        found.sort(key=lambda c: (c.device, c.rating_seq))
    for store in FILLED:
        cfg = stores.get(store)
        out[store] = {
            "summary": summary(s, cfg, store, NOW),
            "case_list": case_list(s, store, NOW),
            "report": report(s, cfg, store, NOW, 9),
            "recognition": recognition(s, cfg, store, NOW),
        }
    return out


def rows_in(db: Path) -> dict[str, int]:
    """Each of the file's tables (as the schema of this kiosk-host has them) with its rows."""
    with closing(sqlite3.connect(db)) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def counts(url: str, tables: dict[str, int]) -> dict[str, int]:
    """The rows of each of `tables` in the PostgreSQL database."""
    with psycopg.connect(url) as c:
        return {t: _count(c, t) for t in tables}


def scalar(url: str, query: str, args: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])


def _count(c: psycopg.Connection[Any], table: str) -> int:
    row = c.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


# -- refused before anything is written: no PostgreSQL needed ---------------------------------


def newer(db: Path) -> Path:
    with closing(sqlite3.connect(db)) as c, c:
        c.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    return db


def older(db: Path) -> Path:
    with closing(sqlite3.connect(db)) as c, c:
        c.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    return db


def not_the_hosts(db: Path) -> Path:
    with closing(sqlite3.connect(db)) as c, c:
        c.execute("CREATE TABLE recipes (name TEXT)")
    return db


def not_sqlite(db: Path) -> Path:
    db.write_text("store,device,score\nnorth,till-1,4\n")
    return db


def damaged(db: Path) -> Path:
    filled(db, 6000)
    damage(db)
    return db


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda db: newer(filled(db, 3)), f"schema version {len(MIGRATIONS) + 1} is newer"),
        (lambda db: older(filled(db, 3)), "kiosk-host check --db"),
        (damaged, "the database is damaged"),
        (not_the_hosts, "holds no kiosk-host data"),
        (not_sqlite, "is not a SQLite database"),
        (lambda db: db, "no such file"),
    ],
    ids=["newer", "older", "damaged", "not-the-hosts", "not-sqlite", "missing"],
)
def test_a_source_it_cannot_copy_is_refused_in_one_line_and_left_alone(
    tmp_path: Path, make: Any, said: str
) -> None:
    db = make(tmp_path / "kiosk.db")
    before = db.read_bytes() if db.exists() else None
    url = UNREACHABLE.format(port=free_port())
    done = run_cli(["migrate", "--from", str(db), "--to", url])
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert said in line and f"--from {db}" in line, line
    assert "hunter2" not in done.stderr + done.stdout  # refused before the server is asked
    assert (db.read_bytes() if db.exists() else None) == before  # opened read-only
    # nothing beside it but serve's lock, taken while it was read, and the files SQLite keeps
    # beside a WAL database for its readers (a SQLite file's only)
    beside = {p.name for p in tmp_path.iterdir()} - {"kiosk.db"}
    sqlite_files = {"kiosk.db.lock", "kiosk.db-wal", "kiosk.db-shm"}
    assert beside <= (sqlite_files if make is not not_sqlite and before else set())


def test_a_target_that_is_no_postgres_url_or_a_file_in_use_is_refused(tmp_path: Path) -> None:
    db = filled(tmp_path / "kiosk.db", 3)
    done = run_cli(["migrate", "--from", str(db), "--to", str(tmp_path / "other.db")])
    assert done.returncode == 2 and "not a PostgreSQL URL" in done.stderr
    # --to comes from $KIOSK_DB when that names PostgreSQL, as --db does for the others
    unreachable = UNREACHABLE.format(port=free_port())
    done = run_cli(["migrate", "--from", str(db)], env={"KIOSK_DB": unreachable})
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "--to postgresql://kiosk:***@127.0.0.1" in line, line
    assert "hunter2" not in line
    from kiosk_host.cli.backup import serving

    with serving(db):  # as a running serve holds it
        done = run_cli(["migrate", "--from", str(db), "--to", unreachable])
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and f"--from {db}: another kiosk-host serve" in line, line


# -- copied: the same answers from the copy ------------------------------------------------------


@pytest.mark.e2e
def test_a_migrated_database_gives_the_answers_the_file_gave(database: str, tmp_path: Path) -> None:
    db, stores = chain_file(tmp_path / "kiosk.db")
    before = db.read_bytes()
    done = run_cli(["migrate", "--from", str(db), "--to", database])
    assert done.returncode == 0, done.stderr
    lite = storage.open(str(db))
    pg = storage.open(database, create=False)
    try:
        on_file, on_server = views(lite, stores), views(pg, stores)
        assert on_file["reads"]["event_count"] > 500 and on_file["north"]["case_list"]["cases"]
        for key in on_file["reads"]:
            assert on_server["reads"][key] == on_file["reads"][key], key
        for store in FILLED:
            assert on_server[store] == on_file[store], store
        assert pg.dead_letters()[0].payload == b"\x00\xff\xfe{"  # bytes kept as bytes
    finally:
        lite.close()
        pg.close()
    # one line per table with its rows, the total, and what to do next
    rows = rows_in(db)
    assert {"events", "cases", "alerts", "dead_letters", "devices", "marks"} <= set(rows)
    lines = done.stdout.splitlines()
    for table, n in rows.items():
        assert f"{table}: {n:,} rows" in lines
    assert f"copied {sum(rows.values()):,} rows of {len(rows)} tables" in done.stdout
    assert f"kiosk-host serve --db {database}" in done.stdout
    assert counts(database, rows) == rows
    for command in (["deadletter", "--json"], ["alerts", "list", "--store", "north", "--json"]):
        on_file = run_cli([*command, "--db", str(db)])
        on_server = run_cli([*command, "--db", database])
        assert on_file.returncode == on_server.returncode == 0
        assert json.loads(on_server.stdout) == json.loads(on_file.stdout), command
    assert db.read_bytes() == before or db.stat().st_size == len(before)  # never written


@pytest.mark.e2e
def test_a_target_that_holds_anything_is_refused_and_left_as_it_was(
    database: str, tmp_path: Path
) -> None:
    db, stores = chain_file(tmp_path / "kiosk.db")
    s = storage.open(database)  # as a serve started on it first leaves it
    first = message(
        "east", "till-1", 1, "rating", NOW, score=4, scale=4, station="till-1", staff=None
    )
    store_messages(s, Engine(stores), [first], NOW)
    s.close()
    held = counts(database, rows_in(db))
    done = run_cli(["migrate", "--from", str(db), "--to", database, "--json"])
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert held["events"] == 1 and held["marks"] == 1, held
    named = ", ".join(f"{n:,} {t}" for t, n in sorted(held.items()) if n)
    assert f"already holds {named};" in line and "never merging" in line, line
    assert done.stdout == ""
    assert counts(database, held) == held


@pytest.mark.e2e
def test_an_aggregator_on_the_migrated_database_goes_on_storing(
    database: str, tmp_path: Path
) -> None:
    db, stores = chain_file(tmp_path / "kiosk.db")
    done = run_cli(["migrate", "--from", str(db), "--to", database, "--json"])
    assert done.returncode == 0, done.stderr
    report_ = json.loads(done.stdout)
    assert report_["to"] == database and report_["schema_version"] == len(MIGRATIONS)
    assert report_["tables"] == counts(database, rows_in(db)) == rows_in(db)
    top_letter = scalar(database, "SELECT max(id) FROM dead_letters")
    top_alert = scalar(database, "SELECT max(n) FROM alerts")
    assert top_letter > 0 and top_alert > 0
    lite = Storage.open(str(db))
    old = lite.event("north", "till-1", lite.seqs("north", "till-1")[0])
    mark = lite.mark("north", "till-1")
    lite.close()
    assert old is not None
    # The writer of `serve --share`, as it starts on the database: its group's leadership too.
    writer = Writer(storage.open(database), stores, leader_for(database))
    try:
        new = message("north", "till-1", mark + 1, "rating", NOW + 60, score=1, scale=4,
                      station="till-1", staff=None)  # fmt: skip
        again = ("kiosk/v1/north/till-1/event", old.raw.encode())  # a redelivery
        reply = writer.handle([(*new, NOW + 60), (*again, NOW + 61),
                               ("kiosk/v1/north/till-1/event", b"{broken", NOW + 62)])  # fmt: skip
        assert (reply.events, reply.duplicates, reply.dead) == (1, 1, 1)
        writer.handle([])
    finally:
        writer.storage.close()
        writer.leader.close()
    pg = storage.open(database, create=False)
    try:
        assert pg.mark("north", "till-1") == mark + 1
        assert pg.event("north", "till-1", mark + 1) is not None
        raised = Alert("seq_regression", "critical", "north", None, "till-1", None, "x", NOW)
        assert pg.add_alert(raised)
    finally:
        pg.close()
    # new rows are numbered after the copied ones, which kept theirs
    assert scalar(database, "SELECT max(id) FROM dead_letters") == top_letter + 1
    assert scalar(database, "SELECT n FROM alerts WHERE id = %s", (raised.id,)) == scalar(
        database, "SELECT max(n) FROM alerts"
    )
    assert scalar(database, "SELECT count(*) FROM alerts WHERE n <= %s", (top_alert,)) == top_alert


@pytest.mark.e2e
def test_a_table_a_later_migration_adds_is_copied_and_one_the_target_lacks_is_refused(
    database: str, tmp_path: Path
) -> None:
    db = filled(tmp_path / "kiosk.db", 20)
    # a table and a column of a later version, in both dialects
    with closing(sqlite3.connect(db)) as c, c:
        c.execute("CREATE TABLE later_rollup (store TEXT NOT NULL, day TEXT NOT NULL,"
                  " ratings INTEGER NOT NULL, flagged INTEGER NOT NULL, PRIMARY KEY (store, day))"
                  " WITHOUT ROWID")  # fmt: skip
        c.executemany("INSERT INTO later_rollup VALUES (?, ?, ?, ?)",
                      [("s1", f"2026-11-{d:02}", d * 7, d % 2) for d in range(1, 29)])  # fmt: skip
        c.execute("ALTER TABLE devices ADD COLUMN later_note TEXT")
    storage.open(database).close()  # the schema as this kiosk-host makes it
    with psycopg.connect(database) as c:
        c.execute(
            "CREATE TABLE later_rollup (store TEXT NOT NULL, day TEXT NOT NULL, ratings BIGINT"
            " NOT NULL, flagged INTEGER NOT NULL, PRIMARY KEY (store, day))"
        )
    done = run_cli(["migrate", "--from", str(db), "--to", database])
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "table devices has no column later_note" in line, line
    assert counts(database, rows_in(db)) == dict.fromkeys(rows_in(db), 0)
    with psycopg.connect(database) as c:
        c.execute("ALTER TABLE devices ADD COLUMN later_note TEXT")
    done = run_cli(["migrate", "--from", str(db), "--to", database])
    assert done.returncode == 0, done.stderr
    assert "later_rollup: 28 rows" in done.stdout.splitlines()
    with psycopg.connect(database) as c:
        assert c.execute("SELECT sum(ratings), sum(flagged) FROM later_rollup").fetchone() == (
            sum(d * 7 for d in range(1, 29)), 14)  # fmt: skip
    other = tmp_path / "other.db"
    filled(other, 3)
    with closing(sqlite3.connect(other)) as c, c:
        c.execute("CREATE TABLE unknown_here (x INTEGER)")
    fresh = database.rsplit("/", 1)[0] + "/postgres"
    done = run_cli(["migrate", "--from", str(other), "--to", fresh])
    assert done.returncode == 2 and "has no table unknown_here" in done.stderr, done.stderr


@pytest.mark.e2e
def test_a_copy_killed_midway_leaves_the_target_empty(database: str, tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    s = Storage(db)
    for start in range(0, 400_000, 50_000):
        rows = []
        for seq in range(start + 1, start + 50_001):
            p = json.loads(rating("s1", "till-1", seq, 1 + seq % 4))
            rows.append(EventRow("s1", "till-1", seq, "rating", NOW + seq, NOW + seq, NOW + seq,
                                 False, p, canonical(p)))  # fmt: skip
        s.write_batch(rows)
    s.close()
    proc = subprocess.Popen(
        [str(KIOSK_HOST), "migrate", "--from", str(db), "--to", database],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with psycopg.connect(database, autocommit=True) as c:

            def copying() -> bool:
                row = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'COPY \"events\"%%' AND state = 'active'"
                ).fetchone()
                return bool(row and row[0])

            wait_until(copying, 60, "the copy of the events")
            proc.kill()
            proc.wait(10)
            # the server notices the dead client and rolls its transaction back
            wait_until(lambda: not copying(), 30, "the copy to end")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    assert counts(database, rows_in(db)) == dict.fromkeys(rows_in(db), 0)
    done = run_cli(["migrate", "--from", str(db), "--to", database])  # and again, whole
    assert done.returncode == 0, done.stderr
    assert "events: 400,000 rows" in done.stdout.splitlines()
