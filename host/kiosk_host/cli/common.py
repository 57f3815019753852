"""What every `kiosk-host` command shares: opening the database and the stores, checking names,
and the broker's address with its password from a file or the environment."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from kiosk_host.errors import UserError
from kiosk_host.rules.stores import Stores, load_stores
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.identifiers import identifier_pattern

PASSWORD_ENV = "KIOSK_BROKER_PASSWORD"


def storage(args: argparse.Namespace, create: bool = False) -> Storage:
    """The database named by --db, checked (SQLite's quick_check, about 0.3 s for a million
    events) and refused when missing: only `serve` and `restore` make a new one."""
    return Storage.open(args.db, create=create, check=True)


def stores(args: argparse.Namespace) -> Stores:
    """The stores file named by --stores, else every store on the defaults."""
    return load_stores(args.stores) if args.stores else Stores({})


def known_store(args: argparse.Namespace, db: Storage) -> str:
    """--store, when the stores file describes it or the database has anything of it; a
    mistyped store would otherwise read as a store with no ratings."""
    store: str = args.store
    if store in stores(args):
        return store
    known = db.store_ids()
    if store not in known:
        named = ", ".join(sorted({*known, *stores(args).configs})) or "none yet"
        raise UserError(f"--store {store}: no such store in --db {args.db} (known: {named})")
    return store


def identifier(value: str) -> str:
    """An argparse type: a store, device or staff identifier of the contract."""
    if not identifier_pattern().fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an identifier: lower-case letters, digits and '-', 1 to 32"
        )
    return value


def broker_url(url: str, password_file: str | None, accounts: Path | None = None) -> str:
    """The broker's address with its password, for this process only: from `password_file`
    (its first line), else $KIOSK_BROKER_PASSWORD, else the account file `accounts`
    (provision's aggregator.json) when it is the same user; never from a command line, where
    `ps` shows it to everyone."""
    u = urlparse(url)
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or port == -1:
        shown = url.split("@")[-1]
        raise UserError(
            f"--broker {shown!r} is not a broker address: use mqtt://USER@HOST:PORT (or "
            "mqtts:// with --ca), with the password in --password-file or $" + PASSWORD_ENV
        )
    password = _password(password_file, u.username, accounts)
    if password is None or not u.username:
        return url
    where = f"{u.hostname}:{port}" if port else u.hostname
    user = quote(unquote(u.username), safe="")
    return u._replace(netloc=f"{user}:{quote(password, safe='')}@{where}").geturl()


def _password(password_file: str | None, user: str | None, accounts: Path | None) -> str | None:
    if password_file:
        try:
            lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as why:
            text = why.strerror if isinstance(why, OSError) else "not UTF-8 text"
            raise UserError(f"--password-file {password_file}: {text or why}") from None
        if not lines or not lines[0]:
            raise UserError(f"--password-file {password_file}: its first line is empty")
        return lines[0]
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if accounts is not None and user and accounts.is_file():
        try:
            account = json.loads(accounts.read_text(encoding="utf-8"))
        except (OSError, ValueError) as why:
            raise UserError(f"{accounts}: cannot read the account: {why}") from None
        if account.get("user") == unquote(user) and isinstance(account.get("password"), str):
            return str(account["password"])
    return None
