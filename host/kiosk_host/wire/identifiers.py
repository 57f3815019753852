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


# Recovery codes, as the kiosk makes them (firmware/wire.py, `case_code`): the kiosk's letter,
# three characters, and a check character. Staff type them off the customer's screen, so
# every place a code is typed checks it here.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0, 1, I, L or O: they look alike
KIOSK_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 5


class CaseCodeError(UserError, ValueError):
    """A typed recovery code that no kiosk could have shown."""


def check_character(body: str) -> str:
    """The fifth character of the code that starts with the four characters `body`: it makes
    the sum of each character's index in CODE_ALPHABET times its position (1 to 5) a multiple
    of 31. 31 is prime, so one wrong character or two swapped neighbours break that sum."""
    total = sum(i * CODE_ALPHABET.index(c) for i, c in enumerate(body, start=1))
    return CODE_ALPHABET[6 * total % 31]  # 5 * 6 = 30 = -1 (mod 31)


def case_code_problem(code: str) -> str | None:
    """Why `code` (already in capitals) is not a recovery code, in one line; None if it is."""
    if len(code) != CODE_LENGTH:
        return (
            f"has {len(code)} characters; a code has {CODE_LENGTH}: the kiosk's letter, "
            f"three characters and a check character, e.g. A7K36"
        )
    for position, c in enumerate(code, start=1):
        if c not in CODE_ALPHABET:
            return f"has {c!r} at position {position}; codes never use 0, 1, I, L or O"
    if code[0] not in KIOSK_LETTERS:
        return f"starts with {code[0]!r}; a code starts with the kiosk's letter"
    if check_character(code[:4]) != code[4]:
        return "fails its check: a character is mistyped or two are swapped; read it again"
    return None


def is_case_code(code: str) -> bool:
    """Whether `code` is a recovery code exactly as a kiosk shows it (capitals)."""
    return case_code_problem(code) is None


def check_case_code(value: str) -> str:
    """The code `value` as the kiosk shows it (spaces dropped, in capitals), or an error that
    says in one line why no kiosk could have shown it."""
    code = value.strip().upper()
    why = case_code_problem(code)
    if why is not None:
        raise CaseCodeError(f"recovery code {value!r} {why}")
    return code
