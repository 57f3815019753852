"""The MQTT topic tree, read from the AsyncAPI document: every topic the host makes or parses.

Each channel of `mqtt_schemas/asyncapi.yaml` has an address such as
`kiosk/v1/{store}/{device}/event`; `topic("event", store=..., device=...)` fills it in,
`topic_filter("status", store=...)` puts MQTT's `+` where a parameter is left out, and
`parse(topic)` finds the channel and parameters of a topic. Nothing on the host spells a topic
by hand, so the document is the one place the tree is defined (the firmware's is `wire.Topics`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from kiosk_host.shipped import MQTT_SCHEMAS

_PARAM = re.compile(r"\{([a-z_]+)\}")


class TopicError(ValueError):
    """A topic asked for with a channel or parameters that the contract does not have."""


@dataclass(frozen=True)
class Channel:
    """One channel of the contract: its key in the document, its address and parameters."""

    key: str
    address: str
    params: tuple[str, ...]
    pattern: re.Pattern[str]


class TopicTree:
    """The channels of an AsyncAPI document, to make and parse their topics."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.channels: dict[str, Channel] = {}
        for key, channel in doc["channels"].items():
            address: str = channel["address"]
            regex = _PARAM.sub(
                r"([^/]+)", re.escape(address).replace(r"\{", "{").replace(r"\}", "}")
            )
            self.channels[key] = Channel(
                key, address, tuple(_PARAM.findall(address)), re.compile(regex)
            )
        roots = {"/".join(c.address.split("/")[:2]) for c in self.channels.values()}
        if len(roots) != 1:
            raise TopicError(f"the channels do not share one root: {sorted(roots)}")
        self.root = roots.pop()
        self.everything = self.root + "/#"  # what the aggregator subscribes to

    def _channel(self, key: str) -> Channel:
        try:
            return self.channels[key]
        except KeyError:
            raise TopicError(f"the contract has no channel {key!r}") from None

    def topic(self, key: str, **params: str) -> str:
        """The topic of channel `key` with every parameter given."""
        channel = self._channel(key)
        if set(params) != set(channel.params):
            raise TopicError(
                f"channel {key!r} takes {', '.join(channel.params) or 'no parameters'}, "
                f"not {', '.join(sorted(params)) or 'none'}"
            )
        for name, value in params.items():
            if not value or any(c in value for c in "/+#"):
                raise TopicError(f"{name} {value!r} cannot stand in a topic")
        return _PARAM.sub(lambda m: params[m.group(1)], channel.address)

    def topic_filter(self, key: str, **params: str) -> str:
        """A subscription filter for channel `key`: `+` for each parameter not given."""
        channel = self._channel(key)
        unknown = set(params) - set(channel.params)
        if unknown:
            raise TopicError(f"channel {key!r} has no parameter {', '.join(sorted(unknown))}")
        return _PARAM.sub(lambda m: params.get(m.group(1), "+"), channel.address)

    def parse(self, topic: str) -> tuple[str, dict[str, str]] | None:
        """The channel key and parameters of `topic`, or None if no channel has it."""
        for channel in self.channels.values():
            m = channel.pattern.fullmatch(topic)
            if m is not None:
                return channel.key, dict(zip(channel.params, m.groups(), strict=True))
        return None


@cache
def tree() -> TopicTree:
    """The project's topic tree, read once per process."""
    return TopicTree(yaml.safe_load((MQTT_SCHEMAS / "asyncapi.yaml").read_text()))


def topic(key: str, **params: str) -> str:
    """The topic of the contract's channel `key`, e.g. topic("event", store=s, device=d)."""
    return tree().topic(key, **params)


def topic_filter(key: str, **params: str) -> str:
    """A filter for channel `key` with `+` for the parameters left out."""
    return tree().topic_filter(key, **params)


def parse(topic: str) -> tuple[str, dict[str, str]] | None:
    """The channel key and parameters of `topic`, or None."""
    return tree().parse(topic)
