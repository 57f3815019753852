"""`kiosk-host cases`: list a store's recovery cases, mark one fixed, close one, and bring up a
customer's confirmation screen on a kiosk."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.views import case_json
from kiosk_host.cli.common import (
    broker_options,
    broker_url,
    identifier,
    storage,
    storage_and_stores,
)
from kiosk_host.rules.recovery import STATES, Case, RuleError, duration, local_time
from kiosk_host.rules.stores import StoreConfig
from kiosk_host.wire.identifiers import CaseCodeError, check_case_code

NAME_MAX = 64  # who closed a case, as the dashboard's name fields
NOTE_MAX = 500


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    store: argparse.ArgumentParser,
) -> None:
    """The `cases` commands; `store` is the parent with --db, --store, --stores and --json."""
    cases = commands.add_parser("cases", help="recovery cases").add_subparsers(
        dest="action", required=True
    )
    listing = cases.add_parser(
        "list",
        parents=[store],
        help="the store's cases, earliest deadline first, in the store's local time",
    )
    listing.add_argument("--state", choices=STATES)
    listing.set_defaults(run=list_cases)
    fix = cases.add_parser(
        "fix",
        parents=[store],
        help="mark a case fixed (after its deadline: a late fix, never counted as in time)",
    )
    fix.add_argument("code", type=code)
    fix.add_argument("--staff", required=True, type=identifier)
    fix.add_argument("--note", type=text(NOTE_MAX, "a note"))
    fix.set_defaults(run=fix_case)
    close = cases.add_parser(
        "close",
        parents=[store],
        help="take an overdue case (breached or unconfirmed) off the case list; it keeps its "
        "outcome",
    )
    close.add_argument("code", type=code)
    close.add_argument("--by", required=True, type=text(NAME_MAX, "a name"))
    close.add_argument("--note", type=text(NOTE_MAX, "a note"))
    close.set_defaults(run=close_case)
    confirm = cases.add_parser(
        "confirm-on",
        parents=[store, broker_options()],
        help="show a kiosk the customer's confirmation screen",
    )
    confirm.add_argument("code", type=code)
    confirm.add_argument("--device", required=True, type=identifier)
    confirm.set_defaults(run=confirm_on)


def code(value: str) -> str:
    """An argparse type: a recovery code as typed off the kiosk's screen (any case), checked."""
    try:
        return check_case_code(value)
    except CaseCodeError as why:
        raise argparse.ArgumentTypeError(str(why)) from None


def text(most: int, what: str) -> Callable[[str], str]:
    """An argparse type: free text of 1 to `most` characters."""

    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{what} of blanks says nothing")
        if len(value) > most:
            raise argparse.ArgumentTypeError(f"{len(value)} characters; at most {most}")
        return value.strip()

    return check


def list_cases(args: argparse.Namespace) -> int:
    now = int(time.time())
    db, settings = storage_and_stores(args)
    cfg = settings.get(args.store)
    cases = db.cases(args.store, [args.state] if args.state else [])
    if args.json:
        print(json.dumps([case_json(c, now) for c in cases], indent=2))
        return 0
    for c in cases:
        print(case_line(c, cfg, now))
    return 0


def case_line(c: Case, cfg: StoreConfig, now: int) -> str:
    """One case for a person: its times on the store's clock, and how long it has left or
    has been overdue."""
    if c.overdue(now):
        left = f"overdue by {duration(now - c.deadline)}"
    elif c.closed:
        left = "closed"
    else:
        left = f"{duration(c.deadline - now)} left"
    line = (
        f"{c.code} {c.state} at {c.station}, opened {_when(cfg, c.opened_at)}, "
        f"deadline {_when(cfg, c.deadline)} ({left})"
    )
    if c.escalations:
        line += f", {c.escalations}x not yet"
    if c.fixed_by and c.state != "open":
        line += f", fixed {'late ' if c.late_fix else ''}by {c.fixed_by}"
    if c.verdict is not None:
        line += f", customer said {c.verdict}{' late' if c.late_verdict else ''}"
    if c.closed_by is not None:
        line += f", closed by {c.closed_by}"
    return line


def _when(cfg: StoreConfig, unix_s: int) -> str:
    zone = datetime.fromtimestamp(unix_s, cfg.tz).strftime("%Z")
    return f"{local_time(cfg, unix_s)} {zone}"


def fix_case(args: argparse.Namespace) -> int:
    db, settings = storage_and_stores(args)
    engine = Engine(settings)
    case = engine.fix(db, args.store, args.code, args.staff, args.note)
    if args.json:
        print(json.dumps(case_json(case, int(engine.now()))))
    elif case.late_fix:
        print(
            f"{case.code} fixed late by {case.fixed_by}: it stays on the case list, overdue, "
            "until a person closes it (kiosk-host cases close)"
        )
    else:
        print(f"{case.code} {case.state}")
    return 0


def close_case(args: argparse.Namespace) -> int:
    db, settings = storage_and_stores(args)
    engine = Engine(settings)
    case = engine.close(db, args.store, args.code, args.by, args.note)
    if args.json:
        print(json.dumps(case_json(case, int(engine.now()))))
    else:
        print(f"{case.code} {case.state}, closed by {case.closed_by}")
    return 0


def confirm_on(args: argparse.Namespace) -> int:
    """Ask a kiosk to show the customer the confirmation screen for a case."""
    from kiosk_host.fleet.commands import Broker, command, send_command
    from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR

    # the aggregator's account file provision writes: its password when the broker URL
    # names that user and neither --password-file nor $KIOSK_BROKER_PASSWORD gives one
    accounts = Path(DEFAULT_BROKER_DIR) / "aggregator.json"
    db = storage(args)
    if db.case_by_code(args.store, args.code) is None:
        raise RuleError(f"no case {args.code} in store {args.store}")
    with Broker(broker_url(args.broker, args.password_file, accounts), args.ca) as broker:
        cmd = command("confirm_recovery", case=args.code)
        sent = send_command(broker, args.store, args.device, cmd)
    print(json.dumps(cmd) if args.json else f"sent confirm_recovery {args.code} to {sent.topic}")
    return 0
