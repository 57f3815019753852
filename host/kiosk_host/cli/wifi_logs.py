"""`kiosk-host wifi` (a kiosk's shop Wi-Fi, over USB or MQTT) and `kiosk-host logs`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from kiosk_host.cli.common import PASSWORD_HELP, broker_url, identifier
from kiosk_host.errors import UserError


def _wifi(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import wifi

    devices_dir = Path(args.devices_dir)
    if args.port is not None:
        if args.store or args.device or args.broker_given:
            raise UserError(
                "--port changes the kiosk on that USB port: leave out --store, --device and "
                "--broker (they are for a kiosk reached over MQTT)"
            )
        wifi.check(args.ssid, "12345678")  # the name first: no key asked for a bad name
        key = wifi.read_key(args.wifi_password_file, args.open, args.ssid)
        done = wifi.over_usb(args.port, args.ssid, key, devices_dir)
        where = args.port
    else:
        if not (args.store and args.device and args.broker):
            raise UserError(
                "give --port PORT (a kiosk on USB), or --store, --device and --broker (a kiosk "
                "online, over MQTT)"
            )
        from kiosk_host.fleet.commands import Broker

        ident = wifi.provisioned_identity(devices_dir, args.store, args.device)
        wifi.check_secure(args.broker, args.insecure, args.store, args.device, ident)
        wifi.check(args.ssid, "12345678")
        key = wifi.read_key(args.wifi_password_file, args.open, args.ssid)
        wifi.check(args.ssid, key)
        with Broker(broker_url(args.broker, args.password_file), args.ca) as broker:
            done = wifi.over_mqtt(
                broker, args.store, args.device, args.ssid, key, devices_dir, args.wait
            )
        where = "MQTT"
    if args.json:
        print(json.dumps(done.to_json()))
    else:
        print("\n".join(done.lines(where, devices_dir)))
    return 0 if done.ok else 1


def _logs(args: argparse.Namespace) -> int:
    from kiosk_host.fleet.commands import Broker
    from kiosk_host.fleet.logs import fetch

    with Broker(broker_url(args.broker, args.password_file), args.ca) as broker:
        got = fetch(broker, args.store, args.device, args.wait)
    if args.json:
        print(json.dumps(got.to_json(), indent=2))
    else:
        print("\n".join(got.lines()))
    return 0 if got.log is not None else 1


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    broker: argparse.ArgumentParser,
    devices_dir: str,
) -> None:
    """wifi, and logs (with `broker`: --broker, --password-file, --ca, --json)."""
    from kiosk_host.fleet.wifi import KEY_ENV, WAIT_S

    w = commands.add_parser(
        "wifi",
        help="move a kiosk to another shop Wi-Fi, keeping its identity: over USB or over MQTT",
        description="Over USB (--port): writes the new network's name and key into the "
        "kiosk's identity.json, whole, and restarts it. Over MQTT (--store, --device, "
        "--broker): the kiosk tries the new network for 60 s and keeps it only if it reaches "
        "the broker over it, else it goes back to the old one; this waits for its answer "
        "(exit 0: kept, 1: not kept or no answer). The provisioned folder (--devices-dir) "
        f"takes the new name and key too. The key comes from --wifi-password-file, ${KEY_ENV}, "
        "or is asked for; it is never printed.",
    )
    w.add_argument("--ssid", required=True, help="the new network's name (1 to 32 bytes)")
    w.add_argument(
        "--wifi-password-file",
        help=f"a file whose first line is the new network's key (else ${KEY_ENV}, else asked)",
    )
    w.add_argument("--open", action="store_true", help="a network without a key")
    w.add_argument("--port", help="the kiosk's USB serial port: /dev/ttyUSB0")
    w.add_argument("--store", type=identifier, help="over MQTT: the kiosk's store")
    w.add_argument("--device", type=identifier, help="over MQTT: the kiosk")
    w.add_argument(
        "--broker",
        help="over MQTT: mqtts://USER@HOST:PORT with --ca, the fleet account (default "
        "$KIOSK_BROKER)",
    )
    w.add_argument("--password-file", help=PASSWORD_HELP)
    w.add_argument("--ca", help="the CA certificate (PEM) to trust, for mqtts://")
    w.add_argument(
        "--insecure",
        action="store_true",
        help="send the key over plain MQTT all the same (anyone on the network can read it)",
    )
    w.add_argument(
        "--wait",
        type=float,
        default=WAIT_S,
        help="seconds to wait for the kiosk's answer (default %(default).0f)",
    )
    w.add_argument("--devices-dir", default=devices_dir,
                   help="where kiosks were provisioned (default %(default)s)")  # fmt: skip
    w.add_argument("--json", action="store_true")
    w.set_defaults(run=_wifi_with_env)

    lg = commands.add_parser(
        "logs",
        parents=[broker],
        help="a kiosk's recent log lines, sent on request over MQTT",
        description="Asks the kiosk for the lines it keeps in RAM (link errors and restarts, "
        "settings applied or refused, changes of Wi-Fi, its boot) and prints them with the "
        "kiosk's uptime when each was written. Exit 1 when it does not answer in time.",
    )
    lg.add_argument("--store", required=True, type=identifier)
    lg.add_argument("--device", required=True, type=identifier)
    lg.add_argument("--wait", type=float, default=20.0,
                    help="seconds to wait for the kiosk (default %(default).0f)")  # fmt: skip
    lg.set_defaults(run=_logs)


def _wifi_with_env(args: argparse.Namespace) -> int:
    """--broker from $KIOSK_BROKER only when the kiosk is not on USB."""
    args.broker_given = args.broker is not None
    if args.broker is None and args.port is None:
        args.broker = os.environ.get("KIOSK_BROKER")
    return _wifi(args)
