"""`kiosk-host alerts`: list a store's alerts, acknowledge one and comment on one, each named by
its id or a short prefix of it that is unique; and what was sent to people about them."""

from __future__ import annotations

import argparse
import json
import time

from kiosk_host.aggregator.sender import alerts_sent, delivery_json, shown_recipient
from kiosk_host.cli.common import (
    identifier,
    known_store,
    storage,
    storage_and_stores,
    whole_number,
)
from kiosk_host.errors import UserError
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import Delivery

COMMENT_MAX = 500  # as the dashboard's comment field
SHOWN_ID = 8  # characters of an id that `alerts list` shows, more where two share them


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    store: argparse.ArgumentParser,
    db: argparse.ArgumentParser,
) -> None:
    """The `alerts` commands; `store` is the parent with --db, --store, --stores and --json,
    `db` the one with --db alone."""
    alerts = commands.add_parser("alerts", help="alerts for the store's managers").add_subparsers(
        dest="action", required=True
    )
    listing = alerts.add_parser(
        "list", parents=[store], help="the store's alerts, newest first, with their short ids"
    )
    listing.set_defaults(run=list_alerts)
    sent = alerts.add_parser(
        "deliveries",
        parents=[store],
        help="what was sent (or is waiting to be) by e-mail and webhook, newest first",
    )
    sent.add_argument("--limit", type=whole_number, default=100, help="the latest N (default 100)")
    sent.set_defaults(run=list_deliveries)
    named = argparse.ArgumentParser(add_help=False, parents=[db])
    named.add_argument(
        "id", help="the alert's id, or the start of it that no other alert shares (alerts list)"
    )
    named.add_argument(
        "--store", type=identifier, help="the store of the alert (the prefix is looked up in it)"
    )
    named.add_argument("--stores", help="stores.toml (default $KIOSK_STORES, else serve's)")
    named.add_argument("--json", action="store_true")
    ack = alerts.add_parser("ack", parents=[named], help="acknowledge an alert")
    ack.add_argument("--by", required=True)
    ack.set_defaults(run=note)
    comment = alerts.add_parser("comment", parents=[named], help="comment on an alert")
    comment.add_argument("text", type=_comment, help=f"1 to {COMMENT_MAX} characters")
    comment.set_defaults(run=note)


def _comment(value: str) -> str:
    """An argparse type: an alert's comment, 1 to COMMENT_MAX characters."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty comment says nothing")
    if len(value) > COMMENT_MAX:
        raise argparse.ArgumentTypeError(
            f"{len(value)} characters; a comment has at most {COMMENT_MAX}"
        )
    return value


def list_alerts(args: argparse.Namespace) -> int:
    db = storage(args)
    alerts = alerts_sent(db, args.store, 100)
    if args.json:
        print(json.dumps(alerts, indent=2))
        return 0
    shown = short_ids([a["id"] for a in alerts])
    for a in alerts:
        done = f" (acknowledged by {a['acked_by']})" if a["acked_by"] else ""
        print(f"{shown[a['id']]} {a['type']} {a['severity']}: {a['text']}{done}")
    return 0


def list_deliveries(args: argparse.Namespace) -> int:
    """The store's deliveries: to whom, about what, and how it went (delivered when; failed
    and why; waiting, and until when)."""
    db = storage(args)
    rows = db.deliveries(args.store, args.limit)
    if args.json:
        print(json.dumps([delivery_json(d) for d in rows], indent=2))
        return 0
    if not rows:
        print(f"nothing sent for store {args.store}: see docs/alerts.md to have alerts sent")
        return 0
    for d in rows:
        to = shown_recipient(d.recipient)
        print(f"{_when(d.created_at)} {d.subject[:SHOWN_ID]} to {to}: {_how(d)}")
    return 0


def _when(at: int | None) -> str:
    return "?" if at is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def _how(d: Delivery) -> str:
    tries = f"{d.attempts} tr{'y' if d.attempts == 1 else 'ies'}"
    if d.state == "delivered":
        return f"delivered {_when(d.delivered_at)} ({tries})"
    if d.state == "failed":
        return f"FAILED after {tries}: {d.last_error}"
    if d.attempts:
        return f"retrying at {_when(d.next_at)} after {tries}: {d.last_error}"
    return f"waiting until {_when(d.next_at or d.not_before)}"


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id cut to SHOWN_ID characters, or longer where two of `ids` would share that."""
    out = {}
    for i in ids:
        n = SHOWN_ID
        while n < len(i) and any(j != i and j.startswith(i[:n]) for j in ids):
            n += 1
        out[i] = i[:n]
    return out


def resolve(db: Store, prefix: str, store: str | None) -> str:
    """The one alert whose id starts with `prefix` (in `store` when given); UserError naming
    the candidates when there are several, or how to find the ids when there is none."""
    found = db.alerts_by_prefix(prefix.strip(), store) if prefix.strip() else []
    where = f" in store {store}" if store else ""
    if not found:
        listing = f"--store {store}" if store else "--store S"
        raise UserError(
            f"no alert {prefix!r}{where}; `kiosk-host alerts list {listing}` shows them"
        )
    exact = [i for i, _ in found if i == prefix.strip().lower()]
    if len(found) > 1 and not exact:
        shown = ", ".join(f"{i} ({s})" for i, s in found[:5])
        more = " and more" if len(found) > 5 else ""
        raise UserError(f"alert {prefix!r}{where} is ambiguous: {shown}{more}; give more of it")
    return exact[0] if exact else found[0][0]


def note(args: argparse.Namespace) -> int:
    """Acknowledge (ack) or comment on (comment) one alert, named by its id or a prefix."""
    db, settings = storage_and_stores(args)
    store = known_store(args, db, settings) if args.store else None
    alert_id = resolve(db, args.id, store)
    by = args.by if args.action == "ack" else None
    text = args.text if args.action == "comment" else None
    if not db.note_alert(alert_id, by, text):  # gone since: another process deleted it
        raise UserError(f"no alert {alert_id}")
    if args.json:  # as the dashboard answers the same change
        print(json.dumps({"ok": True, "id": alert_id, "acked_by": by, "comment": text}))
    else:
        done = f"acknowledged by {by}" if by else "commented"
        print(f"{alert_id} {done}")
    return 0
