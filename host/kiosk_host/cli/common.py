"""What every `kiosk-host` command shares: opening the database and the stores, checking names."""

from __future__ import annotations

import argparse

from kiosk_host.rules.stores import Stores, load_stores
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.identifiers import identifier_pattern


def storage(args: argparse.Namespace) -> Storage:
    """The database named by --db."""
    return Storage.open(args.db)


def stores(args: argparse.Namespace) -> Stores:
    """The stores file named by --stores, else every store on the defaults."""
    return load_stores(args.stores) if args.stores else Stores({})


def identifier(value: str) -> str:
    """An argparse type: a store, device or staff identifier of the contract."""
    if not identifier_pattern().fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an identifier: lower-case letters, digits and '-', 1 to 32"
        )
    return value
