"""`kiosk-host`: the one command line over the host library."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kiosk_host import __version__, summary
from kiosk_host.contract import Cleared, Contract, Rejection
from kiosk_host.engine import Engine
from kiosk_host.recovery import STATES, RuleError
from kiosk_host.storage import Storage
from kiosk_host.stores import Stores, load_stores


def _validate(args: argparse.Namespace) -> int:
    payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    result = Contract.load().validate(args.topic, payload)
    if isinstance(result, Rejection):
        print(f"rejected: {result}", file=sys.stderr)
        return 1
    if isinstance(result, Cleared):
        print(f"clears the retained {result.channel} message")
        return 0
    print(f"valid {result.channel}/{result.shape}")
    return 0


def _storage(args: argparse.Namespace) -> Storage:
    return Storage.open(args.db)


def _stores(args: argparse.Namespace) -> Stores:
    return load_stores(args.stores) if args.stores else Stores({})


def _cases_list(args: argparse.Namespace) -> int:
    cases = _storage(args).cases(args.store, [args.state] if args.state else [])
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in cases], indent=2))
    for c in [] if args.json else cases:
        fixed = f", fixed by {c.fixed_by}" if c.fixed_by else ""
        print(f"{c.code} {c.state} at {c.station}, deadline {c.deadline}{fixed}")
    return 0


def _cases_fix(args: argparse.Namespace) -> int:
    engine = Engine(_stores(args))
    case = engine.fix(_storage(args), args.store, args.code, args.staff, args.note)
    print(json.dumps(dataclasses.asdict(case)) if args.json else f"{case.code} {case.state}")
    return 0


def _cases_confirm_on(args: argparse.Namespace) -> int:
    """Ask a kiosk to show the customer the confirmation screen for a case."""
    import time
    import uuid
    from urllib.parse import urlparse

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    if _storage(args).case_by_code(args.store, args.code) is None:
        raise RuleError(f"no case {args.code} in store {args.store}")
    url = urlparse(args.broker)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"kiosk-host-cli-{uuid.uuid4()}")
    if url.username:
        client.username_pw_set(url.username, url.password)
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    cmd = {"v": 1, "cmd": "confirm_recovery", "id": str(uuid.uuid4()), "ts": int(time.time()),
           "case": args.code}  # fmt: skip
    topic = f"kiosk/v1/{args.store}/{args.device}/cmd"
    client.publish(topic, json.dumps(cmd), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    print(json.dumps(cmd) if args.json else f"sent confirm_recovery {args.code} to {topic}")
    return 0


def _recognition(args: argparse.Namespace) -> int:
    days = 7 if args.period == "week" else 1
    cfg = _stores(args).get(args.store)
    payload = summary.recognition(_storage(args), cfg, args.store, int(time.time()), days)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        for person in payload["staff"]:
            print(f"{person['name'] or person['staff']}: " + "; ".join(person["reasons"]))
    return 0


def _report(args: argparse.Namespace) -> int:
    days = 7 if args.period == "week" else 1
    cfg = _stores(args).get(args.store)
    rows = summary.report(_storage(args), cfg, args.store, int(time.time()), days)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout)
        scores = [f"score_{s}" for s in range(1, cfg.scale + 1)]
        out.writerow(["day", "weekday", *scores, "ratings", "breakdowns", "satisfaction",
                      "outside_hours", "breakdowns_by_hour"])  # fmt: skip
        for r in rows:
            hours = " ".join(f"{h}h:{n}" for h, n in r["breakdowns_by_hour"].items())
            out.writerow([r["day"], r["weekday"], *r["counts"], r["ratings"], r["breakdowns"],
                          r["satisfaction"], r["outside_hours"], hours])  # fmt: skip
    else:
        for r in rows:
            share = "-" if r["satisfaction"] is None else f"{r['satisfaction']:.0%}"
            hours = ", ".join(f"{h}h {n}" for h, n in r["breakdowns_by_hour"].items())
            print(f"{r['day']} {r['weekday']}: {r['ratings']} ratings, {share} satisfied, "
                  f"{r['breakdowns']} breakdowns" + (f" ({hours})" if hours else ""))  # fmt: skip
    return 0


def _alerts(args: argparse.Namespace) -> int:
    storage = _storage(args)
    if args.action == "list":
        alerts = storage.alerts(args.store)
        if args.json:
            print(json.dumps(alerts, indent=2))
        for a in [] if args.json else alerts:
            done = f" (acknowledged by {a['acked_by']})" if a["acked_by"] else ""
            print(f"{a['id']} {a['type']} {a['severity']}: {a['text']}{done}")
        return 0
    by = args.by if args.action == "ack" else None
    text = args.text if args.action == "comment" else None
    if not storage.note_alert(args.id, by, text):
        raise ValueError(f"no alert {args.id}; `kiosk-host alerts list --store S` shows them")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from kiosk_host.ingest import Ingest, IngestError

    _storage(args).close()  # refuses what it cannot open, and migrates, before anything starts
    ingest = Ingest(args.broker, Path(args.db), args.client_id, _stores(args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: ingest.stopped.set())
    try:
        ingest.start()
    except IngestError as why:
        print(f"kiosk-host: {why}", file=sys.stderr)
        return 1
    print(f"kiosk-host: serving {args.broker} into {args.db}", file=sys.stderr)
    ingest.stopped.wait()
    ingest.stop()
    if ingest.error:
        print(f"kiosk-host: {ingest.error}", file=sys.stderr)
        return 1
    return 0


def _deadletter(args: argparse.Namespace) -> int:
    letters = _storage(args).dead_letters(args.limit)
    if args.json:
        rows = [
            {"topic": d.topic, "rule": d.rule, "field": d.field, "reason": d.reason,
             "arrived": d.arrived, "payload": d.payload.decode("utf-8", "replace")}
            for d in letters
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
    else:
        for d in letters:
            print(f"{d.arrived} {d.topic}: {d.rule} at {d.field or '(payload)'}: {d.reason}")
    return 0


def _devices(args: argparse.Namespace) -> int:
    devices = _storage(args).devices(args.store)
    if args.json:
        print(json.dumps(devices, indent=2))
    else:
        for d in devices:
            t = d["telemetry"] or {}
            print(
                f"{d['store']}/{d['device']}: {d['state'] or 'unknown'}, fw {d['fw']}, "
                f"{d['board']}, outbox {t.get('outbox', '?')}, dropped {t.get('dropped', '?')}"
                + (f", config refused: {d['config_error']}" if d["config_error"] else "")
            )
    return 0


def _virtual_kiosk(args: argparse.Namespace) -> int:
    from kiosk_host.virtual_kiosk import Options, serve

    opts = Options(
        store=args.store,
        device=args.device,
        broker=args.broker,
        board=args.board,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        letter=args.letter,
        outbox_records=args.outbox_records,
    )
    asyncio.run(serve(opts))
    return 0


def _identifier(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an identifier: lower-case letters, digits and '-', 1 to 32"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-host", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check one MQTT payload against the wire contract"
    )
    validate.add_argument("topic", help="the topic it was published on")
    validate.add_argument("file", help="a file with the payload bytes, or - for standard input")
    validate.set_defaults(run=_validate)
    virtual = commands.add_parser(
        "virtual-kiosk",
        help="run the kiosk firmware on simulated hardware against a broker",
        description="Reads press N, hold N MS, chord A B MS, sleep MS, net down, net up, "
        "power-cut [N] and quit on standard input; prints SCREEN <name>: <text> on every "
        "change. power-cut N cuts the power once N more events are acknowledged.",
    )
    virtual.add_argument("--store", required=True, type=_identifier)
    virtual.add_argument("--device", required=True, type=_identifier)
    virtual.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    virtual.add_argument(
        "--board", default="esp32_devkitc_ssd1306", help="a file name in boards/ (no .py)"
    )
    virtual.add_argument("--state-dir", help="the simulated flash (default .virtual-kiosks/S/D)")
    virtual.add_argument(
        "--letter", default="A", help="the kiosk's letter in its store, first of its codes"
    )
    virtual.add_argument(
        "--outbox-records", type=int, default=2000, help="the outbox's size, as on the device"
    )
    virtual.set_defaults(run=_virtual_kiosk)

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=os.environ.get("KIOSK_DB", "kiosk.db"),
        help="the database: a SQLite file (default $KIOSK_DB or kiosk.db)",
    )
    serve = commands.add_parser("serve", parents=[db], help="ingest the kiosks' stream")
    serve.add_argument("--broker", required=True, help="mqtt://[USER:PASSWORD@]HOST:PORT")
    serve.add_argument("--client-id", default="kiosk-host", help="the persistent session's id")
    serve.add_argument("--stores", help="stores.toml: time zones, hours, thresholds, rosters")
    serve.set_defaults(run=_serve)
    dead = commands.add_parser("deadletter", parents=[db], help="messages refused, and why")
    dead.add_argument("--json", action="store_true")
    dead.add_argument("--limit", type=int, default=100)
    dead.set_defaults(run=_deadletter)
    devices = commands.add_parser("devices", parents=[db], help="the kiosks and their health")
    devices.add_argument("--store", type=_identifier)
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(run=_devices)

    cases = commands.add_parser("cases", help="recovery cases").add_subparsers(
        dest="action", required=True
    )
    store = argparse.ArgumentParser(add_help=False, parents=[db])
    store.add_argument("--store", required=True, type=_identifier)
    store.add_argument("--json", action="store_true")
    store.add_argument("--stores", help="stores.toml")
    listing = cases.add_parser("list", parents=[store], help="the store's cases")
    listing.add_argument("--state", choices=STATES)
    listing.set_defaults(run=_cases_list)
    fix = cases.add_parser("fix", parents=[store], help="mark a case fixed")
    fix.add_argument("code")
    fix.add_argument("--staff", required=True, type=_identifier)
    fix.add_argument("--note")
    fix.set_defaults(run=_cases_fix)
    confirm = cases.add_parser(
        "confirm-on", parents=[store], help="show a kiosk the customer's confirmation screen"
    )
    confirm.add_argument("code")
    confirm.add_argument("--device", required=True, type=_identifier)
    confirm.add_argument("--broker", required=True)
    confirm.set_defaults(run=_cases_confirm_on)
    recognition = commands.add_parser("recognition", parents=[store], help="the staff board")
    recognition.add_argument("--period", choices=("day", "week"), default="week")
    recognition.set_defaults(run=_recognition)
    report = commands.add_parser(
        "report", parents=[store], help="the store's days, and when it broke down"
    )
    report.add_argument("--period", choices=("day", "week"), default="day")
    report.add_argument("--csv", action="store_true")
    report.set_defaults(run=_report)
    alerts = commands.add_parser("alerts", help="alerts for the store's managers").add_subparsers(
        dest="action", required=True
    )
    alerts.add_parser("list", parents=[store]).set_defaults(run=_alerts)
    ack = alerts.add_parser("ack", parents=[db], help="acknowledge an alert")
    ack.add_argument("id")
    ack.add_argument("--by", required=True)
    ack.set_defaults(run=_alerts)
    comment = alerts.add_parser("comment", parents=[db], help="comment on an alert")
    comment.add_argument("id")
    comment.add_argument("text")
    comment.set_defaults(run=_alerts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (RuleError, ValueError, OSError) as why:  # say what to fix, not a traceback
        print(f"kiosk-host: {getattr(why, 'reason', why)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
