"""The kiosk's side of the ack channel, on the MicroPython VM: its topic, and which payloads it
takes for a mark, agreeing with mqtt_schemas/ on every example."""

from __future__ import annotations

import json

from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.wire.contract import Contract, Message
from tests.vm.mpvm import MicroPythonVM


def test_the_ack_topic_matches_the_contract(mpvm: MicroPythonVM, contract: Contract) -> None:
    code = "import wire\nprint(wire.Topics('store-12', 'till-1').ack)"
    topic = mpvm.run(code, ["wire"]).ok().strip()
    assert topic == "kiosk/v1/store-12/till-1/ack"
    (channel,) = [c for c in contract.channels if c.key == "ack"]
    assert channel.pattern.fullmatch(topic)


def test_the_kiosk_takes_a_mark_exactly_when_the_schema_does(
    mpvm: MicroPythonVM, contract: Contract
) -> None:
    examples = json.loads((MQTT_SCHEMAS / "examples" / "ack.json").read_text())
    raws = [json.dumps(e["payload"]) for e in examples["valid"]]
    raws += [e.get("raw") or json.dumps(e["payload"]) for e in examples["invalid"]]
    raws += ['{"v":2,"seq":5}', '{"v":1,"seq":true}', '{"v":1,"seq":5.5}', "", "null"]
    code = "import wire\n" + "".join(f"print(wire.parse_ack({r.encode()!r}))\n" for r in raws)
    got = mpvm.run(code, ["wire"]).ok().splitlines()
    topic = examples["topic"]
    for raw, seen in zip(raws, got, strict=True):
        result = contract.validate(topic, raw.encode()) if raw else None
        want = str(json.loads(raw)["seq"]) if isinstance(result, Message) else "None"
        assert seen == want, raw
