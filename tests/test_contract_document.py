"""The AsyncAPI document and its schemas are well-formed and say what docs/architecture.md does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kiosk_host.shipped import MQTT_SCHEMAS, ROOT
from kiosk_host.wire.contract import Contract

# The topic tree in docs/architecture.md, row by row: topic, sender (host's side), QoS, retained.
TOPIC_TABLE = [
    ("kiosk/v1/{store}/{device}/event", "receive", 1, False),
    ("kiosk/v1/{store}/{device}/status", "receive", 1, True),
    ("kiosk/v1/{store}/{device}/telemetry", "receive", 0, False),
    ("kiosk/v1/{store}/{device}/log", "receive", 1, False),
    ("kiosk/v1/{store}/{device}/config", "send", 1, True),
    ("kiosk/v1/{store}/{device}/cmd", "send", 1, False),
    ("kiosk/v1/{store}/{device}/ota", "send", 1, False),
    ("kiosk/v1/{store}/{device}/ack", "send", 1, True),
    ("kiosk/v1/{store}/cases", "send", 1, True),
    ("kiosk/v1/{store}/summary", "send", 1, True),
    ("kiosk/v1/{store}/alerts", "send", 1, False),
    ("kiosk/v1/{store}/recognition", "send", 1, True),
    ("kiosk/v1/_host/status", "send", 1, True),
]


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MQTT_SCHEMAS / "asyncapi.yaml").read_text())
    return doc


def schema_files() -> list[Path]:
    return sorted((MQTT_SCHEMAS / "schemas").glob("*.json"))


def test_the_asyncapi_parser_accepts_the_document() -> None:
    proc = subprocess.run(
        ["node", "tests/asyncapi_validate.mjs", str(MQTT_SCHEMAS / "asyncapi.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    errors = [d for d in report["diagnostics"] if d["severity"] == 0]
    assert errors == []
    assert report["parsed"]
    assert report["version"] == "3.0.0"
    assert sorted(report["channels"]) == sorted(row[0] for row in TOPIC_TABLE)


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_every_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + path.name)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_each_schema_but_the_shared_one_is_the_payload_of_exactly_one_message(
    asyncapi: dict[str, Any],
) -> None:
    refs = [Path(m["payload"]["$ref"]).name for m in asyncapi["components"]["messages"].values()]
    assert sorted(refs) == sorted(p.name for p in schema_files() if p.name != "common.json")


def test_every_message_documents_its_maximum_size(asyncapi: dict[str, Any]) -> None:
    for name, message in asyncapi["components"]["messages"].items():
        assert isinstance(message.get("x-max-bytes"), int), name
        assert 64 <= message["x-max-bytes"] <= 16384, name
        assert message["contentType"] == "application/json", name


@pytest.mark.parametrize(("address", "action", "qos", "retain"), TOPIC_TABLE)
def test_each_topic_has_the_direction_qos_and_retain_of_the_design(
    asyncapi: dict[str, Any], address: str, action: str, qos: int, retain: bool
) -> None:
    channel = next(k for k, c in asyncapi["channels"].items() if c["address"] == address)
    ops = [
        o
        for o in asyncapi["operations"].values()
        if o["channel"]["$ref"] == f"#/channels/{channel}"
    ]
    assert len(ops) == 1
    assert ops[0]["action"] == action
    binding = ops[0]["bindings"]["mqtt"]
    assert (binding["qos"], binding["retain"]) == (qos, retain)


def test_closed_shapes_refuse_unknown_properties() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    for path in schema_files():
        walk(json.loads(path.read_text()), path.name)


def test_the_contract_loads_every_channel(contract: Contract) -> None:
    assert len(contract.channels) == len(TOPIC_TABLE)
