"""The wire contract on the host: checks a (topic, payload bytes) pair against mqtt_schemas/.

The topic tree, the shapes each topic carries and their size limits are read from the
AsyncAPI document; payloads are checked by compiled JSON Schema (draft 2020-12) validators.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.wire.identifiers import identifier_pattern
from kiosk_host.wire.topics import TopicTree

# Contract-level rules, beside the JSON Schema keywords that name the other rules.
RULE_TOPIC = "topic"
RULE_OVERSIZE = "oversize"
RULE_JSON = "json"
RULE_OBJECT = "object"
RULE_KIND = "kind"
RULE_IDENTITY = "identity"
RULE_DUPLICATE = "duplicate"  # a key twice in one object: readers disagree on which counts


@dataclass(frozen=True)
class Message:
    """A payload that passed every rule."""

    channel: str  # the AsyncAPI channel key, e.g. "event"
    shape: str  # the AsyncAPI message name, e.g. "rating"
    params: Mapping[str, str]  # the topic's parameters, e.g. {"store": ..., "device": ...}
    payload: dict[str, Any]

    def canonical(self) -> str:
        """The payload as the host stores it: the validated object written out again, so that
        nothing downstream can read a value (a second key, a spelling) the rules never saw.
        Written once, when first asked for: validating alone does not need it."""
        text: str | None = self.__dict__.get("_canonical")
        if text is None:
            text = self.__dict__["_canonical"] = canonical(self.payload)
        return text


# One encoder for every message: json.dumps with options builds a new one at each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def canonical(payload: dict[str, Any]) -> str:
    """One spelling of a JSON object: compact, keys sorted, UTF-8 text as it is."""
    return _ENCODER.encode(payload)


@dataclass(frozen=True)
class Cleared:
    """An empty payload on a retained topic: whoever published there removed its message."""

    channel: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class Rejection:
    """Why a payload was refused: the rule it broke, the field (a JSON Pointer) and in words."""

    rule: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.field or '(payload)'}: {self.reason}"


@dataclass(frozen=True)
class _Shape:
    name: str
    max_bytes: int
    validator: jsonschema_rs.Validator


@dataclass(frozen=True)
class _Channel:
    key: str
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    discriminator: str | None
    shapes: Mapping[str | None, _Shape]  # by discriminator value; None when only one shape
    max_bytes: int
    retained: bool


class Contract:
    """The topic tree and payload schemas, loaded and compiled once."""

    ROUTES_KEPT = 10_000  # topics whose channel and parameters are remembered

    def __init__(self, schema_dir: Path) -> None:
        self.schema_dir = schema_dir
        self._routes: dict[str, tuple[_Channel, dict[str, str]] | Rejection] = {}
        doc = yaml.safe_load((schema_dir / "asyncapi.yaml").read_text())
        schemas = {
            p.name: json.loads(p.read_text())
            for p in sorted((schema_dir / "schemas").glob("*.json"))
        }
        registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas.values()])
        self._identifier = identifier_pattern()
        messages = doc["components"]["messages"]
        retained = {
            op["channel"]["$ref"].rsplit("/", 1)[-1]: bool(op["bindings"]["mqtt"]["retain"])
            for op in doc["operations"].values()
        }
        tree = TopicTree(doc)
        self.channels: list[_Channel] = []
        for key, channel in doc["channels"].items():
            shapes: dict[str | None, _Shape] = {}
            disc = channel.get("x-discriminator")
            for ref in channel["messages"].values():
                name = ref["$ref"].rsplit("/", 1)[-1]
                msg = messages[name]
                schema = schemas[Path(msg["payload"]["$ref"]).name]
                value = schema["properties"][disc]["const"] if disc else None
                validator = jsonschema_rs.validator_for(schema, registry=registry)
                shapes[value] = _Shape(msg.get("name", name), int(msg["x-max-bytes"]), validator)
            found = tree.channels[key]
            self.channels.append(
                _Channel(
                    key=key,
                    pattern=found.pattern,
                    params=found.params,
                    discriminator=disc,
                    shapes=shapes,
                    max_bytes=max(s.max_bytes for s in shapes.values()),
                    retained=retained[key],
                )
            )

    @classmethod
    @cache
    def load(cls) -> Contract:
        """The project's contract, compiled once per process."""
        return cls(MQTT_SCHEMAS)

    def validate(self, topic: str, payload: bytes) -> Message | Cleared | Rejection:
        """The parsed message if `payload` is valid on `topic`, else the first rule it breaks."""
        found = self._route(topic)
        if isinstance(found, Rejection):
            return found
        channel, params = found
        if not payload and channel.retained:
            return Cleared(channel.key, params)
        if len(payload) > channel.max_bytes:
            return Rejection(
                RULE_OVERSIZE,
                "",
                f"{len(payload)} bytes, more than the {channel.max_bytes} allowed",
            )
        try:
            data = _DECODER.decode(payload.decode("utf-8"))
        except _DuplicateKey as exc:
            return Rejection(RULE_DUPLICATE, exc.field, str(exc))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return Rejection(RULE_JSON, "", f"not UTF-8 JSON: {exc}")
        if not isinstance(data, dict):
            return Rejection(RULE_OBJECT, "", f"a JSON {type(data).__name__}, not an object")
        try:  # an escaped lone surrogate ("\\ud800") decodes, but is no text to store; strict
            # UTF-8 decoding refuses every other way to one, so only a \u escape needs the look
            if b"\\u" in payload:
                canonical(data).encode("utf-8")
        except UnicodeEncodeError as exc:
            return Rejection(RULE_JSON, "", f"not UTF-8 text: {exc.reason}")
        shape = self._shape(channel, data)
        if isinstance(shape, Rejection):
            return shape
        if len(payload) > shape.max_bytes:
            return Rejection(
                RULE_OVERSIZE, "", f"{len(payload)} bytes, more than the {shape.max_bytes} allowed"
            )
        for error in shape.validator.iter_errors(data):
            return _schema_rejection(error)
        for param, value in params.items():
            if param in data and data[param] != value:
                return Rejection(
                    RULE_IDENTITY,
                    f"/{param}",
                    f"{data[param]!r} differs from {value!r} in the topic",
                )
        return Message(channel.key, shape.name, params, data)

    def _route(self, topic: str) -> tuple[_Channel, dict[str, str]] | Rejection:
        found = self._routes.get(topic)
        if found is None:
            found = self._match(topic)
            if len(self._routes) >= self.ROUTES_KEPT:
                self._routes.clear()  # a few thousand kiosks' topics: start again when full
            self._routes[topic] = found
        return found

    def _match(self, topic: str) -> tuple[_Channel, dict[str, str]] | Rejection:
        for channel in self.channels:
            m = channel.pattern.fullmatch(topic)
            if m is None:
                continue
            params = dict(zip(channel.params, m.groups(), strict=True))
            for param, value in params.items():
                if not self._identifier.fullmatch(value):
                    return Rejection(
                        RULE_TOPIC, "", f"{param} {value!r} in the topic is not a valid identifier"
                    )
            return channel, params
        return Rejection(RULE_TOPIC, "", f"no channel of the contract has the topic {topic!r}")

    @staticmethod
    def _shape(channel: _Channel, data: dict[str, Any]) -> _Shape | Rejection:
        disc = channel.discriminator
        if disc is None:
            return channel.shapes[None]
        if disc not in data:
            return Rejection("required", f"/{disc}", f"{disc!r} is a required property")
        value = data[disc]
        if isinstance(value, str) and value in channel.shapes:
            return channel.shapes[value]
        known = ", ".join(str(k) for k in channel.shapes)
        if not isinstance(value, str):
            return Rejection("type", f"/{disc}", f"{value!r} is not a string (one of {known})")
        why = f"unknown {disc} {value!r}; expected one of {known}"
        return Rejection(RULE_KIND, f"/{disc}", why)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.field = _pointer([key])


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose every key is given once. Python keeps the last of two, SQLite's
    json_extract the first: a payload with both would be checked on one and read on the
    other."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _number(text: str) -> float | int:
    """A JSON number with a fraction or exponent: finite (1e400 is no float), and a whole
    number (4.0, 4e0) read as the integer it is, so the stored spelling is one."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is out of a double's range")
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


# NaN and Infinity are not JSON, nor is a key twice in one object
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, object_pairs_hook=_unique_object, parse_float=_number
)


def _pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _schema_rejection(error: jsonschema_rs.ValidationError) -> Rejection:
    kind = error.kind
    rule = error.schema_path[-1] if error.schema_path else "schema"
    parts = list(error.instance_path)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        parts.append(kind.property)
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        parts.append(kind.unexpected[0])
    return Rejection(str(rule), _pointer(parts), error.message)
