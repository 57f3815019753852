"""SQLite and PostgreSQL behind one interface: chosen by --db, the same answers from every
method, migrated from nothing, and the SQLite-only commands refusing a PostgreSQL URL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kiosk_host import storage
from kiosk_host.rules.stores import parse_stores
from kiosk_host.storage.postgres import PG_MIGRATIONS, PostgresStorage
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import MIGRATIONS, SCHEMA_RELEASES, Storage, StorageError
from tests.broker import free_port
from tests.cli_run import run_cli
from tests.postgres import Postgres
from tests.test_dashboard_api import FILLED, STORES_TOML, fill_store

NOW = 1_763_900_000


def test_the_url_picks_the_back_end(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.database()
    try:
        for where in (url, url.replace("postgresql://", "postgres://", 1)):
            opened = storage.open(where)
            assert isinstance(opened, PostgresStorage)
            opened.close()
        for where in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path / 'b.db'}"):
            opened = storage.open(where)
            assert isinstance(opened, Storage)
            opened.close()
        assert (tmp_path / "a.db").is_file() and (tmp_path / "b.db").is_file()
    finally:
        postgres.drop(url)


def answers(s: Store, now: int) -> dict[str, Any]:
    """What every read method says of the filled stores."""
    day, week = now - 86400, now - 7 * 86400
    out: dict[str, Any] = {
        "event_count": s.event_count(),
        "store_ids": s.store_ids(),
        "case_stores": sorted(s.case_stores()),
        "waiting_case_counts": s.waiting_case_counts(),
        "waiting_cases": s.waiting_cases(now + 3 * 86400),
        "dead_letters": s.dead_letters(),
        "dead_letter_count": s.dead_letter_count(),
        "devices": s.devices(),
        "unpublished_alerts": s.unpublished_alerts(),
        "store_settings": s.store_settings(),
        "version": s.version(),
    }
    for store in FILLED:
        devices = [d["device"] for d in s.devices(store)]
        codes = [c.code for c in s.cases(store)]
        first = s.ratings_page(store, week, now, None, 7)
        out[store] = {
            "event_count": s.event_count(store),
            "score_counts": s.score_counts(store),
            "seqs": {d: s.seqs(store, d) for d in devices},
            "marks": {d: s.mark(store, d) for d in devices},
            "devices": s.devices(store),
            "cases": s.cases(store),
            "cases_open": s.cases(store, ("open", "fixed"), 5),
            "listed_cases": s.listed_cases(store),
            "case_by_code": [s.case_by_code(store, c) for c in codes],
            "cases_by_code": [s.cases_by_code(store, c) for c in codes],
            "alerts": s.alerts(store),
            "alert_store": [s.alert_store(str(a["id"])) for a in s.alerts(store)],
            "alerts_by_prefix": s.alerts_by_prefix(str(s.alerts(store)[0]["id"])[:3].upper()),
            "last_alert_at": s.last_alert_at(store, "case_opened"),
            "last_kiosk_alert_at": s.last_kiosk_alert_at(store, "till-1", "case_opened"),
            "score_counts_between": s.score_counts_between(store, week, now),
            "case_figures": s.case_figures(store, week, now, now),
            "ratings": s.ratings(store, week, now),
            "rating_credits": sorted(s.rating_credits(store, week, now), key=repr),
            "recovered_between": s.recovered_between(store, week, now),
            "last_scores": s.last_scores(store, 20),
            "rating_quarters": sorted(s.rating_quarters(store, day, now)),
            "ratings_pages": [first, s.ratings_page(store, week, now, _after(first), 7)],
            "cases_opened_between": s.cases_opened_between(store, week, now),
            "event": s.event(store, "till-1", 1),
        }
    return out


def _after(page: list[Any]) -> tuple[int, str, int]:
    last = page[-1]
    return last.at, last.device, last.seq


def test_both_back_ends_give_the_same_answers(postgres: Postgres, tmp_path: Path) -> None:
    stores = parse_stores(STORES_TOML)
    url = postgres.database()
    found = []
    try:
        for where in (str(tmp_path / "kiosk.db"), url):
            s = storage.open(where)
            for store, seed in FILLED.items():
                fill_store(s, stores, store, NOW, seed)
            s.save_store_settings(STORES_TOML, "stores.toml", NOW)
            assert s.note_alert(str(s.alerts("north")[0]["id"]), "maria", "called back")
            assert not s.note_alert("no-such-alert", "maria", None)
            found.append(answers(s, NOW))
            s.close()
    finally:
        postgres.drop(url)
    lite, pg = found
    assert lite["event_count"] > 500 and lite["north"]["cases"], "a store with too little"
    for key in lite:
        assert pg[key] == lite[key], key


def test_only_another_connections_commit_is_an_outside_change(store_url: str) -> None:
    mine, other = storage.open(store_url), storage.open(store_url)
    try:
        seen = mine.outside_changes()
        mine.save_store_settings("", "mine.toml", NOW)
        assert mine.outside_changes() == seen  # its own commit is no news to it
        other.save_store_settings("", "other.toml", NOW)
        assert mine.outside_changes() != seen
        assert mine.store_settings() == ("", "other.toml")
    finally:
        mine.close()
        other.close()


def test_an_empty_postgres_database_is_migrated_by_serve_and_refused_by_the_rest(
    postgres: Postgres,
) -> None:
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)  # one per schema version in each dialect
    url = postgres.database(empty=True)
    try:
        with pytest.raises(StorageError, match="holds no kiosk-host data"):
            storage.open(url, create=False)
        done = run_cli(["devices", "--db", url])
        assert done.returncode == 2 and "holds no kiosk-host data" in done.stderr
        s = storage.open(url)  # as serve opens it
        assert s.version() == len(MIGRATIONS)
        s.close()
        again = storage.open(url, create=False)  # migrated already: nothing to do
        assert again.version() == len(MIGRATIONS) and again.event_count() == 0
        again.close()
    finally:
        postgres.drop(url)


def test_a_newer_postgres_schema_is_refused_naming_the_release(postgres: Postgres) -> None:
    url = postgres.database()
    try:
        newer = max(SCHEMA_RELEASES)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS) + 1,))
        with pytest.raises(StorageError, match="is newer than this kiosk-host") as why:
            storage.open(url)
        assert "\n" not in str(why.value) and f"({len(MIGRATIONS)})" in str(why.value)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("UPDATE schema_version SET version = %s", (newer,))
        storage.open(url).close()  # the version it knows: opened
    finally:
        postgres.drop(url)


def test_a_postgres_it_cannot_reach_is_one_line_without_the_password() -> None:
    url = f"postgresql://kiosk:hunter2@127.0.0.1:{free_port()}/kiosk"
    started = time.monotonic()
    done = run_cli(["devices", "--db", url])
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "cannot be used as the database" in line
    assert "hunter2" not in line and "kiosk:***@127.0.0.1" in line
    assert time.monotonic() - started < 30  # refused, not waited out


@pytest.mark.parametrize(
    ("argv", "instead"),
    [
        (["backup", "--to", "{tmp}/copy.db"], "pg_dump"),
        (["restore", "--from", "{tmp}/copy.db", "--force"], "pg_restore"),
        (["check"], "pg_amcheck"),
    ],
)
def test_the_sqlite_only_commands_refuse_a_postgres_url(
    postgres: Postgres, tmp_path: Path, argv: list[str], instead: str
) -> None:
    url = postgres.database()
    try:
        args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
        for how in ({"argv": ["--db", url], "env": {}}, {"argv": [], "env": {"KIOSK_DB": url}}):
            done = run_cli([*args, *how["argv"]], env=how["env"])
            assert done.returncode == 2, done.stderr
            assert instead in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert list(tmp_path.iterdir()) == []  # nothing made beside
    finally:
        postgres.drop(url)


def test_kiosk_db_names_a_postgres_database_for_every_command(postgres: Postgres) -> None:
    url = postgres.database()
    try:
        s = storage.open(url)
        s.save_store_settings('[stores.north]\ntz = "UTC"\n', "stores.toml", NOW)
        s.close()
        done = run_cli(["cases", "list", "--store", "north", "--json"], env={"KIOSK_DB": url})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"
    finally:
        postgres.drop(url)
