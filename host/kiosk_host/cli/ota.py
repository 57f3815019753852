"""`kiosk-host ota push` and `kiosk-host ota status`: firmware updates over MQTT."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from kiosk_host.cli.common import PASSWORD_HELP, broker_url, identifier, whole_number
from kiosk_host.errors import UserError
from kiosk_host.fleet.ota import Outcome

BAR = 20  # characters of a progress bar


def bar_line(o: Outcome) -> str:
    """One kiosk's progress: its bar, chunks and state (and why, once it failed)."""
    share = o.done / o.total if o.total else (1.0 if o.ok else 0.0)
    filled = int(share * BAR)
    tail = f": {o.reason}" if o.reason else ""
    return (
        f"{o.store}/{o.device} [{'#' * filled}{'.' * (BAR - filled)}] {share:4.0%} "
        f"{o.done}/{o.total} {o.state}{tail}"
    )


class Bars:
    """Progress on a stream: each kiosk's line rewritten in place on a terminal; elsewhere a
    line each time a kiosk passes another tenth or changes state, so that a log stays short."""

    def __init__(self, stream: TextIO, in_place: bool | None = None) -> None:
        self.stream = stream
        self.in_place = stream.isatty() if in_place is None else in_place
        self.lines: dict[str, str] = {}
        self.marks: dict[str, tuple[int, str]] = {}

    def __call__(self, o: Outcome) -> None:
        name, line = f"{o.store}/{o.device}", bar_line(o)
        if self.in_place:
            if self.lines.get(name) == line:
                return
            drawn = len(self.lines)
            self.lines[name] = line
            up = f"\x1b[{drawn}F" if drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{v}\n" for v in self.lines.values()))
        else:
            mark = (int(o.done * 10 / o.total) if o.total else 0, o.state)
            if self.marks.get(name) == mark:
                return
            self.marks[name] = mark
            self.stream.write(line + "\n")
        self.stream.flush()


def _broker(args: argparse.Namespace) -> str | None:
    from kiosk_host.fleet.provision import FLEET, credentials_file

    if not args.broker:
        return None
    return broker_url(
        args.broker, args.password_file, credentials_file(Path(args.broker_dir), FLEET)
    )


def push(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import ota

    if not args.all and not args.device:
        raise UserError("give --device D (one or more times) or --all (every kiosk of --store)")
    if args.firmware is not None and not Path(args.firmware).is_dir():
        raise UserError(f"--firmware {args.firmware}: no such folder")
    done = ota.push(
        _broker(args),
        args.store,
        None if args.all else args.device,
        Path(args.devices_dir),
        ca=args.ca,
        canary=args.canary or 0,
        firmware=Path(args.firmware) if args.firmware else None,
        progress=Bars(sys.stderr),
        broker_dir=Path(args.broker_dir),
    )
    if args.json:
        print(json.dumps({"ok": done.ok, "stopped": done.stopped,
                          "kiosks": [o.to_json() for o in done.kiosks]}, indent=2))  # fmt: skip
        return 0 if done.ok else 1
    for o in done.kiosks:
        print(f"{o.store}/{o.device}: runs {o.version}" if o.ok else
              f"{o.store}/{o.device}: not updated: {o.reason or o.state}")  # fmt: skip
    if done.stopped:
        print(done.stopped)
    return 0 if done.ok else 1


def status(args: argparse.Namespace) -> int:
    from kiosk_host.fleet import ota
    from kiosk_host.fleet.commands import Broker

    devices_dir = Path(args.devices_dir)
    url, ca = _broker(args), args.ca
    if url is None:
        url, own_ca = ota.store_broker(devices_dir, args.store, Path(args.broker_dir))
        ca = ca or own_ca
    with Broker(url, ca) as broker:
        rows = ota.fleet_status(broker, args.store, devices_dir)
    if not rows:
        raise UserError(f"no kiosks in store {args.store}: none provisioned, none on the broker")
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    for r in rows:
        progress = f", {r.done}/{r.total} chunks" if r.total else ""
        giving = f", being given {r.version}" if r.version else ""
        why = f": {r.reason}" if r.reason else ""
        print(f"{r.store}/{r.device}: runs {r.fw or '?'}{giving}, {r.state}{progress}{why}")
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """ota push and ota status."""
    from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR, DEFAULT_DEVICES_DIR

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", required=True, type=identifier)
    common.add_argument(
        "--broker",
        default=os.environ.get("KIOSK_BROKER"),
        help="mqtt://USER@HOST:PORT, or mqtts:// with --ca (default $KIOSK_BROKER, else the "
        "kiosks' own broker with the fleet account from --broker-dir)",
    )
    common.add_argument("--password-file", help=PASSWORD_HELP)
    common.add_argument("--ca", help="the CA certificate (PEM) to trust, for mqtts://")
    common.add_argument("--broker-dir", default=str(DEFAULT_BROKER_DIR),
                        help="where provision keeps the fleet account, fleet.json "
                        "(default %(default)s)")  # fmt: skip
    common.add_argument("--devices-dir", default=str(DEFAULT_DEVICES_DIR),
                        help="where kiosks were provisioned, with their update keys "
                        "(default %(default)s)")  # fmt: skip
    common.add_argument("--json", action="store_true")
    ota = commands.add_parser("ota", help="firmware updates over MQTT").add_subparsers(
        dest="action", required=True
    )
    p = ota.add_parser(
        "push",
        parents=[common],
        help="send the firmware to kiosks over MQTT, signed with each one's key",
        description="Builds the release (compiled modules for MicroPython kiosks, one ROMFS "
        "image of them for kiosks with ROMFS partitions, sources for virtual ones, as each "
        "kiosk's status says it takes), sends each kiosk its manifest "
        "and the chunks it asks for, with a progress bar per kiosk on standard error, and "
        "waits until each runs the new version and is online. Exit 0 when every kiosk does, "
        "1 otherwise, naming which and why.",
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("--device", action="append", type=identifier, help="a kiosk (repeatable)")
    who.add_argument("--all", action="store_true", help="every kiosk of --store")
    p.add_argument("--canary", type=whole_number,
                   help="update the first N kiosks (by device) first, and the others only when "
                   "all of those run the new version and are online")  # fmt: skip
    p.add_argument("--firmware", help="the firmware's folder (default: this release's firmware)")
    p.set_defaults(run=push)
    s = ota.add_parser(
        "status",
        parents=[common],
        help="each kiosk's firmware, the update it is being given, and how far it got",
    )
    s.set_defaults(run=status)
