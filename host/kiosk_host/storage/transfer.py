"""`kiosk-host migrate`'s copy: the one place that reads one back-end and writes the other."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from kiosk_host.storage import shown
from kiosk_host.storage.postgres import PostgresStorage
from kiosk_host.storage.sqlite import MIGRATIONS, SCHEMA_RELEASES, StorageError

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables that are no data of the host's: SQLite's own (sqlite_sequence, sqlite_stat1, ...)
# and the schema's version, which each back-end keeps in its own way.
BOOKKEEPING = ("schema_version",)
# PostgreSQL types by OID that the binary COPY writes from Python values as they come.
_INTEGERS = {20: "int8", 21: "int2", 23: "int4"}
_TEXTS = {25: "text", 1043: "varchar", 1042: "bpchar"}
_BINARY = {**_INTEGERS, **_TEXTS, 16: "bool", 17: "bytea", 700: "float4", 701: "float8"}


@dataclass(frozen=True)
class Column:
    name: str
    oid: int  # its PostgreSQL type
    identity: bool  # GENERATED ... AS IDENTITY: its sequence moves past the copied values


@dataclass(frozen=True)
class Copied:
    """What a transfer copied: rows per table (the same count in both), in table order."""

    tables: dict[str, int]
    version: int  # the schema version of both
    seconds: float


class Source:
    """A kiosk-host SQLite file opened read-only, checked, and read in one snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        where = f"--from {path}"
        if not path.exists():
            raise StorageError(f"{where}: no such file")
        if path.is_dir():
            raise StorageError(f"{where}: is a folder, not a database file")
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as why:
            raise StorageError(f"{where}: cannot be read: {why.strerror or why}") from None
        if header != SQLITE_HEADER:
            raise StorageError(f"{where}: is not a SQLite database (nor kiosk-host's)")
        try:
            self.db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as why:
            raise StorageError(f"{where}: cannot be opened: {why}") from None
        # Text the host wrote is UTF-8; anything else is kept, its bad bytes replaced.
        self.db.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            self.version = self._check()
            self.db.execute("BEGIN")  # one snapshot for every table and count
        except BaseException:
            self.db.close()
            raise

    def _check(self) -> int:
        where = f"--from {self.path}"
        try:
            found = [r[0] for r in self.db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as why:
            found = [str(why)]
        if found != ["ok"]:
            first = " ".join(found[0].split())[:160]
            raise StorageError(
                f"{where}: the database is damaged ({first}); nothing copied: restore a backup"
                f" first (kiosk-host restore --from BACKUP --db {self.path})"
            )
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        known = len(MIGRATIONS)
        if version == 0 or "events" not in self.tables():
            raise StorageError(f"{where}: holds no kiosk-host data (no events table)")
        if version > known:
            needs = SCHEMA_RELEASES.get(version)
            release = f"kiosk-host {needs} or later" if needs else "a newer kiosk-host"
            raise StorageError(
                f"{where}: schema version {version} is newer than this kiosk-host ({known}):"
                f" migrate it with {release}"
            )
        if version < known:
            raise StorageError(
                f"{where}: schema version {version} is older than this kiosk-host's ({known}):"
                f" bring it up to date first with `kiosk-host check --db {self.path}`"
            )
        return version

    def tables(self) -> list[str]:
        """The host's tables in the file: all but SQLite's own and the version's."""
        rows = self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
            " ESCAPE '\\' ORDER BY name"
        )
        return [r[0] for r in rows if r[0] not in BOOKKEEPING]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.db.execute(f"PRAGMA table_info({_quoted(table)})")]

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()[0])

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Every row, in the order they were kept (rowid), so that a target's identity column
        the file has no column for (alerts' order) numbers them in that order; a table
        WITHOUT ROWID comes in its key's order."""
        listed = ", ".join(_quoted(c) for c in columns)
        try:
            cur = self.db.execute(f"SELECT {listed} FROM {_quoted(table)} ORDER BY rowid")
        except sqlite3.OperationalError:  # WITHOUT ROWID
            cur = self.db.execute(f"SELECT {listed} FROM {_quoted(table)}")
        while batch := cur.fetchmany(10_000):
            yield from batch

    def close(self) -> None:
        self.db.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def transfer(source: Path, url: str) -> Copied:
    """Copy every row of every table of the SQLite file `source` into the PostgreSQL
    database `url`: migrated to the same schema version first, then filled in one
    transaction (nothing is kept unless all of it is), which must find the tables it fills
    empty. StorageError, saying what to do, for a source or a target it refuses."""
    started = time.monotonic()
    src = Source(source)
    try:
        try:  # the target's own migrations, each committed: an empty schema at worst
            PostgresStorage(url, create=True).close()
        except StorageError as why:
            raise StorageError(str(why).replace("--db", "--to", 1)) from None
        try:
            with psycopg.connect(url, connect_timeout=10) as pg:
                tables = _fill(src, pg, url)
        except psycopg.Error as why:
            said = " ".join(str(why).split())[:300]
            raise StorageError(
                f"--to {shown(url)}: the copy failed and nothing was kept: {said}"
            ) from None
    finally:
        src.close()
    return Copied(tables, src.version, time.monotonic() - started)


def _fill(src: Source, pg: psycopg.Connection[Any], url: str) -> dict[str, int]:
    """The one transaction of the copy (psycopg commits it when the `with` ends)."""
    where = f"--to {shown(url)}"
    found = pg.execute("SELECT version FROM schema_version").fetchone()
    version = int(found[0]) if found else 0
    if version != src.version:
        raise StorageError(
            f"{where}: is at schema version {version}, --from {src.path} at {src.version}:"
            " use the kiosk-host release of the file's version"
        )
    plan: dict[str, tuple[list[str], list[Column]]] = {}
    for table in src.tables():
        target = _columns(pg, table)
        if not target:
            raise StorageError(
                f"{where}: has no table {table} to copy --from {src.path}'s into; nothing copied"
            )
        names = {c.name: c for c in target}
        mine = src.columns(table)
        lacking = [c for c in mine if c not in names]
        if lacking:
            raise StorageError(
                f"{where}: table {table} has no column {', '.join(lacking)} to copy --from"
                f" {src.path}'s into; nothing copied"
            )
        plan[table] = (mine, target)
    # Nothing is merged: a second writer waits for this transaction, and a target with rows
    # is refused before anything is written.
    for table in plan:
        pg.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
    held = {t: _count(pg, t) for t in plan}
    if any(held.values()):
        named = ", ".join(f"{n:,} {t}" for t, n in held.items() if n)
        raise StorageError(
            f"{where}: already holds {named}; migrate copies into an empty database only, never"
            " merging: give a new one (createdb)"
        )
    counts: dict[str, int] = {}
    for table, (mine, target) in plan.items():
        counts[table] = _copy(src, pg, table, mine, {c.name: c for c in target})
        for column in target:
            if column.identity:  # new rows must not take a copied id
                pg.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, {c}),"
                        " coalesce(max({i}), 0) + 1, false) FROM {table}"
                    ).format(
                        t=sql.Literal(table),
                        c=sql.Literal(column.name),
                        i=sql.Identifier(column.name),
                        table=sql.Identifier(table),
                    )
                )
    for table, n in counts.items():
        source, kept = src.count(table), _count(pg, table)
        if not source == kept == n:
            raise StorageError(
                f"{where}: table {table} holds {kept:,} rows after the copy, --from"
                f" {src.path} {source:,}; nothing was kept"
            )
    pg.execute("SELECT nextval('changes')")  # a write transaction, as the storage's own
    return counts


