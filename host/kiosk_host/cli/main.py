"""`kiosk-host`: the one command line over the host library."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from kiosk_host import __version__
from kiosk_host.aggregator import views as summary
from kiosk_host.cli import alerts as alert_commands
from kiosk_host.cli import cases as case_commands
from kiosk_host.cli import digest as digest_command
from kiosk_host.cli import fleet as fleet_commands
from kiosk_host.cli import loadgen as loadgen_command
from kiosk_host.cli import migrate as migrate_command
from kiosk_host.cli import ota as ota_commands
from kiosk_host.cli import verify as verify_command
from kiosk_host.cli.common import (
    PASSWORD_HELP,
    broker_options,
    broker_url,
    identifier,
    known_store,
    storage,
    storage_and_stores,
    whole_number,
)
from kiosk_host.errors import UserError
from kiosk_host.shipped import BOARDS
from kiosk_host.wire.contract import Cleared, Contract, Rejection


def _validate(args: argparse.Namespace) -> int:
    try:
        payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as why:
        raise UserError(f"{args.file}: {why.strerror or why}") from None
    result = Contract.load().validate(args.topic, payload)
    if isinstance(result, Rejection):
        print(f"rejected: {result}", file=sys.stderr)
        return 1
    if isinstance(result, Cleared):
        print(f"clears the retained {result.channel} message")
        return 0
    print(f"valid {result.channel}/{result.shape}")
    return 0


def _accounts() -> Path:
    """The aggregator's account file provision writes: its password when the broker URL names
    that user and neither --password-file nor $KIOSK_BROKER_PASSWORD gives one."""
    from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR

    return Path(DEFAULT_BROKER_DIR) / "aggregator.json"


def _recognition(args: argparse.Namespace) -> int:
    days = 7 if args.period == "week" else 1
    db, settings = storage_and_stores(args)
    store = known_store(args, db, settings)
    payload = summary.recognition(db, settings.get(store), store, int(time.time()), days)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        for person in payload["staff"]:
            print(f"{person['name'] or person['staff']}: " + "; ".join(person["reasons"]))
    return 0


def _report(args: argparse.Namespace) -> int:
    days = 7 if args.period == "week" else 1
    # The dashboard's rows too: by-hour counts (its charts) and the day's cases beside them,
    # by the store's local days and hours.
    db, settings = storage_and_stores(args)
    cfg = settings.get(known_store(args, db, settings))
    rows = summary.report(db, cfg, args.store, int(time.time()), days)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout)
        scores = [f"score_{s}" for s in range(1, cfg.scale + 1)]
        out.writerow(["day", "weekday", *scores, "ratings", "breakdowns", "satisfaction",
                      "outside_hours", "breakdowns_by_hour"])  # fmt: skip
        for r in rows:  # the cells are the host's own figures: no text to neutralise
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


def _serve(args: argparse.Namespace) -> int:
    from kiosk_host.cli.serve import serve

    return serve(args)


def _backup(args: argparse.Namespace) -> int:
    from kiosk_host.cli.backup import backup

    return backup(args)


def _restore(args: argparse.Namespace) -> int:
    from kiosk_host.cli.backup import restore

    return restore(args)


def _check(args: argparse.Namespace) -> int:
    from kiosk_host.cli.backup import check

    return check(args)


def _deadletter(args: argparse.Namespace) -> int:
    letters = storage(args).dead_letters(args.limit)
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
    now = int(time.time())
    db, settings = storage_and_stores(args)
    store = args.store
    if store and not fleet_commands.provisioned_store(args):
        store = known_store(args, db, settings)
    devices = [summary.device_row(d, now) for d in db.devices(store)]
    devices = fleet_commands.with_never_seen(devices, args)
    if args.json:
        print(json.dumps(devices, indent=2))
    for d in [] if args.json else devices:
        print(fleet_commands.never_seen_line(d) or summary.device_line(d, now))
    return 0


def _provision(args: argparse.Namespace) -> int:
    return fleet_commands.provision(args)


def _config_push(args: argparse.Namespace) -> int:
    from kiosk_host.fleet.commands import Broker, parse_settings, push_config

    settings = parse_settings(args.set)
    fleet_commands.check_kiosk(args)
    with Broker(broker_url(args.broker, args.password_file, _accounts()), args.ca) as broker:
        pushed = push_config(broker, args.store, args.device, settings, Path(args.devices_dir))
    if args.json:
        print(json.dumps([{"topic": p.topic, "config": p.config, "from": p.base}
                          for p in pushed], indent=2))  # fmt: skip
    for p in [] if args.json else pushed:
        print(f"config for {p.store}/{p.device} published on {p.topic} (retained): "
              + ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()))  # fmt: skip
    return 0


def _command(args: argparse.Namespace) -> int:
    from kiosk_host.fleet.commands import Broker, command, send_command

    fleet_commands.check_kiosk(args)
    fields = {"seconds": args.seconds} if args.name == "identify" else {}
    with Broker(broker_url(args.broker, args.password_file, _accounts()), args.ca) as broker:
        sent = send_command(broker, args.store, args.device, command(args.name, **fields))
    if args.json:
        print(json.dumps({"topic": sent.topic, "command": sent.payload,
                          "kiosk": sent.kiosk_state}))  # fmt: skip
    else:
        later = "" if sent.kiosk_state == "online" else (
            f"; the kiosk is {sent.kiosk_state or 'not known to the broker'}: it acts on it when "
            "it connects"
        )  # fmt: skip
        print(f"sent {args.name} to {sent.topic}{later}")
    return 0


def _virtual_kiosk(args: argparse.Namespace) -> int:
    from kiosk_host.sim.virtual_kiosk import Options, serve

    if args.identity is None and not (args.store and args.device and args.broker):
        raise UserError("give --identity DIR (a provisioned kiosk), or --store, --device and "
                         "--broker")  # fmt: skip
    boards = sorted(p.stem for p in BOARDS.glob("*.py") if not p.stem.startswith("_"))
    if args.identity is None and args.board not in boards:
        raise UserError(f"--board {args.board}: no such board (known: {', '.join(boards)})")
    scheme = (args.broker or "").partition("://")[0]
    if args.identity is None and (scheme == "mqtts") != (args.ca is not None):
        raise UserError("mqtts:// and --ca FILE go together: the CA certificate to trust")
    opts = Options(
        store=args.store,
        device=args.device,
        broker=args.broker,
        board=args.board,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        letter=args.letter,
        outbox_records=args.outbox_records,
        ca=Path(args.ca) if args.ca else None,
        identity=Path(args.identity) if args.identity else None,
    )
    asyncio.run(serve(opts))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kiosk_host.demo.run import run

    return run(args)


def _deploy(args: argparse.Namespace) -> int:
    return fleet_commands.deploy(args)


def _serial_kiosk(args: argparse.Namespace) -> int:
    from kiosk_host.sim.serial_kiosk import serve

    return serve(Path(args.fs), Path(args.link) if args.link else None, args.flash_kb)


def _flashing_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """deploy, and the serial kiosk to try it on."""
    deploy = commands.add_parser(
        "deploy",
        help="flash a kiosk over USB with mpremote: only what changed, then check it is online",
        description="Compiles the firmware, copies to the kiosk on --port what differs from "
        "it (the firmware, its board file, and the files provisioning wrote), restarts it, and "
        "when the broker is reachable waits until the kiosk says it is online with the new "
        "firmware.",
    )
    deploy.add_argument("--port", required=True, help="the kiosk's serial port: /dev/ttyUSB0")
    deploy.add_argument("--device", required=True, type=identifier)
    deploy.add_argument("--store", type=identifier, help="when two stores have this device")
    deploy.add_argument("--dir", help="the kiosk's provisioned files (default var/devices/S/D)")
    deploy.add_argument(
        "--broker",
        default=os.environ.get("KIOSK_BROKER"),
        help="where to see the kiosk's status: mqtt://USER@HOST:PORT, an account that may "
        "read it (default $KIOSK_BROKER, else the kiosk's own broker with the fleet tools' "
        "account from --broker-dir)",
    )
    deploy.add_argument("--password-file", help=PASSWORD_HELP)
    deploy.add_argument(
        "--broker-dir",
        default="var/broker",
        help="where provision keeps the fleet tools' account (fleet.json), used to see the "
        "kiosk's status on its own broker (default %(default)s)",
    )
    deploy.add_argument(
        "--replace",
        action="store_true",
        help="flash over a board that holds another kiosk (refused otherwise, naming it)",
    )
    deploy.add_argument("--wait", type=float, default=60.0, help="seconds to wait for online")
    deploy.add_argument("--no-build", dest="build", action="store_false",
                        help="use build/ as it is (make deploy has just built it)")  # fmt: skip
    deploy.set_defaults(run=_deploy)
    serial = commands.add_parser(
        "serial-kiosk",
        help="a kiosk on a pseudo-terminal (MicroPython VM, a folder as flash), to deploy to",
        description="Prints the pseudo-terminal's path, then SCREEN <name>: <text> on every "
        "screen change and RESET <kind> on every reset, until Ctrl-C.",
    )
    serial.add_argument("--fs", required=True, help="the folder that is the kiosk's flash")
    serial.add_argument("--link", help="the pseudo-terminal's path (default: a new temporary)")
    serial.add_argument("--flash-kb", type=int, default=2048, help="the flash's size")
    serial.set_defaults(run=_serial_kiosk)


def _fleet_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """provision, config push, identify, reboot, wifi and logs."""
    from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR, DEFAULT_DEVICES_DIR

    prov = commands.add_parser(
        "provision",
        help="a kiosk's identity, config and board files, and its broker account",
        description="Writes identity.json (secret: the kiosk's Wi-Fi key and broker password), "
        "config.json and board.json (and ca.pem for mqtts://) into --out, adds the kiosk's "
        "account to --broker-dir/passwd and its topics to --broker-dir/acl, and makes the "
        "aggregator's account with the first kiosk. --aggregator makes only that account. "
        "Then reloads the broker that `kiosk-host broker init` set up on --broker-dir, or says "
        "how to start it.",
    )
    prov.add_argument("--store", help="the store's identifier, e.g. store-12")
    prov.add_argument("--device", help="the kiosk's identifier in its store, e.g. till-1")
    prov.add_argument("--board", help="a file in boards/ (no .py), e.g. m5stack_core")
    prov.add_argument("--letter", help="the kiosk's letter in its store (default: the first free)")
    prov.add_argument("--wifi-ssid")
    prov.add_argument("--wifi-pass", help="the shop Wi-Fi's key (empty for an open network)")
    prov.add_argument("--broker", help="how the kiosk reaches the broker: mqtt(s)://HOST:PORT")
    prov.add_argument("--ca", help="the CA certificate (PEM) of the broker's, for mqtts://")
    prov.add_argument("--out", help="where the kiosk's files go (default var/devices/S/D)")
    prov.add_argument("--broker-dir", default=str(DEFAULT_BROKER_DIR),
                      help="the broker's passwd and acl files (default %(default)s)")  # fmt: skip
    prov.add_argument("--aggregator", action="store_true", help="only the aggregator's account")
    prov.add_argument(
        "--name",
        type=identifier,
        help="with --aggregator: another aggregator's account, kiosk-host-NAME",
    )
    prov.add_argument("--fleet", action="store_true",
                      help="only the fleet tools' account (kiosk-fleet), for config push, "
                      "identify, reboot and deploy")  # fmt: skip
    prov.add_argument("--remove", action="store_true",
                      help="take the kiosk's account and letter out of --broker-dir")  # fmt: skip
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(run=_provision)

    broker = argparse.ArgumentParser(add_help=False, parents=[broker_options()])
    broker.add_argument("--json", action="store_true")
    config = commands.add_parser("config", help="kiosks' desired config").add_subparsers(
        dest="action", required=True
    )
    push = config.add_parser(
        "push",
        parents=[broker],
        help="change settings of a kiosk, or of every kiosk of a store, checked by the contract",
    )
    push.add_argument("--store", required=True, type=identifier)
    push.add_argument("--device", type=identifier, help="one kiosk (default: the whole store)")
    push.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", required=True,
                      help="a setting; VALUE is read as JSON when it is JSON")  # fmt: skip
    push.add_argument("--devices-dir", default=str(DEFAULT_DEVICES_DIR),
                      help="where kiosks were provisioned (default %(default)s)")  # fmt: skip
    push.set_defaults(run=_config_push)
    for name, text in (("identify", "blink and show its name"), ("reboot", "restart")):
        cmd = commands.add_parser(name, parents=[broker], help=f"ask a kiosk to {text}")
        cmd.add_argument("device", type=identifier)
        cmd.add_argument("--store", required=True, type=identifier)
        cmd.add_argument("--devices-dir", default=str(DEFAULT_DEVICES_DIR),
                         help="where kiosks were provisioned: the kiosk must be one of them "
                         "(default %(default)s)")  # fmt: skip
        if name == "identify":
            cmd.add_argument("--seconds", type=int, default=10, help="1 to 120 (default 10)")
        cmd.set_defaults(run=_command, name=name)
    from kiosk_host.cli import wifi_logs

    wifi_logs.add_parsers(commands, broker, str(DEFAULT_DEVICES_DIR))


STORES_HELP = (
    "stores.toml (default $KIOSK_STORES, else the settings the last `serve` kept in --db, "
    "else every store on the defaults)"
)


def _database_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], db: argparse.ArgumentParser
) -> None:
    """backup, restore and check."""
    backup = commands.add_parser(
        "backup",
        parents=[db],
        help="a consistent copy of the database, taken while serve writes to it",
    )
    backup.add_argument("--to", required=True, help="the copy's file (must not exist)")
    backup.set_defaults(run=_backup)
    restore = commands.add_parser(
        "restore",
        parents=[db],
        help="put a backup back as the database (serve must be stopped)",
        description="Checks the backup, then copies it into --db. Refused while a kiosk-host "
        "serve uses --db; an existing --db is replaced only with --force.",
    )
    restore.add_argument("--from", dest="source", required=True, help="the backup's file")
    restore.add_argument("--force", action="store_true", help="replace an existing --db")
    restore.set_defaults(run=_restore)
    check = commands.add_parser(
        "check", parents=[db], help="SQLite's full integrity check of the database"
    )
    check.set_defaults(run=_check)


class _Parser(argparse.ArgumentParser):
    """An argument mistake as one line, as every other mistake (usage stays in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(prog="kiosk-host", description=__doc__)
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
        "net add SSID KEY, power-cut [N] and quit on standard input; prints SCREEN <name>: "
        "<text> on every change. power-cut N cuts the power once N more events are "
        "acknowledged.",
    )
    virtual.add_argument("--store", type=identifier)
    virtual.add_argument("--device", type=identifier)
    virtual.add_argument("--broker", help="mqtt://[USER:PASSWORD@]HOST:PORT, or mqtts:// with --ca")
    virtual.add_argument("--ca", help="the CA certificate (PEM) to trust, for mqtts://")
    virtual.add_argument(
        "--identity", help="a folder `kiosk-host provision` wrote: run as that kiosk"
    )
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
    loadgen_command.add_parser(commands)
    demo = commands.add_parser(
        "demo",
        help="two stores of virtual kiosks, scripted customers and staff, live",
        description="Starts a broker (unless --broker or $MQTT_URL names one), the aggregator "
        "and its dashboard, and six virtual kiosks in two stores; plays customers and staff; "
        "runs until Ctrl-C. Run again, it carries on from the data in --var.",
    )
    demo.add_argument("--minutes", type=float, default=5.0, help="how long customers come")
    demo.add_argument(
        "--speed", type=float, default=1.0, help="time runs X times faster, windows included"
    )
    demo.add_argument("--var", default="var/demo", help="where its data is kept (var/demo/)")
    demo.add_argument(
        "--broker",
        default=os.environ.get("MQTT_URL") or None,
        help="a broker to use instead of the demo's private mosquitto (default $MQTT_URL)",
    )
    demo.add_argument(
        "--mqtt-port",
        type=int,
        default=os.environ.get("DEMO_MQTT_PORT") or None,
        help="the private mosquitto's port (default $DEMO_MQTT_PORT, or 1883 if free)",
    )
    demo.add_argument(
        "--http-port",
        type=int,
        default=os.environ.get("DEMO_HTTP_PORT") or None,
        help="the dashboard's port (default $DEMO_HTTP_PORT, or 8080 if free)",
    )
    demo.add_argument(
        "--smtp-port",
        type=int,
        default=os.environ.get("DEMO_SMTP_PORT") or None,
        help="the port of the demo's mail server, which keeps what managers are sent "
        "(default $DEMO_SMTP_PORT, or 2525 if free)",
    )
    demo.set_defaults(run=_demo)
    _flashing_parsers(commands)

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=os.environ.get("KIOSK_DB", "kiosk.db"),
        help="the database: a SQLite file, or a postgresql://USER@HOST/NAME URL"
        " (default $KIOSK_DB or kiosk.db)",
    )
    serve = commands.add_parser("serve", parents=[db], help="ingest the kiosks' stream")
    serve.add_argument(
        "--broker", required=True, help="mqtt://[USER@]HOST:PORT, or mqtts:// with --ca"
    )
    serve.add_argument("--password-file", help=PASSWORD_HELP)
    serve.add_argument(
        "--broker-dir",
        default="var/broker",
        help="where provision keeps the aggregator's account (aggregator.json): its password "
        "when neither --password-file nor $KIOSK_BROKER_PASSWORD gives one (default %(default)s)",
    )
    serve.add_argument("--ca", help="the CA certificate (PEM) to trust, for mqtts://")
    serve.add_argument(
        "--client-id",
        help="the persistent session's id: the account's user name (the broker binds the two), "
        "kiosk-host for a broker without accounts",
    )
    serve.add_argument(
        "--share",
        metavar="GROUP",
        help="one of a group of aggregators sharing the stream ($share/GROUP/...) on one "
        "PostgreSQL --db, each on an account of its own; one of them leads (deadlines, alerts, "
        "retained views), another takes over within seconds if it dies",
    )
    serve.add_argument(
        "--stores",
        help="stores.toml: time zones, hours, thresholds, rosters (default $KIOSK_STORES, else "
        "the settings kept in --db); kept in --db for every other command",
    )
    serve.add_argument(
        "--http", metavar="HOST:PORT", help="also serve the managers' dashboard (127.0.0.1:8080)"
    )
    serve.add_argument(
        "--token-file",
        help="the dashboard's token for changes (its first line; else $KIOSK_DASHBOARD_TOKEN; "
        "without either the dashboard is read-only)",
    )
    mail = serve.add_argument_group(
        "alerts to people (docs/alerts.md: the recipients are in stores.toml, [[notify]])"
    )
    mail.add_argument(
        "--smtp",
        metavar="URL",
        help="the mail server: smtp://[USER@]HOST[:PORT] (STARTTLS), smtps:// (TLS), or "
        "smtp+insecure://HOST for a local relay; USER's password from --smtp-password-file or "
        "$KIOSK_SMTP_PASSWORD",
    )
    mail.add_argument("--smtp-password-file", help="the SMTP account's password (first line)")
    mail.add_argument("--smtp-ca", help="the CA certificate (PEM) the mail server's is signed by")
    mail.add_argument(
        "--mail-from",
        default="Kiosk alerts <kiosk-host@localhost>",
        help="the sender of alert e-mails and digests (default %(default)s)",
    )
    mail.add_argument(
        "--dashboard-url",
        metavar="URL",
        help="the dashboard as managers reach it (https://HOST/), linked from e-mails and chats",
    )
    serve.set_defaults(run=_serve)
    dead = commands.add_parser("deadletter", parents=[db], help="messages refused, and why")
    dead.add_argument("--json", action="store_true")
    dead.add_argument("--limit", type=whole_number, default=100, help="the latest N (default 100)")
    dead.set_defaults(run=_deadletter)
    devices = commands.add_parser("devices", parents=[db], help="the kiosks and their health")
    devices.add_argument("--store", type=identifier)
    devices.add_argument("--devices-dir", default="var/devices",
                         help="where kiosks were provisioned: those that never connected are "
                         "listed as never seen (default %(default)s)")  # fmt: skip
    devices.add_argument("--stores", help=STORES_HELP)
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(run=_devices)
    _database_parsers(commands, db)
    migrate_command.add_parser(commands)
    verify_command.add_parser(commands, db)
    _fleet_parsers(commands)
    fleet_commands.add_broker_parsers(commands)
    ota_commands.add_parsers(commands)

    store = argparse.ArgumentParser(add_help=False, parents=[db])
    store.add_argument("--store", required=True, type=identifier)
    store.add_argument("--json", action="store_true")
    store.add_argument("--stores", help=STORES_HELP)
    case_commands.add_parsers(commands, store)
    recognition = commands.add_parser("recognition", parents=[store], help="the staff board")
    recognition.add_argument("--period", choices=("day", "week"), default="week")
    recognition.set_defaults(run=_recognition)
    report = commands.add_parser(
        "report", parents=[store], help="the store's days, and when it broke down"
    )
    report.add_argument("--period", choices=("day", "week"), default="day")
    report.add_argument("--csv", action="store_true")
    report.set_defaults(run=_report)
    digest_command.add_parser(commands, store)
    alert_commands.add_parsers(commands, store, db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except UserError as why:  # say what to fix; anything else is a defect, with its traceback
        print(f"kiosk-host: {why}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
