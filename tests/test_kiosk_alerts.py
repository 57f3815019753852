"""Alerts about kiosks: `kiosk_offline` once down too long inside opening hours, once per spell,
and `outbox_filling` when a kiosk's outbox is more than half full."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kiosk_host.aggregator.engine import Engine
from kiosk_host.rules.health import (
    OUTBOX_ALERT_EVERY_S,
    Health,
    kiosk_health,
    offline_alert,
    open_seconds,
    outbox_alert,
)
from kiosk_host.rules.recovery import Alert
from kiosk_host.rules.stores import DEFAULT, StoreConfig, parse_stores
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.sqlite import DeviceStatus
from kiosk_host.wire.contract import Contract, Message

STORE = "store-12"
BERLIN = ZoneInfo("Europe/Berlin")
STORES = parse_stores(
    f'[stores.{STORE}]\ntz = "Europe/Berlin"\noffline_alert_minutes = 20\n'
    f'[stores.{STORE}.hours]\nmon = "08:00-20:00"\ntue = "08:00-20:00"\n'
)
CFG = STORES.get(STORE)
MON_9 = int(datetime(2025, 11, 24, 9, 0, tzinfo=BERLIN).timestamp())  # a Monday, open
MON_21 = MON_9 + 12 * 3600  # closed


def _valid(alert: Alert) -> None:
    payload = json.dumps(alert.to_payload()).encode()
    result = Contract.load().validate(f"kiosk/v1/{STORE}/alerts", payload)
    assert isinstance(result, Message), result


def test_open_seconds_count_only_opening_hours() -> None:
    assert open_seconds(CFG, MON_9 - 7200, MON_9 + 600, 10**6) == 4200  # open from 08:00
    assert open_seconds(CFG, MON_21 - 7200, MON_21 + 3600, 10**6) == 3600  # 19:00-20:00
    assert open_seconds(CFG, MON_9 - 3600, MON_9 + 600, 300) == 300  # no further than asked
    assert open_seconds(CFG, MON_9, MON_9 + 90, 10**6) == 90  # to the second at the start
    assert open_seconds(DEFAULT, MON_21, MON_21 + 600, 10**6) == 600  # always open


def test_kiosk_offline_after_the_stores_minutes_inside_opening_hours() -> None:
    down = Health("offline", 300, MON_9 - 3600)  # since 08:00 - its last will at 08:00
    assert offline_alert(CFG, STORE, "till-1", down, MON_9 - 3600 + 19 * 60, None) is None
    alert = offline_alert(CFG, STORE, "till-1", down, MON_9 - 3600 + 20 * 60, None)
    assert alert is not None
    assert (alert.type, alert.severity, alert.device, alert.case) == (
        "kiosk_offline", "warning", "till-1", None
    )  # fmt: skip
    assert alert.text.startswith("till-1 is offline since Mon 24 Nov 08:00 (20 min)")
    _valid(alert)


def test_down_before_opening_counts_from_the_opening() -> None:
    down = Health("offline", 0, MON_9 - 3 * 3600)  # since 06:00, before the store opened
    assert offline_alert(CFG, STORE, "till-1", down, MON_9 - 3600 + 10 * 60, None) is None
    assert offline_alert(CFG, STORE, "till-1", down, MON_9 - 3600 + 20 * 60, None) is not None
    # nor while the store is closed, however long the kiosk has been down
    assert offline_alert(CFG, STORE, "till-1", down, MON_21 + 60, None) is None


def test_once_per_spell() -> None:
    down = Health("offline", 0, MON_9)
    now = MON_9 + 3600
    assert offline_alert(CFG, STORE, "till-1", down, now, last_sent_at=MON_9 + 1200) is None
    again = Health("offline", 0, MON_9 + 1800)  # back online in between, down again since
    assert offline_alert(CFG, STORE, "till-1", again, now, last_sent_at=MON_9 + 1200) is not None
    online = Health("online", 0)
    assert offline_alert(CFG, STORE, "till-1", online, now, None) is None
    never = StoreConfig(offline_alert_minutes=0)
    assert offline_alert(never, STORE, "till-1", down, now, None) is None


def test_a_refused_kiosk_is_told_with_what_to_check() -> None:
    alert = offline_alert(CFG, STORE, "till-2", Health("refused", 0, MON_9), MON_9 + 1500, None)
    assert alert is not None and "refused by the broker since Mon 24 Nov 09:00" in alert.text
    _valid(alert)


def test_down_since_from_the_stored_kiosk() -> None:
    row = {"state": "online", "since": MON_9, "telemetry_at": MON_9, "interval_s": 60}
    assert kiosk_health(MON_9 + 600, **row, refused_at=None).down_since == MON_9 + 120
    will = {**row, "state": "offline", "since": MON_9 + 30}
    assert kiosk_health(MON_9 + 40, **will, refused_at=None).down_since == MON_9 + 30
    assert kiosk_health(MON_9 + 40, **row, refused_at=MON_9 + 35).down_since == MON_9 + 35
    assert kiosk_health(MON_9 + 40, **row, refused_at=None).down_since is None


def test_outbox_filling_above_half_and_again_only_after_hours() -> None:
    assert outbox_alert(STORE, "till-1", 1000, 2000, MON_9, None) is None  # half: not above
    alert = outbox_alert(STORE, "till-1", 1001, 2000, MON_9, None)
    assert alert is not None and (alert.type, alert.severity) == ("outbox_filling", "warning")
    assert "1001 of at most 2000" in alert.text
    assert outbox_alert(STORE, "till-1", 300, 500, MON_9, None) is not None  # its own size
    assert outbox_alert(STORE, "till-1", 1200, None, MON_9, None) is not None  # firmware's 2000
    assert outbox_alert(STORE, "till-1", 1500, 2000, MON_9 + 60, MON_9) is None
    later = MON_9 + OUTBOX_ALERT_EVERY_S
    assert outbox_alert(STORE, "till-1", 1500, 2000, later, MON_9) is not None
    _valid(alert)


def _telemetry(outbox: int, at: int) -> dict[str, Any]:
    return {"v": 1, "ts": at, "up_ms": 1000, "heap_free": 40_000, "rssi": -60, "outbox": outbox,
            "dropped": 0, "suppressed": 0, "config_error": None, "outbox_max": 2000}  # fmt: skip


def test_the_engine_raises_them_from_the_stored_kiosks(store_url: str) -> None:
    storage = open_storage(store_url)
    online = {"v": 1, "state": "online", "fw": "1.0", "board": "b", "ts": MON_9, "up_ms": 1}
    storage.write_batch(
        [],
        devices=[
            DeviceStatus(STORE, "till-1", online, MON_9, False),
            DeviceStatus(STORE, "till-1", _telemetry(1500, MON_9), MON_9, True),
            DeviceStatus(STORE, "till-2", online, MON_9, False),
            DeviceStatus(STORE, "till-2", _telemetry(3, MON_9), MON_9, True),
        ],
    )
    engine = Engine(STORES)

    def raised() -> list[tuple[str, str]]:
        return sorted((a["type"], a["device"]) for a in storage.alerts(STORE))

    engine.kiosk_alerts(storage, MON_9 + 30, MON_9)
    assert raised() == [("outbox_filling", "till-1")]
    storage.write_batch(
        [], devices=[DeviceStatus(STORE, "till-1", _telemetry(1400, MON_9 + 60), MON_9 + 60, True)]
    )
    engine.kiosk_alerts(storage, MON_9 + 61, MON_9)  # still filling, told a minute ago: not again
    assert raised() == [("outbox_filling", "till-1")]
    # till-2 falls silent at 09:00: offline from 09:02, told 20 min later, once
    engine.kiosk_alerts(storage, MON_9 + 120 + 19 * 60, MON_9)
    assert ("kiosk_offline", "till-2") not in raised()
    for minutes in (20, 25, 40):
        engine.kiosk_alerts(storage, MON_9 + 120 + minutes * 60, MON_9)
    assert raised().count(("kiosk_offline", "till-2")) == 1
    storage.close()


def test_a_host_back_from_an_outage_does_not_report_every_kiosk_down(store_url: str) -> None:
    # The kiosk's last telemetry came an hour before the host started listening again: what
    # it sent meanwhile (QoS 0) is lost, so it is judged from the host's return on.
    storage = open_storage(store_url)
    back = MON_9 + 3600
    online = {"v": 1, "state": "online", "fw": "1.0", "board": "b", "ts": MON_9, "up_ms": 1}
    storage.write_batch(
        [],
        devices=[
            DeviceStatus(STORE, "till-1", online, MON_9, False),
            DeviceStatus(STORE, "till-1", _telemetry(3, MON_9), MON_9, True),
        ],
    )
    engine = Engine(STORES)
    engine.kiosk_alerts(storage, back + 30, back)
    assert storage.alerts(STORE) == []
    engine.kiosk_alerts(storage, back + 120 + 20 * 60, back)  # silent since: it is down
    assert [a["type"] for a in storage.alerts(STORE)] == ["kiosk_offline"]
    storage.close()
