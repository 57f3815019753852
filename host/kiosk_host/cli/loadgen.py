"""`kiosk-host loadgen`: many kiosks' events over real MQTT connections, and what was sent."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

from kiosk_host.cli.common import broker_options, broker_url, identifier, whole_number


def _above_zero(value: str) -> float:
    """An argparse type: a number above 0."""
    try:
        n = float(value)
    except ValueError:
        n = 0.0
    if not n > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number above 0")
    return n


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `loadgen` command."""
    load = commands.add_parser(
        "loadgen",
        parents=[broker_options()],
        help="many simulated kiosks publishing contract-valid events, and what they sent",
        description="Opens one MQTT connection per kiosk (client id STORE/DEVICE; stores "
        "PREFIX-1..N, kiosks till-1..K), publishes ratings (4/3/2/1 about 60/25/10/5 %), a "
        "follow-up after each breakdown (about half accepted, with a recovery code) and "
        "verdicts for some of the cases, at QoS 1, paced evenly at --rate events a second over "
        "all kiosks for --duration seconds, then reports what was sent and acknowledged. "
        "Exit 0 when the broker acknowledged every event, 1 when some failed (or, with --acks, "
        "when the host's marks did not cover every event).",
    )
    load.add_argument("--stores", type=whole_number, required=True, help="how many stores")
    load.add_argument("--kiosks-per-store", type=whole_number, required=True,
                      help="kiosks in each store, 1 to 23 (one code letter each)")  # fmt: skip
    load.add_argument("--rate", type=_above_zero, required=True,
                      help="events a second, over all kiosks")  # fmt: skip
    load.add_argument("--duration", type=_above_zero, required=True, help="seconds")
    load.add_argument(
        "--seed", type=int, help="the same seed, the same events (default: a new one, reported)"
    )
    load.add_argument("--seq-from", type=whole_number, default=1,
                      help="each kiosk's first seq (default 1): above the last run's, to run "
                      "again into the same database")  # fmt: skip
    load.add_argument("--prefix", type=identifier, default="store",
                      help="stores are PREFIX-1..N (default %(default)s)")  # fmt: skip
    load.add_argument(
        "--devices-dir",
        help="each kiosk logs in with its own account, as `provision` wrote it here "
        "(DIR/STORE/DEVICE/identity.json): for a broker with accounts; without it every kiosk "
        "uses --broker's account, or none",
    )
    load.add_argument(
        "--acks",
        action="store_true",
        help="each kiosk also subscribes to its ack topic, as a kiosk does, and the report "
        "adds how many events the host's marks covered and the time from publish to the mark "
        "received, p50 and p99 (publish -> commit -> ack received: an upper bound of publish "
        "-> commit; the host sends a kiosk's mark at most once a second)",
    )
    load.add_argument("--ack-wait", type=_above_zero, default=30.0,
                      help="with --acks: once all is sent, wait for the host's marks until "
                      "none has moved for this many seconds (default %(default)g)")  # fmt: skip
    load.add_argument("--json", action="store_true", help="the report as JSON")
    load.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kiosk_host.sim.loadgen import Options
    from kiosk_host.sim.loadgen import run as generate

    opts = Options(
        broker=broker_url(args.broker, args.password_file),
        stores=args.stores,
        kiosks_per_store=args.kiosks_per_store,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed if args.seed is not None else random.randrange(1 << 31),
        seq_from=args.seq_from,
        prefix=args.prefix,
        ca=args.ca,
        devices_dir=Path(args.devices_dir) if args.devices_dir else None,
        acks=args.acks,
        ack_wait_s=args.ack_wait,
    )
    progress = None if args.json else lambda line: print(line, file=sys.stderr)
    report = asyncio.run(generate(opts, progress))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            print(line)
    covered = not report.acks or report.host_acked == report.total
    return 0 if report.failed == 0 and covered else 1
