"""`kiosk-host serve`: the aggregator (ingest, rules, retained views) and its dashboard."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from kiosk_host.aggregator.leader import leader_for
from kiosk_host.aggregator.receiver import Ingest, IngestError, IngestRefused
from kiosk_host.aggregator.sender import Channels, Sender
from kiosk_host.cli.backup import serving
from kiosk_host.cli.common import broker_url, keep_stores, storage
from kiosk_host.errors import UserError
from kiosk_host.notify.email import Mailer, read_account
from kiosk_host.rules.stores import Stores
from kiosk_host.storage import is_postgres, shown
from kiosk_host.storage import open as open_storage
from kiosk_host.wire.broker_url import public_url


def serve(args: argparse.Namespace) -> int:
    """Ingest until SIGINT or SIGTERM ("stopped", 0); 2 when ingest stopped on a cause the
    operator can fix (a full disk), 1 on any other, each with the reason."""
    share_group(args.share, args.db)
    accounts = account_file(Path(args.broker_dir), args.broker) if args.broker_dir else None
    url = broker_url(args.broker, args.password_file, accounts)
    # Refuses what it cannot open, a newer schema or a damaged file, and migrates, before
    # anything starts; makes the database when there is none. The store settings it loads
    # are kept in it, so that every other command reads the same ones.
    db = storage(args, create=True)
    try:
        with serving(None if is_postgres(args.db) else Path(args.db)):  # only the serve that runs
            stores = keep_stores(args, db, int(time.time()))
            db.close()
            return _serve(args, url, stores)
    finally:
        db.close()


def account_file(broker_dir: Path, broker: str) -> Path:
    """Where `provision` keeps the password of the aggregator account --broker names:
    aggregator.json, or aggregator-NAME.json for another aggregator's `kiosk-host-NAME`."""
    user = unquote(urlparse(broker).username or "")
    if user.startswith("kiosk-host-"):
        return broker_dir / f"aggregator-{user.removeprefix('kiosk-host-')}.json"
    return broker_dir / "aggregator.json"


def share_group(group: str | None, db: str) -> None:
    """Refuse a --share group that cannot work: on a SQLite file (one aggregator's), or with a
    name MQTT would not take as a shared subscription's."""
    if group is None:
        return
    if not is_postgres(db):
        raise UserError(
            f"--share {group}: a group of aggregators shares one PostgreSQL database; --db "
            f"{db} is a SQLite file, one aggregator's (give --db postgresql://USER@HOST/NAME)"
        )
    if not group or any(c in group for c in "/+#") or not group.isprintable():
        raise UserError(f"--share {group!r}: a group's name has no '/', '+' or '#'")


def mailer(args: argparse.Namespace) -> Mailer | None:
    """The mail server --smtp names, with its account; refused with the reason before anything
    starts when it cannot work."""
    if not args.smtp:
        return None
    account = read_account(args.smtp, args.smtp_password_file)
    ca = Path(args.smtp_ca) if args.smtp_ca else None
    return Mailer(args.smtp, account, args.mail_from, ca)


def start_sender(
    args: argparse.Namespace, stores: Stores, channels: Channels
) -> threading.Event | None:
    """Send the deliveries (alerts and digests to the stores' [[notify]] recipients) on a
    thread of their own, with a database connection of its own; the event stops it. None
    when no store names a recipient."""
    if not any(cfg.notify for cfg in stores.configs.values()):
        return None
    sender = Sender(open_storage(str(args.db)), stores, channels, leader_for(args.db, "sender"))
    stop = threading.Event()

    def run() -> None:
        try:
            sender.run(stop)
        finally:
            sender.leader.close()
            sender.storage.close()

    threading.Thread(target=run, name="kiosk-host-sender", daemon=True).start()
    return stop


def _serve(args: argparse.Namespace, url: str, stores: Stores) -> int:
    db = args.db if is_postgres(args.db) else Path(args.db)
    channels = Channels(mailer(args), args.dashboard_url)  # a bad --smtp refused before all
    ingest = Ingest(url, db, args.client_id, stores, args.ca, args.share)
    asked: list[int] = []

    def stop(signum: int, frame: object) -> None:
        asked.append(signum)
        ingest.stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    web = None
    if args.http:  # bound before ingest starts: a port in use stops both, with the reason
        from kiosk_host.dashboard.auth import configured_token
        from kiosk_host.dashboard.server import serve_dashboard

        token = configured_token(args.token_file)
        web = serve_dashboard(args.http, args.db, stores, token)
        mode = "" if token else " (read-only: no --token-file or $KIOSK_DASHBOARD_TOKEN)"
        print(f"kiosk-host: dashboard on {web.url}/{mode}", file=sys.stderr)
    try:
        ingest.start()
    except IngestRefused as why:
        if web is not None:
            web.stop()
        raise UserError(str(why)) from None
    except IngestError as why:  # the writer process died or never opened: not the operator's
        if web is not None:
            web.stop()
        ingest.stop()
        print(f"kiosk-host: {why}", file=sys.stderr)
        return 1
    except OSError as why:
        if web is not None:
            web.stop()
        ingest.stop()
        text = why.strerror or why
        raise UserError(f"--broker {public_url(url)}: cannot connect: {text}") from None
    group = f" (group {args.share}, as {ingest.client_id})" if args.share else ""
    print(f"kiosk-host: serving {public_url(url)} into {shown(args.db)}{group}", file=sys.stderr)
    sending = start_sender(args, stores, channels)
    ingest.stopped.wait()
    if sending is not None:
        sending.set()
    if web is not None:
        web.stop()
    ingest.stop()
    if ingest.error and not asked:
        print(f"kiosk-host: {ingest.error}", file=sys.stderr)
        return 2 if ingest.fixable else 1
    print("kiosk-host: stopped", file=sys.stderr)
    return 0
