"""The kiosk's encoders, run on MicroPython, produce payloads the host's contract accepts."""

from __future__ import annotations

import json
import random
import re

from hypothesis import given
from hypothesis import strategies as st

from kiosk_host.wire.contract import Contract, Message, Rejection
from kiosk_host.wire.identifiers import (
    CODE_ALPHABET,
    KIOSK_LETTERS,
    CaseCodeError,
    check_case_code,
    check_character,
    is_case_code,
)
from tests.vm.mpvm import MicroPythonVM

STORE, DEVICE = "store-12", "till-1"

ENCODE_EVERY_PAYLOAD = """
import wire
t = wire.Topics('store-12', 'till-1')
e = wire.Events('store-12', 'till-1')
out = [
    (t.event, e.rating(1, 1763900000, 5000, 4, 4, 'till-1', 'ana')),
    (t.event, e.rating(2, None, 6000, 1, 3, 'till-1', None)),
    (t.event, e.rating(4294967295, 4102444800, 2**53 - 1, 5, 5, 'till-1', 'ben-k')),
    (t.event, e.follow_up(3, None, 7000, 2, 'A7K36')),
    (t.event, e.follow_up(4, 1763900010, 8000, 2, None)),
    (t.event, e.recovery_confirm(5, 1763900020, 9000, 'B2XZ9', 'wow')),
    (t.event, e.recovery_confirm(6, 1763900030, 9500, 'B2XZ9', 'not_fixed')),
    (t.event, e.staff(7, 1763900040, 10000, True, 'ana', 'till-1')),
    (t.event, e.staff(8, 1763900050, 11000, False, 'ana', 'till-1')),
    (t.status, wire.status_online('0.1.0', 'esp32-devkitc', None, 1200, None)),
    (t.status, wire.status_online('0.1.0', 'm5', 1763900000, 1200, 'scale: expected 3..5 "7"')),
    (t.status, wire.STATUS_WILL),
    (t.telemetry, wire.telemetry(None, 60000, 81234, -67, 3, 0, 2, None)),
    (t.telemetry, wire.telemetry(1763900000, 60000, 81234, None, 0, 12, 0, 'no staff list')),
    (t.telemetry, wire.telemetry(1763900000, 60000, 81234, -50, 1500, 0, 0, None, None, 0, 2000)),
]
for topic, payload in out:
    print(topic, payload.decode())
"""


def test_every_payload_the_kiosk_encodes_is_valid(mpvm: MicroPythonVM, contract: Contract) -> None:
    lines = mpvm.run(ENCODE_EVERY_PAYLOAD, ["wire"]).ok().splitlines()
    assert len(lines) == ENCODE_EVERY_PAYLOAD.count("\n    (t.")  # one line per payload
    shapes = set()
    for line in lines:
        topic, payload = line.split(" ", 1)
        result = contract.validate(topic, payload.encode())
        assert isinstance(result, Message), f"{result} in {payload}"
        shapes.add((result.channel, result.shape))
    assert shapes == {
        ("event", kind)
        for kind in ("rating", "follow_up", "recovery_confirm", "staff_signin", "staff_signout")
    } | {("status", "status"), ("status", "status_will"), ("telemetry", "telemetry")}
    assert {c for c, _ in shapes} == {"event", "status", "telemetry"}


def test_topics_match_the_contract(mpvm: MicroPythonVM, contract: Contract) -> None:
    code = (
        "import wire\nt = wire.Topics('store-12', 'till-1')\n"
        "print(t.event, t.status, t.telemetry, t.config, t.cmd, t.cases)"
    )
    topics = mpvm.run(code, ["wire"]).ok().split()
    channels = {c.key: c for c in contract.channels}
    for key, topic in zip(
        ["event", "status", "telemetry", "config", "cmd", "cases"], topics, strict=True
    ):
        assert channels[key].pattern.fullmatch(topic), (key, topic)


