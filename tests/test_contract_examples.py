"""Every example beside the schemas: valid ones pass, each invalid one fails by its named rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.wire.contract import Contract, Message, Rejection

EXAMPLES = sorted((MQTT_SCHEMAS / "examples").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def payload_bytes(example: dict[str, Any]) -> bytes:
    if "raw" in example:
        return str(example["raw"]).encode()
    return json.dumps(example["payload"]).encode()


def cases(kind: str) -> list[Any]:
    return [
        pytest.param(load(path)["topic"], example, id=f"{path.stem}: {example['name']}")
        for path in EXAMPLES
        for example in load(path)[kind]
    ]


def test_every_schema_has_examples() -> None:
    schemas = {p.stem for p in (MQTT_SCHEMAS / "schemas").glob("*.json")} - {"common"}
    assert {p.stem for p in EXAMPLES} == schemas
    for path in EXAMPLES:
        data = load(path)
        assert len(data["valid"]) >= 2, path.name
        assert len(data["invalid"]) >= 5, path.name


@pytest.mark.parametrize(("topic", "example"), cases("valid"))
def test_valid_example_passes(contract: Contract, topic: str, example: dict[str, Any]) -> None:
    result = contract.validate(example.get("topic", topic), payload_bytes(example))
    assert isinstance(result, Message), str(result)
    assert result.payload == example["payload"]


@pytest.mark.parametrize(("topic", "example"), cases("invalid"))
def test_invalid_example_is_rejected_by_its_rule(
    contract: Contract, topic: str, example: dict[str, Any]
) -> None:
    result = contract.validate(example.get("topic", topic), payload_bytes(example))
    assert isinstance(result, Rejection)
    assert (result.rule, result.field) == (example["rule"], example["field"]), str(result)
    assert result.reason
    assert str(result).startswith(f"{example['rule']} at ")  # the reason names the rule


def test_the_rejection_examples_cover_every_kind_of_mistake() -> None:
    rules = {ex["rule"] for path in EXAMPLES for ex in load(path)["invalid"]}
    # wrong type, out of range, missing field, unknown kind, bad identifier, oversize, and the rest
    assert {"type", "minimum", "maximum", "required", "kind", "pattern", "oversize"} <= rules
    assert {"additionalProperties", "identity", "json", "object", "enum", "const"} <= rules


def reference_validator(schema_name: str) -> jsonschema.protocols.Validator:
    resources = []
    for path in (MQTT_SCHEMAS / "schemas").glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(resources)
    schema = json.loads((MQTT_SCHEMAS / "schemas" / schema_name).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_compiled_validator_agrees_with_the_reference_implementation(path: Path) -> None:
    """jsonschema (pure Python, the reference) and the compiled jsonschema-rs judge alike."""
    reference = reference_validator(path.name)
    contract = Contract.load()
    data = load(path)
    for example in data["valid"] + data["invalid"]:
        if "payload" not in example or example.get("rule") in ("oversize", "identity"):
            continue  # rules of the contract beyond what a JSON Schema says
        topic = example.get("topic", data["topic"])
        ours = contract.validate(topic, json.dumps(example["payload"]).encode())
        assert reference.is_valid(example["payload"]) == isinstance(ours, Message), example["name"]
