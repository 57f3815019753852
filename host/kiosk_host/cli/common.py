"""What every `kiosk-host` command shares: opening the database and the stores' settings,
checking names, and the broker's address with its password from a file or the environment."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from kiosk_host.errors import UserError
from kiosk_host.rules.stores import Stores, StoresError, parse_stores
from kiosk_host.secret_file import first_line
from kiosk_host.storage import open as open_storage
from kiosk_host.storage import shown
from kiosk_host.storage.protocol import Store
from kiosk_host.wire.identifiers import identifier_pattern

PASSWORD_ENV = "KIOSK_BROKER_PASSWORD"
STORES_ENV = "KIOSK_STORES"


def storage(args: argparse.Namespace, create: bool = False) -> Store:
    """The database named by --db, checked (SQLite's quick_check, about 0.3 s for a million
    events) and refused when missing: only `serve` and `restore` make a new one."""
    return open_storage(args.db, create=create, check=True)


def stores_file(args: argparse.Namespace) -> tuple[str, str] | None:
    """The text of the stores file that --stores, else $KIOSK_STORES, names, with its name;
    None when neither names one."""
    path = getattr(args, "stores", None) or os.environ.get(STORES_ENV)
    if not path:
        return None
    where = "--stores" if getattr(args, "stores", None) else f"${STORES_ENV}"
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError as why:
        raise StoresError(f"{where} {path}: not UTF-8 text: {why}") from None
    except OSError as why:
        raise StoresError(f"{where} {path}: {why.strerror or why}") from None


def _parse(text: str, source: str) -> Stores:
    try:
        return parse_stores(text, source)
    except ValueError as why:  # a setting that breaks a rule: the message names file and key
        raise StoresError(str(why)) from None


def stores(args: argparse.Namespace, db: Store | None = None) -> Stores:
    """The stores' settings, from one source for every command, so that each shows what the
    dashboard shows: --stores, else $KIOSK_STORES, else those `serve` loaded and kept in the
    database `db`, else every store on the defaults."""
    found = stores_file(args)
    if found is not None:
        return _parse(*found)
    kept = db.store_settings() if db is not None else None
    if kept is None:
        return Stores({})
    text, source = kept
    return _parse(text, f"the store settings kept in --db {shown(args.db)} (from {source})")


def storage_and_stores(args: argparse.Namespace) -> tuple[Store, Stores]:
    """The database (as `storage`) and the stores' settings (as `stores`); a stores file
    named is read first, so that its mistake is the one reported."""
    found = stores_file(args)
    named = _parse(*found) if found is not None else None
    db = storage(args)
    return db, named if named is not None else stores(args, db)


def keep_stores(args: argparse.Namespace, db: Store, now: int) -> Stores:
    """`serve`'s stores: from --stores or $KIOSK_STORES, then kept in the database for every
    other command; else those it kept before, else the defaults."""
    found = stores_file(args)
    if found is None:
        return stores(args, db)
    loaded = _parse(*found)  # a bad file stops serve before anything is kept
    db.save_store_settings(found[0], str(Path(found[1]).resolve()), now)
    return loaded


def known_store(args: argparse.Namespace, db: Store, settings: Stores | None = None) -> str:
    """--store, when the stores' settings describe it or the database has anything of it; a
    mistyped store would otherwise read as a store with no ratings."""
    store: str = args.store
    settings = settings if settings is not None else stores(args, db)
    if store in settings:
        return store
    known = db.store_ids()
    if store not in known:
        named = ", ".join(sorted({*known, *settings.configs})) or "none yet"
        where = shown(args.db)
        raise UserError(f"--store {store}: no such store in --db {where} (known: {named})")
    return store


def whole_number(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return n


def identifier(value: str) -> str:
    """An argparse type: a store, device or staff identifier of the contract."""
    if not identifier_pattern().fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an identifier: lower-case letters, digits and '-', 1 to 32"
        )
    return value


PASSWORD_HELP = (
    "a file whose first line is the broker password (else $KIOSK_BROKER_PASSWORD); never on "
    "the command line, where ps shows it"
)


def broker_options() -> argparse.ArgumentParser:
    """The parent parser of the commands that reach kiosks through the broker: --broker
    (default $KIOSK_BROKER), --password-file and --ca."""
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument(
        "--broker",
        default=os.environ.get("KIOSK_BROKER"),
        required="KIOSK_BROKER" not in os.environ,
        help="mqtt://USER@HOST:PORT, or mqtts:// with --ca (default $KIOSK_BROKER)",
    )
    broker.add_argument("--password-file", help=PASSWORD_HELP)
    broker.add_argument("--ca", help="the CA certificate (PEM) to trust, for mqtts://")
    return broker


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
        return first_line(password_file, "--password-file")
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
