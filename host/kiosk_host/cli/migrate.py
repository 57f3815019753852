"""`kiosk-host migrate`: a store's SQLite database copied into PostgreSQL, for a chain."""

from __future__ import annotations

import argparse
import json
import os
from contextlib import ExitStack
from pathlib import Path

from kiosk_host.cli.backup import SQLITE_HEADER, serving
from kiosk_host.errors import UserError
from kiosk_host.storage import is_postgres, shown


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `migrate` command."""
    kiosk_db = os.environ.get("KIOSK_DB", "")
    migrate = commands.add_parser(
        "migrate",
        help="copy a SQLite database into an empty PostgreSQL database (serve stopped)",
        description="Checks --from (opened read-only: refused when damaged, of a newer or "
        "older schema, or not kiosk-host's), brings the PostgreSQL database --to names to the "
        "same schema version, and copies every row of every table into it in one transaction: "
        "all of it or, on any failure or interruption, nothing. --to must hold no rows yet. "
        "Each table's rows are counted on both sides before the commit. Refused while a "
        "kiosk-host serve uses --from. The password comes from the URL, ~/.pgpass or "
        "$PGPASSWORD, and is never printed.",
    )
    migrate.add_argument("--from", dest="source", required=True, help="the SQLite file")
    migrate.add_argument(
        "--to",
        default=kiosk_db if is_postgres(kiosk_db) else None,
        required=not is_postgres(kiosk_db),
        help="the PostgreSQL database: postgresql://USER@HOST[:PORT]/NAME (default $KIOSK_DB "
        "when it is one)",
    )
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(run=migrate_command)


def migrate_command(args: argparse.Namespace) -> int:
    if not is_postgres(args.to):
        raise UserError(
            f"--to {args.to}: not a PostgreSQL URL: give postgresql://USER@HOST[:PORT]/NAME"
            " (the database must exist: createdb -O USER NAME)"
        )
    if is_postgres(args.source):
        raise UserError(f"--from {shown(args.source)}: give the SQLite file to copy, not a URL")
    source = Path(args.source.removeprefix("sqlite:///"))
    to = shown(args.to)
    # imported here: only this command loads the copy and its PostgreSQL driver
    from kiosk_host.storage.transfer import transfer

    with ExitStack() as held:
        try:  # no serve may write to the file meanwhile
            lockable = _is_sqlite(source) and os.access(source.parent, os.W_OK)
            held.enter_context(serving(source if lockable else None))
        except UserError as why:  # the lock's message names --db: here the file is --from
            raise UserError(str(why).replace("--db", "--from", 1)) from None
        copied = transfer(source, args.to)
    if args.json:
        print(json.dumps({"from": str(source), "to": to, "schema_version": copied.version,
                          "tables": copied.tables, "seconds": round(copied.seconds, 3)},
                         indent=2))  # fmt: skip
        return 0
    for table, rows in copied.tables.items():
        print(f"{table}: {rows:,} rows")
    total = sum(copied.tables.values())
    print(
        f"copied {total:,} rows of {len(copied.tables)} tables from {source} (schema version "
        f"{copied.version}) into {to} in {copied.seconds:.1f} s; every table counted the same "
        "on both sides"
    )
    print(
        f"next: start the aggregator on it, `kiosk-host serve --db {to} ...` with the same "
        f"--broker and --stores as before; keep {source} as it is (a backup of the last moment "
        "on SQLite)"
    )
    return 0


def _is_sqlite(path: Path) -> bool:
    """Whether `path` is a SQLite file, whose serve's lock to take (nothing is made beside
    any other file, which the copy refuses; a file on a read-only file system has no serve)."""
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
