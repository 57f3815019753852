"""`kiosk-host`: the one command line over the host library."""

from __future__ import annotations

import argparse
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
