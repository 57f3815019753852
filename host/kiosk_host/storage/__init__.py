"""The host's storage: `open()` picks SQLite or PostgreSQL by what --db names."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from kiosk_host.storage.protocol import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(where: str) -> bool:
    """True when --db names a PostgreSQL database (a URL) rather than a SQLite file."""
    return where.startswith(POSTGRES_SCHEMES)


def shown(where: str) -> str:
    """--db as messages show it: a URL's password left out."""
    if not is_postgres(where):
        return where
    parts = urlsplit(where)
    if parts.password is None:
        return where
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def open(where: str, create: bool = True, check: bool = False) -> Store:
    """The storage --db names: a `postgresql://` or `postgres://` URL, else a SQLite file
    (a path, or a `sqlite:///` URL). `create=False` refuses a database that does not exist;
    `check=True` checks it first (SQLite's quick_check)."""
    if is_postgres(where):
        # imported here: a host on SQLite never loads the PostgreSQL driver
        from kiosk_host.storage.postgres import PostgresStorage

        return PostgresStorage(where, create=create)
    from kiosk_host.storage.sqlite import Storage

    return Storage.open(where, create, check)


def refuse_postgres(where: str, command: str, instead: str) -> None:
    """Refuse a SQLite-only command on a PostgreSQL URL, saying what to use instead."""
    if is_postgres(where):
        from kiosk_host.errors import UserError

        raise UserError(f"--db: kiosk-host {command} works on SQLite files only; {instead}")
