"""A payload built by hand for each topic of docs/architecture.md validates; generated ones too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_host.wire.contract import Cleared, Contract, Message, Rejection
from kiosk_host.wire.identifiers import check_character

S, D = "store-12", "till-1"
NOW = 1763900000
EVENT = {"v": 1, "store": S, "device": D, "seq": 41, "ts": NOW, "up_ms": 3_600_000}
CODE = "A7K3" + check_character("A7K3")  # a code as a kiosk with letter A makes it

BY_HAND: list[tuple[str, str, dict[str, Any]]] = [
    ("rating", f"kiosk/v1/{S}/{D}/event",
     {**EVENT, "kind": "rating", "score": 2, "scale": 4, "station": "till-1", "staff": "ana"}),
    ("follow_up", f"kiosk/v1/{S}/{D}/event",
     {**EVENT, "kind": "follow_up", "rating_seq": 40, "accepted": True, "code": CODE}),
    ("recovery_confirm", f"kiosk/v1/{S}/{D}/event",
     {**EVENT, "kind": "recovery_confirm", "case": CODE, "outcome": "wow"}),
    ("staff_signin", f"kiosk/v1/{S}/{D}/event",
     {**EVENT, "kind": "staff_signin", "staff": "ben-k", "station": "till-1"}),
    ("staff_signout", f"kiosk/v1/{S}/{D}/event",
     {**EVENT, "kind": "staff_signout", "staff": "ben-k", "station": "till-1"}),
    ("status", f"kiosk/v1/{S}/{D}/status",
     {"v": 1, "state": "online", "fw": "0.1.0", "board": "esp32-devkitc", "ts": None,
      "up_ms": 900, "config_error": None}),
    ("status_will", f"kiosk/v1/{S}/{D}/status", {"v": 1, "state": "offline"}),
    ("telemetry", f"kiosk/v1/{S}/{D}/telemetry",
     {"v": 1, "ts": NOW, "up_ms": 60_000, "heap_free": 83_000, "rssi": -58, "outbox": 0,
      "dropped": 0, "suppressed": 3, "config_error": None}),
    ("config", f"kiosk/v1/{S}/{D}/config",
     {"v": 1, "prompt": "How did we do today?", "language": "en", "scale": 4, "low_threshold": 2,
      "response_interval_s": 5, "follow_up_timeout_s": 20, "code_display_s": 60,
      "confirm_timeout_s": 60, "telemetry_interval_s": 60, "station": "till-1",
      "staff": [{"id": "ana", "name": "Ana"}, {"id": "ben-k", "name": "Ben K."}]}),
    ("confirm_recovery", f"kiosk/v1/{S}/{D}/cmd",
     {"v": 1, "cmd": "confirm_recovery", "id": "c-0001", "ts": NOW, "case": CODE}),
    ("identify", f"kiosk/v1/{S}/{D}/cmd",
     {"v": 1, "cmd": "identify", "id": "c-0002", "ts": NOW, "seconds": 10}),
    ("reboot", f"kiosk/v1/{S}/{D}/cmd", {"v": 1, "cmd": "reboot", "id": "c-0003", "ts": NOW}),
    ("wifi", f"kiosk/v1/{S}/{D}/cmd",
     {"v": 1, "cmd": "wifi", "id": "c-0004", "ts": NOW, "ssid": "shop-2", "key": "a-new-key"}),
    ("logs", f"kiosk/v1/{S}/{D}/cmd", {"v": 1, "cmd": "logs", "id": "c-0005", "ts": NOW}),
    ("log", f"kiosk/v1/{S}/{D}/log",
     {"v": 1, "store": S, "device": D, "id": "c-0005", "ts": None, "up_ms": 60_000, "lost": 0,
      "lines": [{"up_ms": 0, "text": "boot: firmware 0.1.0, after power on"},
                {"up_ms": 900, "last_ms": 40_900, "count": 3,
                 "text": "Wi-Fi: no connection to shop"}]}),
    ("ota_manifest", f"kiosk/v1/{S}/{D}/ota",
     {"v": 1, "op": "manifest", "id": "r19a3f2c0", "version": "0.1.0+4f2a9c1e", "kind": "mpy",
      "chunk": 2048, "files": [{"path": "main.mpy", "size": 3004, "sha256": "ab" * 32}],
      "mac": "cd" * 32}),
    ("ota_chunk", f"kiosk/v1/{S}/{D}/ota",
     {"v": 1, "op": "chunk", "id": "r19a3f2c0", "file": 0, "n": 1, "data": "TV8GAA==",
      "mac": "ef" * 32}),
    ("ack", f"kiosk/v1/{S}/{D}/ack", {"v": 1, "seq": 41}),
    ("cases", f"kiosk/v1/{S}/cases",
     {"v": 1, "store": S, "ts": NOW, "cases": [
         {"code": CODE, "state": "open", "deadline": NOW + 86_400, "opened": NOW,
          "station": "till-1", "escalated": False, "overdue": False}]}),
    ("summary", f"kiosk/v1/{S}/summary",
     {"v": 1, "store": S, "ts": NOW, "day": "2025-11-23", "tz": "Europe/Berlin", "scale": 4,
      "counts": [1, 2, 10, 30], "ratings": 43, "satisfaction": 0.93, "breakdowns": 3,
      "open_cases": 1, "overdue_cases": 0, "recovered_in_time": 2, "outside_hours": 0}),
    ("alert", f"kiosk/v1/{S}/alerts",
     {"v": 1, "id": "al-77", "store": S, "ts": NOW, "type": "deadline_near", "severity": "warning",
      "text": "Case A7K3 at till-1 has 4 h left", "case": CODE, "device": D,
      "deadline": NOW + 14_400}),
    ("recognition", f"kiosk/v1/{S}/recognition",
     {"v": 1, "store": S, "ts": NOW, "period": {"from": NOW - 604_800, "to": NOW},
      "team": {"ratings": 400, "smooth": 310, "smooth_rate": 0.78, "wow_in_time": 3,
               "recovered_in_time": 5},
      "staff": [{"staff": "ana", "name": "Ana", "ratings": 120, "smooth": 101, "smooth_rate": 0.82,
                 "wow_in_time": 2, "reasons": ["101 of 120 customers gave the top rating"]}]}),
    ("host_status", "kiosk/v1/_host/status",
     {"v": 1, "state": "online", "host": "aggregator-1", "ts": NOW, "version": "0.1.0"}),
]  # fmt: skip


@pytest.mark.parametrize(("shape", "topic", "payload"), BY_HAND, ids=[row[0] for row in BY_HAND])
def test_a_payload_built_by_hand_validates(
    contract: Contract, shape: str, topic: str, payload: dict[str, Any]
) -> None:
    result = contract.validate(topic, json.dumps(payload).encode())
    assert isinstance(result, Message), str(result)
    assert result.shape == shape


def test_every_shape_of_the_contract_has_a_payload_built_by_hand(contract: Contract) -> None:
    shapes = {s.name for c in contract.channels for s in c.shapes.values()}
    assert shapes == {row[0] for row in BY_HAND}


def rating(score: int, scale: int) -> bytes:
    return json.dumps(
        {**EVENT, "kind": "rating", "score": score, "scale": scale, "station": D, "staff": None}
    ).encode()


@given(scale=st.integers(3, 5), data=st.data())
def test_any_score_within_the_scale_is_valid(scale: int, data: st.DataObject) -> None:
    score = data.draw(st.integers(1, scale))
    assert isinstance(
        Contract.load().validate(f"kiosk/v1/{S}/{D}/event", rating(score, scale)), Message
    )


@given(scale=st.integers(3, 5), data=st.data())
def test_a_score_outside_the_scale_names_the_bound_it_broke(
    scale: int, data: st.DataObject
) -> None:
    score = data.draw(st.one_of(st.integers(max_value=0), st.integers(min_value=scale + 1)))
    result = Contract.load().validate(f"kiosk/v1/{S}/{D}/event", rating(score, scale))
    assert isinstance(result, Rejection)
    assert (result.rule, result.field) == ("minimum" if score < 1 else "maximum", "/score")


@given(scale=st.integers().filter(lambda s: not 3 <= s <= 5))
def test_a_scale_outside_3_to_5_is_refused(scale: int) -> None:
    result = Contract.load().validate(f"kiosk/v1/{S}/{D}/event", rating(1, scale))
    assert isinstance(result, Rejection)
    assert result.field == "/scale"


@given(topic=st.text(max_size=60))
def test_any_topic_outside_the_tree_is_refused_not_raised(topic: str) -> None:
    result = Contract.load().validate(topic, rating(1, 4))
    assert isinstance(result, Message) == (topic == f"kiosk/v1/{S}/{D}/event")


@pytest.mark.parametrize(
    ("topic", "cleared"),
    [
        (f"kiosk/v1/{S}/{D}/status", True),
        (f"kiosk/v1/{S}/{D}/config", True),
        (f"kiosk/v1/{S}/summary", True),
        (f"kiosk/v1/{S}/{D}/event", False),
        (f"kiosk/v1/{S}/alerts", False),
    ],
)
def test_an_empty_payload_clears_a_retained_topic_and_is_an_error_elsewhere(
    contract: Contract, topic: str, cleared: bool
) -> None:
    result = contract.validate(topic, b"")
    if cleared:
        assert isinstance(result, Cleared)
        assert result.params["store"] == S
    else:
        assert isinstance(result, Rejection)
        assert result.rule == "json"
