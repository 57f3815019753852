"""The kiosk's own config check, on MicroPython, agrees with the contract and says what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.wire.contract import Contract, Message
from tests.vm.mpvm import MicroPythonVM

EXAMPLES = json.loads((MQTT_SCHEMAS / "examples" / "config.json").read_text())
GOOD: dict[str, Any] = EXAMPLES["valid"][0]["payload"]


def kiosk_verdicts(mpvm: MicroPythonVM, payloads: list[bytes]) -> list[str | None]:
    code = (
        "import json, config\n"
        f"raws = json.loads({json.dumps(json.dumps([p.decode() for p in payloads]))})\n"
        "print(json.dumps([config.parse(r.encode())[1] for r in raws]))\n"
    )
    verdicts: list[str | None] = json.loads(mpvm.run(code, ["config", "wire"]).ok())
    return verdicts


def test_the_kiosk_accepts_and_refuses_what_the_contract_does(
    mpvm: MicroPythonVM, contract: Contract
) -> None:
    examples = [e for e in EXAMPLES["valid"] + EXAMPLES["invalid"] if "payload" in e]
    examples = [e for e in examples if e.get("rule") not in ("oversize", "identity")]
    payloads = [json.dumps(e["payload"]).encode() for e in examples]
    verdicts = kiosk_verdicts(mpvm, payloads)
    for example, payload, why in zip(examples, payloads, verdicts, strict=True):
        on_host = isinstance(contract.validate(EXAMPLES["topic"], payload), Message)
        assert (why is None) == on_host, (example["name"], why)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scale": 7}, "scale: expected 3..5, got 7"),
        ({"scale": "4"}, 'scale: expected 3..5, got "4"'),
        ({"low_threshold": 4}, "low_threshold: expected below scale 4"),
        ({"language": "xx"}, "language: expected one of en de fr es nl"),
        ({"station": "Till 1"}, "station: expected an id like till-1"),
        ({"staff": [{"id": "ana"}]}, "staff[0]: expected {id, name}"),
        ({"staff": [{"id": "Ana", "name": "Ana"}]}, "staff[0].id: expected an id like ana"),
        ({"prompt": ""}, "prompt: expected 1..80 characters"),
        ({"colour": "red"}, "colour: unknown setting"),
        ({"v": 2}, "v: expected 1"),
    ],
)
def test_a_broken_config_names_the_key_and_what_was_expected(
    mpvm: MicroPythonVM, change: dict[str, Any], message: str
) -> None:
    payload = json.dumps({**GOOD, **change}).encode()
    assert kiosk_verdicts(mpvm, [payload]) == [message]


def test_missing_keys_and_bad_json_are_named(mpvm: MicroPythonVM) -> None:
    missing = {k: v for k, v in GOOD.items() if k != "follow_up_timeout_s"}
    verdicts = kiosk_verdicts(mpvm, [json.dumps(missing).encode(), b'{"v": 1,', b"[]"])
    assert verdicts == [
        "follow_up_timeout_s: missing",
        "config: not valid JSON",
        "config: expected a JSON object",
    ]
