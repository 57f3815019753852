"""`kiosk-host`: the one command line over the host library."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk_host import __version__
from kiosk_host.contract import Cleared, Contract, Rejection


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
        "power-cut and quit on standard input; prints SCREEN <name>: <text> on every change.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
