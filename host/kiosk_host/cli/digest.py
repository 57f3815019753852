"""`kiosk-host digest`: a store's daily or weekly digest e-mail written to a file, unsent."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, tzinfo
from pathlib import Path

from kiosk_host.cli.common import known_store, storage_and_stores
from kiosk_host.errors import UserError

PERIODS = ("day", "week")  # aggregator/digest.py KINDS, named here without loading jinja2


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], store: argparse.ArgumentParser
) -> None:
    """The `digest` command; `store` is the parent with --db, --store, --stores and --json."""
    digest = commands.add_parser(
        "digest",
        parents=[store],
        help="write a store's daily or weekly digest e-mail to a file, without sending it",
        description="Writes the digest a store's managers get by e-mail (docs/digest.md) as a "
        ".eml file: the figures of the period, the breakdowns by day and hour, the cases "
        "recovered and missed, the recognition board and, weekly, next week's riskiest hours. "
        "--period day covers the store-local day before --at, week the last full week (Monday "
        "to Sunday) before it. --json prints the file, subject, Message-ID, date and language.",
    )
    digest.add_argument(
        "--period", required=True, metavar="day|week", help="the daily or the weekly digest"
    )
    digest.add_argument(
        "--at",
        metavar="ISO-TIME",
        help="write it as at this time, e.g. 2026-11-23T07:00 (the store's local time) or "
        "2026-11-23T06:00Z (default now)",
    )
    digest.add_argument("--to", required=True, metavar="FILE.eml", help="the file to write")
    digest.add_argument(
        "--language", help="its language, e.g. de (default the store's `language` setting)"
    )
    digest.set_defaults(run=write_digest)


def write_digest(args: argparse.Namespace) -> int:
    if args.period not in PERIODS:
        raise UserError(f"--period {args.period}: give day or week")
    db, settings = storage_and_stores(args)
    store = known_store(args, db, settings)
    cfg = settings.get(store)
    now = int(time.time()) if args.at is None else at_time(args.at, cfg.tz)
    from kiosk_host.aggregator.digest import digest_message  # only this command loads jinja2

    msg = digest_message(db, cfg, store, args.period, now, args.language)
    _write(Path(args.to), bytes(msg))
    if args.json:
        print(json.dumps({"to": args.to, "subject": msg["Subject"],
                          "message_id": msg["Message-ID"], "date": msg["Date"],
                          "language": msg["Content-Language"]}, indent=2))  # fmt: skip
    else:
        print(f"{args.to}: {msg['Subject']}")
    return 0


def at_time(text: str, tz: tzinfo) -> int:
    """--at as Unix seconds: an ISO time with its offset (or Z), else the store's local time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--at {text}: not an ISO time: give e.g. 2026-11-23T07:00 (the store's local time) "
            "or 2026-11-23T06:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return int(when.timestamp())


def _write(path: Path, data: bytes) -> None:
    """The file written whole or not at all: a partial digest never replaces an earlier one."""
    try:
        fd, part = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as why:
        raise UserError(f"--to {path}: {why.strerror or why}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(part, 0o644)  # a mail for people to open, not a secret (mkstemp gives 0600)
        os.replace(part, path)
    except OSError as why:
        Path(part).unlink(missing_ok=True)
        raise UserError(f"--to {path}: {why.strerror or why}") from None