def test_identifier_and_code_checks_agree_with_the_schema(mpvm: MicroPythonVM) -> None:
    schemas = contract_common()
    ident = re.compile(schemas["identifier"]["pattern"])
    code_re = re.compile(schemas["case_code"]["pattern"])
    rng = random.Random(7)
    alphabet = "abz09-A_Z .é"
    samples = ["", "a", "-a", "a-", "store-12", "x" * 32, "x" * 33, "Store", "a_b", "0", "_host"]
    samples += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 34))) for _ in range(300)
    ]
    codes = ["A7K36", "B2XZ9", "A7K3", "B2XZ", "O7K36", "A0K36", "AIK36", "a7k36", "A7K63"]
    codes += ["A7K366", "Z9999", "12345", "A7K3X"]
    codes += [
        "".join(rng.choice("A0O1IL29Zaz") for _ in range(rng.randint(3, 6))) for _ in range(200)
    ]
    bodies = [
        rng.choice(KIOSK_LETTERS) + "".join(rng.choices(CODE_ALPHABET, k=3)) for _ in range(100)
    ]
    codes += [b + check_character(b) for b in bodies]  # valid, and each with one slip:
    codes += [b + CODE_ALPHABET[(CODE_ALPHABET.index(check_character(b)) + 1) % 31] for b in bodies]
    codes += [
        rng.choice(KIOSK_LETTERS) + "".join(rng.choices(CODE_ALPHABET, k=4)) for _ in range(300)
    ]
    code = (
        "import wire, json\n"
        f"ids = json.loads({json.dumps(json.dumps(samples))})\n"
        f"codes = json.loads({json.dumps(json.dumps(codes))})\n"
        "print(json.dumps([[wire.is_identifier(s) for s in ids],\n"
        "                  [wire.is_case_code(c) for c in codes]]))\n"
    )
    on_kiosk_ids, on_kiosk_codes = json.loads(mpvm.run(code, ["wire"]).ok())
    assert on_kiosk_ids == [bool(ident.fullmatch(s)) for s in samples]
    # the kiosk and the host agree on every code, and every code either takes has the
    # contract's form; the contract's pattern cannot see the check character
    assert on_kiosk_codes == [is_case_code(c) for c in codes]
    assert all(code_re.fullmatch(c) for c, ok in zip(codes, on_kiosk_codes, strict=True) if ok)
    assert any(on_kiosk_ids) and not all(on_kiosk_ids)
    assert 50 < sum(on_kiosk_codes) < len(codes) - 300


def test_a_payload_from_a_kiosk_of_another_store_is_refused(contract: Contract) -> None:
    payload = (
        b'{"v":1,"kind":"rating","store":"store-13","device":"till-1","seq":1,"ts":null,'
        b'"up_ms":1,"score":4,"scale":4,"station":"till-1","staff":null}'
    )
    result = contract.validate(f"kiosk/v1/{STORE}/{DEVICE}/event", payload)
    assert isinstance(result, Rejection)
    assert (result.rule, result.field) == ("identity", "/store")


def contract_common() -> dict[str, dict[str, str]]:
    common = json.loads(Contract.load().schema_dir.joinpath("schemas", "common.json").read_text())
    defs: dict[str, dict[str, str]] = common["$defs"]
    return defs


def test_every_kiosk_letter_still_has_29791_codes(mpvm: MicroPythonVM) -> None:
    """Every sequence number in a run of 31 ** 3 gives its own valid code, on the kiosk."""
    code = (
        "import wire\n"
        "for letter in ('A', 'Z'):\n"
        "    seen = set()\n"
        "    bad = 0\n"
        "    for seq in range(1000, 1000 + 29791):\n"
        "        c = wire.case_code(letter, seq)\n"
        "        seen.add(c)\n"
        "        bad += not wire.is_case_code(c)\n"
        "    print(letter, len(seen), bad, wire.case_code(letter, 1000 + 29791) in seen)\n"
    )
    assert mpvm.run(code, ["wire"]).ok().split("\n")[:2] == ["A 29791 0 True", "Z 29791 0 True"]


def test_the_host_checks_a_code_as_the_kiosk_makes_it(mpvm: MicroPythonVM) -> None:
    made = (
        mpvm.run(
            "import wire\nprint(' '.join(wire.case_code(c, s) for c in 'ABZ' for s in (1, 500)))",
            ["wire"],
        )
        .ok()
        .split()
    )
    assert [c[:4] + check_character(c[:4]) for c in made] == made
    assert all(is_case_code(c) for c in made)
    assert check_case_code(f" {made[0].lower()} ") == made[0]  # read off the screen and typed


@given(
    letter=st.sampled_from(KIOSK_LETTERS),
    body=st.text(CODE_ALPHABET, min_size=3, max_size=3),
    position=st.integers(0, 4),
    other=st.sampled_from(CODE_ALPHABET),
)
def test_one_wrong_character_or_a_swap_is_refused(
    letter: str, body: str, position: int, other: str
) -> None:
    code = letter + body + check_character(letter + body)
    assert is_case_code(code)
    if other != code[position]:
        slip = code[:position] + other + code[position + 1 :]
        assert not is_case_code(slip), (code, slip)
    if position < 4 and code[position] != code[position + 1]:
        swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
        assert not is_case_code(swapped), (code, swapped)


def test_a_mistyped_code_gets_a_one_line_reason() -> None:
    reasons = {}
    for typed in ("A7K3", "A7K36X", "A0K36", "27K36", "A7K63", "A7K37"):
        try:
            check_case_code(typed)
        except CaseCodeError as why:
            reasons[typed] = str(why)
    assert set(reasons) == {"A7K3", "A7K36X", "A0K36", "27K36", "A7K63", "A7K37"}
    assert all("\n" not in r and r.startswith(f"recovery code {t!r} ") for t, r in reasons.items())
    assert "has 4 characters; a code has 5" in reasons["A7K3"]
    assert "'0' at position 2" in reasons["A0K36"]
    assert "starts with '2'" in reasons["27K36"]
    assert "mistyped or two are swapped" in reasons["A7K63"]
