"""`kiosk-host backup`, `restore` and `check`: copies of a live database, and putting one back.

`serve` holds an advisory lock on DB.lock while it runs; `restore` takes the same lock, so a
database is never replaced under a running aggregator.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiosk_host.errors import UserError
from kiosk_host.storage import refuse_postgres
from kiosk_host.storage.sqlite import Storage, StorageError, write_failure


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


@contextmanager
def serving(db: Path | None) -> Iterator[None]:
    """Held by `serve` for as long as it runs: `restore` refuses while it is held. None: a
    PostgreSQL database, which needs no lock file (restore refuses it)."""
    if db is None or str(db) == ":memory:":
        yield
        return
    try:
        fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as why:
        said = write_failure(db, why)
        raise StorageError(said or f"--db {db}: cannot make {lock_path(db)}: {why}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"--db {db}: another kiosk-host serve or restore is using it; stop that first"
            ) from None
        yield
    finally:
        os.close(fd)


def backup(args: argparse.Namespace) -> int:
    refuse_postgres(args.db, "backup", "back PostgreSQL up with pg_dump (or pg_basebackup)")
    to = Path(args.to)
    if to.exists():
        raise UserError(f"--to {to}: already exists; name a new file")
    if not to.parent.is_dir():
        raise UserError(f"--to {to}: the folder {to.parent} does not exist")
    db = Storage.open(args.db, create=False, check=True)
    try:
        db.backup(to)
    except sqlite3.Error as why:
        to.unlink(missing_ok=True)
        said = write_failure(to, why)
        raise UserError((said or f"--to {to}: {why}").replace("--db", "--to", 1)) from None
    finally:
        db.close()
    print(f"kiosk-host: backed up {args.db} to {to}", file=sys.stderr)
    return 0


SQLITE_HEADER = b"SQLite format 3\x00"


def restore(args: argparse.Namespace) -> int:
    refuse_postgres(args.db, "restore", "restore PostgreSQL with pg_restore or psql")
    source, target = Path(args.source), Path(args.db)
    if not target.parent.is_dir():
        raise UserError(f"--db {target}: the folder {target.parent} does not exist")
    if target.is_dir():
        raise UserError(f"--db {target}: is a folder, not a database file")
    if target.is_file() and target.stat().st_size and not _is_sqlite(target):
        # even with --force: a mistyped --db must not overwrite someone's other file
        raise UserError(f"--db {target}: is no database; it is not replaced")
    if not source.is_file():
        raise UserError(f"--from {source}: no such backup file")
    try:
        copy = Storage(source, create=False, check=True)
    except StorageError as why:
        raise UserError(str(why).replace("--db", "--from", 1)) from None
    try:
        if target.exists() and not args.force:
            raise UserError(f"--db {target}: exists; give --force to replace it with {source}")
        with serving(target):
            into = Storage(target, create=True)
            try:
                copy.db.backup(into.db)
                into.check()
            except sqlite3.Error as why:
                said = write_failure(target, why)
                raise UserError(said or f"--db {target}: {why}") from None
            finally:
                into.close()
    finally:
        copy.close()
    print(f"kiosk-host: restored {source} into {target}", file=sys.stderr)
    return 0


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def check(args: argparse.Namespace) -> int:
    refuse_postgres(args.db, "check", "check PostgreSQL with pg_amcheck")
    db = Storage.open(args.db, create=False, check=True)  # the quick check, at every open
    try:
        rows = [r[0] for r in db.db.execute("PRAGMA integrity_check(5)")]
    except sqlite3.DatabaseError as why:
        rows = [str(why)]
    finally:
        db.close()
    if rows != ["ok"]:
        found = " ".join("; ".join(rows).split())[:300]  # SQLite's report spans lines
        raise UserError(
            f"--db {args.db}: the database is damaged ({found}); restore a backup:"
            f" kiosk-host restore --from BACKUP --db {args.db} --force"
        )
    print(f"kiosk-host: {args.db} is sound")
    return 0
