"""`kiosk-host serve`: the aggregator (ingest, rules, retained views) and its dashboard."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from kiosk_host.aggregator.receiver import Ingest, IngestError
from kiosk_host.cli.common import storage, stores
from kiosk_host.wire.broker_url import public_url


def serve(args: argparse.Namespace) -> int:
    """Ingest until SIGINT or SIGTERM; 1 if ingest stopped on its own, with the reason."""

    storage(args).close()  # refuses what it cannot open, and migrates, before anything starts
    ingest = Ingest(args.broker, Path(args.db), args.client_id, stores(args), args.ca)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: ingest.stopped.set())
    web = None
    if args.http:  # bound before ingest starts: a port in use stops both, with the reason
        from kiosk_host.dashboard.auth import configured_token
        from kiosk_host.dashboard.server import serve_dashboard

        token = configured_token(args.token_file)
        web = serve_dashboard(args.http, args.db, stores(args), token)
        mode = "" if token else " (read-only: no --token-file or $KIOSK_DASHBOARD_TOKEN)"
        print(f"kiosk-host: dashboard on {web.url}/{mode}", file=sys.stderr)
    try:
        ingest.start()
    except IngestError as why:
        if web is not None:
            web.stop()
        print(f"kiosk-host: {why}", file=sys.stderr)
        return 1
    print(f"kiosk-host: serving {public_url(args.broker)} into {args.db}", file=sys.stderr)
    ingest.stopped.wait()
    if web is not None:
        web.stop()
    ingest.stop()
    if ingest.error:
        print(f"kiosk-host: {ingest.error}", file=sys.stderr)
        return 1
    return 0
