"""The contract's identifiers: store, device, station and staff names, one pattern for all."""

from __future__ import annotations

import json
import re
from functools import cache

from kiosk_host.errors import UserError
from kiosk_host.shipped import MQTT_SCHEMAS


class IdentifierError(UserError, ValueError):
    """A name that is not an identifier of the contract."""


@cache
def identifier_pattern() -> re.Pattern[str]:
    """The contract's pattern for store, device, station and staff identifiers."""
    common = json.loads((MQTT_SCHEMAS / "schemas" / "common.json").read_text())
    return re.compile(common["$defs"]["identifier"]["pattern"])


def is_identifier(value: str) -> bool:
    """Whether `value` is a valid identifier."""
    return identifier_pattern().fullmatch(value) is not None


def check_identifier(what: str, value: str) -> str:
    """`value` if it is an identifier, else an error that names `what` and shows the rule."""
    if not is_identifier(value):
        raise IdentifierError(
            f"{what} {value!r} is not an identifier: use 1 to 32 lower-case letters, digits and "
            f"'-', starting with a letter or digit (for example store-12 or till-1)"
        )
    return value