def _columns(pg: psycopg.Connection[Any], table: str) -> list[Column]:
    """The target table's columns that can be written (generated ones are computed)."""
    rows = pg.execute(
        "SELECT attname, atttypid, attidentity <> '' FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum",
        (sql.Identifier(table).as_string(pg),),
    )
    return [Column(str(n), int(oid), bool(identity)) for n, oid, identity in rows]


def _count(pg: psycopg.Connection[Any], table: str) -> int:
    row = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def _copy(
    src: Source, pg: psycopg.Connection[Any], table: str, mine: list[str], target: dict[str, Column]
) -> int:
    """COPY one table's rows, each value as the PostgreSQL dialect stores it; how many."""
    types = [target[c].oid for c in mine]
    binary = all(t in _BINARY for t in types)
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in mine),
        sql.SQL(" (FORMAT BINARY)" if binary else ""),
    )
    changed = [(i, f) for i, f in enumerate(map(_converter, types)) if f is not None]
    n = 0
    with pg.cursor() as cur, cur.copy(statement) as copy:
        if binary:
            copy.set_types([_BINARY[t] for t in types])
        if not changed:
            for row in src.rows(table, mine):
                copy.write_row(row)
                n += 1
            return n
        for row in src.rows(table, mine):
            values = list(row)
            for i, f in changed:
                values[i] = f(values[i])
            copy.write_row(values)
            n += 1
    return n


def _converter(oid: int) -> Callable[[Any], Any] | None:
    """How a SQLite value becomes what the PostgreSQL column holds, as postgres.py writes it:
    text without NUL characters (PostgreSQL refuses them; U+FFFD instead), bytes for bytea,
    integers as they are (the flags too: both dialects keep them as 0 and 1), booleans only
    where a column is boolean."""
    if oid in _TEXTS:
        return _text
    if oid == 17:
        return _bytes
    if oid == 16:
        return _boolean
    return None


def _text(v: Any) -> Any:
    if isinstance(v, str):
        return v.replace("\x00", "\ufffd") if "\x00" in v else v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return v if v is None else str(v)


def _bytes(v: Any) -> Any:
    return v.encode() if isinstance(v, str) else v


def _boolean(v: Any) -> Any:
    return v if v is None else bool(v)
