"""`kiosk-host broker init`, `provision` and `deploy`, and the fleet's checks for other commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kiosk_host.cli.common import broker_url


def add_broker_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """broker init."""
    from kiosk_host.fleet.broker_setup import DEFAULT_PORT
    from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR

    broker = commands.add_parser("broker", help="the store's mosquitto").add_subparsers(
        dest="action", required=True
    )
    init = broker.add_parser(
        "init",
        help="write mosquitto's settings beside the accounts, and say how to start it",
        description="Writes --dir/mosquitto.conf: the settings the product ships, listening on "
        "--port, reading the password and ACL files provisioning keeps in --dir, with its "
        "database, log and pid file in --dir/state. Makes the aggregator's and the fleet "
        "tools' accounts if missing. Run as root, it gives those files to the mosquitto user, "
        "whom mosquitto becomes. Prints the command that starts the broker; provisioning then "
        "reloads it after each change.",
    )
    init.add_argument(
        "--dir",
        default=str(DEFAULT_BROKER_DIR),
        help="the broker folder, where provision writes (default %(default)s)",
    )
    init.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="the port kiosks connect to (default 1883)"
    )
    init.set_defaults(run=broker_init)


def broker_init(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import broker_setup

    broker_dir = Path(args.dir)
    done = broker_setup.init(broker_dir, args.port)
    for line in done.lines():
        print(line)
    if broker_setup.running_pid(broker_dir) is not None:
        print(broker_setup.reload(broker_dir) + "; restart it for a new port or setting")
    else:
        print(f"start the broker with: {done.start}")
    return 0


def _reloaded(broker_dir: Path, as_json: bool) -> None:
    """After the accounts changed: the broker reloaded, said on standard output (standard
    error under --json, whose output is one JSON document)."""
    from kiosk_host.fleet.broker_setup import accounts_changed

    print(accounts_changed(broker_dir), file=sys.stderr if as_json else sys.stdout)


def provision(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import provision as p

    broker_dir = Path(args.broker_dir)
    if args.name is not None and not args.aggregator:
        raise p.ProvisionError("--name names another aggregator's account: give --aggregator too")
    if args.aggregator or args.fleet:
        if args.aggregator and args.fleet:
            raise p.ProvisionError("--aggregator or --fleet: one account at a time")
        made = p.ensure_aggregator(broker_dir, args.name) if args.aggregator else (
            p.ensure_fleet(broker_dir)
        )  # fmt: skip
        if args.json:
            print(json.dumps({"user": made.user, "credentials": str(made.credentials),
                              "created": made.created}))  # fmt: skip
        else:
            print(p.aggregator_line(made))
        if made.created:
            _reloaded(broker_dir, args.json)
        return 0
    need = ("store", "device") if args.remove else p.REQUIRED
    missing = [f"--{k.replace('_', '-')}" for k in need if getattr(args, k) is None]
    if missing:
        raise p.ProvisionError(f"provisioning a kiosk needs {', '.join(missing)}")
    if args.remove:
        p.remove(args.store, args.device, broker_dir)
        print(f"removed {args.store}/{args.device} from {broker_dir}")
        _reloaded(broker_dir, False)
        return 0
    done = p.provision(
        p.Request(
            store=args.store,
            device=args.device,
            board=args.board,
            ssid=args.wifi_ssid,
            wifi_pass=args.wifi_pass,
            broker=args.broker,
            out=Path(args.out) if args.out else None,
            letter=args.letter,
            ca=Path(args.ca) if args.ca else None,
            broker_dir=broker_dir,
        )
    )
    print(json.dumps(done.to_json(), indent=2) if args.json else "\n".join(done.lines()))
    _reloaded(broker_dir, args.json)
    return 0


def deploy(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import deploy as d
    from kiosk_host.fleet.provision import FLEET, credentials_file

    broker_dir = Path(args.broker_dir)
    opts = d.Options(
        port=args.port,
        device=args.device,
        store=args.store,
        directory=Path(args.dir) if args.dir else None,
        broker=broker_url(args.broker, args.password_file, credentials_file(broker_dir, FLEET))
        if args.broker
        else None,
        build=args.build,
        online_s=args.wait,
        broker_dir=broker_dir,
        replace=args.replace,
    )
    # A DeployError is a UserError: main() prints it as one line, with exit code 2.
    report = d.deploy(opts, out=lambda line: print(line, flush=True))
    return 1 if report.online is False else 0


def check_kiosk(args: argparse.Namespace) -> None:
    """Refuse a kiosk (or, without a device, a store) never provisioned in --devices-dir,
    before anything is sent; when that folder holds no kiosk, say that nothing was checked."""
    from kiosk_host.fleet.provisioned import check

    note = check(Path(args.devices_dir), args.store, args.device)
    if note is not None:
        print(f"kiosk-host: note: {note}", file=sys.stderr)


def provisioned_store(args: argparse.Namespace) -> bool:
    """Whether --devices-dir holds a kiosk of --store: a store known to the fleet before any
    of its kiosks has connected."""
    from kiosk_host.fleet.provisioned import kiosks

    return bool(kiosks(Path(args.devices_dir), args.store))


def with_never_seen(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """`devices`' rows and, for each kiosk provisioned in --devices-dir that the aggregator
    never heard from, a row whose state is "never seen"."""
    from kiosk_host.aggregator.views import device_row
    from kiosk_host.fleet.provisioned import NEVER_SEEN, board_name, kiosks

    devices_dir = Path(args.devices_dir)
    seen = {(r["store"], r["device"]) for r in rows}
    never = [
        device_row({"store": s, "device": d, "state": NEVER_SEEN, "since": None, "fw": None,
                    "board": board_name(devices_dir, s, d), "config_error": None,
                    "status_at": None, "telemetry_at": None, "telemetry": None})
        for s, d in kiosks(devices_dir, args.store)
        if (s, d) not in seen
    ]  # fmt: skip
    return sorted([*rows, *never], key=lambda r: (r["store"], r["device"]))


def never_seen_line(d: dict[str, Any]) -> str | None:
    """The line `devices` prints for a provisioned kiosk that never connected; None for any
    other kiosk."""
    from kiosk_host.fleet.provisioned import NEVER_SEEN

    if d.get("state") != NEVER_SEEN:
        return None
    return (
        f"{d['store']}/{d['device']}: {NEVER_SEEN} (provisioned, board {d['board'] or '?'}; "
        "it has not connected yet: flash it, or check its Wi-Fi and broker)"
    )
