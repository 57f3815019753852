"""Kiosk health (docs/operating.md#kiosk-health): online, offline once telemetry is two intervals
late, refused when the broker refuses the kiosk's account, in the devices view and the overview."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from freezegun import freeze_time
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.aggregator import views
from kiosk_host.aggregator.receiver import Ingest
from kiosk_host.rules.health import BrokerLog, kiosk_health
from kiosk_host.rules.stores import DEFAULT
from kiosk_host.shipped import MQTT_SCHEMAS
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.sqlite import DeviceStatus, Storage
from tests.broker import Mosquitto
from tests.virtual_kiosks import suback, wait_until

T = 1_763_900_000
STORE = "store-12"


def health(now: int, **stored: Any) -> tuple[str, int | None]:
    row = {"state": "online", "since": T, "telemetry_at": T, "interval_s": 60, "refused_at": None}
    h = kiosk_health(now, **{**row, **stored})
    return h.state, h.late_s


# -- the rule ----------------------------------------------------------------------------------


def test_offline_once_telemetry_is_more_than_two_intervals_late() -> None:
    assert health(T + 60) == ("online", 0)
    assert health(T + 61) == ("online", 1)  # the next sample is a second late
    assert health(T + 120) == ("online", 60)
    assert health(T + 121) == ("offline", 61)  # two intervals without a word
    assert health(T + 300, since=T - 3600) == ("offline", 240)  # a retained "online" is no sign
    assert health(T + 21, interval_s=10) == ("offline", 11)  # its config's interval
    assert health(T + 119, interval_s=None) == ("online", 59)  # none seen: the firmware's 60 s
    assert health(T + 10, state="offline", since=T + 5) == ("offline", 0)  # its last will
    assert health(T + 10, state="offline", since=T - 5) == ("online", 0)  # back since the will
    assert health(T, state=None, since=None, telemetry_at=None) == ("offline", None)  # never


def test_refused_until_the_kiosk_next_connects() -> None:
    assert health(T + 30, refused_at=T + 20) == ("refused", 0)
    assert health(T + 500, refused_at=T + 20) == ("refused", 440)
    assert health(T + 30, refused_at=T + 20, telemetry_at=T + 25) == ("online", 0)
    assert health(T + 30, refused_at=T + 20, since=T + 25, telemetry_at=None) == ("online", 0)
    assert health(T + 30, state=None, since=None, telemetry_at=None, refused_at=T) == (
        "refused",
        None,
    )


def test_the_devices_view_and_the_overview_as_the_clock_moves(store_url: str) -> None:
    storage = open_storage(store_url)
    telemetry = {"v": 1, "ts": T, "up_ms": 5000, "heap_free": 48000, "rssi": -60, "outbox": 0,
                 "dropped": 0, "suppressed": 0, "config_error": None}  # fmt: skip
    status = {"v": 1, "state": "online", "fw": "1.0.0", "board": "m5stack_core", "ts": T,
              "up_ms": 1000, "config_error": None}  # fmt: skip
    storage.write_batch([], [], [
        DeviceStatus(STORE, d, status, T, False) for d in ("till-1", "till-2", "till-3")
    ] + [
        DeviceStatus(STORE, d, telemetry, T, True) for d in ("till-1", "till-2", "till-3")
    ] + [DeviceStatus(STORE, "till-2", {"telemetry_interval_s": 10}, T, False)])  # fmt: skip
    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T + 15))) as clock:
        rows = {d["device"]: views.device_row(d) for d in storage.devices(STORE)}
        assert {k: (r["health"], r["late_s"]) for k, r in rows.items()} == {
            "till-1": ("online", 0), "till-2": ("online", 5), "till-3": ("online", 0),
        }  # fmt: skip
        clock.tick(6)  # till-2, every 10 s, has been silent for more than 20 s
        now = int(time.time())
        assert views.overview(storage, DEFAULT, STORE, now)["kiosks_down"] == ["till-2"]
        clock.tick(100)  # and the other two for more than 120 s
        now = int(time.time())
        row = views.overview(storage, DEFAULT, STORE, now)
        assert row["kiosks_down"] == ["till-1", "till-2", "till-3"]
        assert row["kiosks"] == {"online": 0, "offline": 3}
        line = views.device_line(views.device_row(storage.devices(STORE)[0]), now)
        assert line.startswith(f"{STORE}/till-1: offline, silent since ")


# -- the broker's log ----------------------------------------------------------------------------

# What mosquitto 2.0.11 publishes on $SYS/broker/log/N (found by running it, see below).
ACCEPTED = "1795976651: New client connected from {} as {} (p2, c1, k60, u'{}')."
NEW = "1795976651: New connection from {} on port 1883."
REFUSED = "1795976651: Client <unknown> disconnected, not authorised."


def test_a_refusal_is_paired_with_its_connection_and_the_kiosk_last_seen_there() -> None:
    log = BrokerLog()
    lines = [
        NEW.format("10.0.0.7:5001"),
        ACCEPTED.format("10.0.0.7:5001", "store-12/till-2", "store-12/till-2"),
        NEW.format("10.0.0.8:6001"),
        ACCEPTED.format("10.0.0.8:6001", "store-12/till-1", "store-12/till-1"),
        NEW.format("10.0.0.9:7001"),
        ACCEPTED.format("10.0.0.9:7001", "kiosk-host", "kiosk-host"),
    ]
    assert [k for line in lines for k in log.read(line, T)] == []
    assert log.read(NEW.format("10.0.0.7:5002"), T + 5) == []
    assert log.read(REFUSED, T + 5) == [("store-12", "till-2")]
    # two connections from two addresses waiting: which one was refused is not known
    log.read(NEW.format("10.0.0.7:5003"), T + 6)
    log.read(NEW.format("10.0.0.8:6002"), T + 6)
    assert log.read(REFUSED, T + 6) == []
    # a stranger's address, and a connection that waited too long, name nobody
    log.read(NEW.format("192.168.1.50:4000"), T + 100)
    assert log.read(REFUSED, T + 100) == []
    # a broker that names the client in its refusal
    named = "1795976651: Client store-12/till-3 [10.0.0.3:1234] disconnected: not authorised."
    assert log.read(named, T + 101) == [("store-12", "till-3")]


def test_kiosks_behind_one_address_are_not_told_apart() -> None:
    log = BrokerLog()
    for device, port in (("till-1", 1), ("till-2", 2)):
        log.read(ACCEPTED.format(f"203.0.113.5:{port}", f"{STORE}/{device}", device), T)
    log.read(NEW.format("203.0.113.5:3"), T)
    assert log.read(REFUSED, T) == []


# -- end to end, with the broker the product ships -----------------------------------------------


def kiosk(broker: Mosquitto, device: str, password: str, source: str) -> paho.Client:
    """A kiosk's MQTT session as its firmware opens it: its account, the id `store/device`."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{STORE}/{device}")
    c.username_pw_set(f"{STORE}/{device}", password)
    connected = []
    c.on_connect = lambda *args: connected.append(args[3])
    c.connect(broker.host, broker.port, bind_address=source)
    c.loop_start()
    wait_until(lambda: bool(connected), 10, f"{device} connected")
    assert not connected[0].is_failure, connected
    return c


def say(c: paho.Client, device: str, channel: str, payload: dict[str, Any], retain: bool) -> None:
    topic = f"kiosk/v1/{STORE}/{device}/{channel}"
    c.publish(topic, json.dumps(payload), 1, retain).wait_for_publish(10)


def refused_connect(broker: Mosquitto, device: str, password: str) -> int:
    """One connection attempt as the kiosk, by mosquitto's own client; its exit code."""
    tool = shutil.which("mosquitto_pub") or "mosquitto_pub"
    return subprocess.run(
        [tool, "-h", broker.host, "-p", str(broker.port), "-i", f"{STORE}/{device}",
         "-u", f"{STORE}/{device}", "-P", password, "-t", "x", "-m", "x"],
        capture_output=True, timeout=10,
    ).returncode  # fmt: skip


class Ends:
    """Something the test started, for the `closing` fixture to end."""

    def __init__(self, end: Callable[[], object]) -> None:
        self.end = end

    def close(self) -> None:
        self.end()


@pytest.mark.e2e  # a broker of its own with accounts, the aggregator and mosquitto_pub
def test_a_kiosk_with_a_wrong_password_shows_refused_and_a_silent_one_offline(
    tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    users = {"kiosk-host": "host-pw", "kiosk-fleet": "fleet-pw",
             f"{STORE}/till-1": "one-pw", f"{STORE}/till-2": "two-pw"}  # fmt: skip
    broker = closing(Mosquitto(tmp_path / "broker", users=users))
    broker.start()
    db = tmp_path / "kiosk.db"
    ingest = Ingest(f"mqtt://kiosk-host:host-pw@{broker.host}:{broker.port}", db)
    subscribed = suback(ingest.client)
    ingest.start()
    closing(Ends(ingest.stop))
    assert subscribed.wait(10)
    storage = closing(Storage(db))

    def devices() -> dict[str, dict[str, Any]]:
        return {d["device"]: d for d in storage.devices(STORE)}

    # the fleet tools set till-1's telemetry to every 10 s (its retained config)
    fleet = paho.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-fleet")
    fleet.username_pw_set("kiosk-fleet", "fleet-pw")
    fleet.connect(broker.host, broker.port)
    fleet.loop_start()
    closing(Ends(fleet.loop_stop))
    examples = json.loads((MQTT_SCHEMAS / "examples" / "config.json").read_text())
    config = {**examples["valid"][0]["payload"], "telemetry_interval_s": 10}
    say(fleet, "till-1", "config", config, True)

    # two kiosks connect, each from an address of its own, and say they are well
    status = {"v": 1, "state": "online", "fw": "1.0.0", "board": "m5stack_core", "ts": T,
              "up_ms": 1000, "config_error": None}  # fmt: skip
    telemetry = {"v": 1, "ts": T, "up_ms": 5000, "heap_free": 48000, "rssi": -60, "outbox": 0,
                 "dropped": 0, "suppressed": 0, "config_error": None}  # fmt: skip
    one = kiosk(broker, "till-1", "one-pw", "127.0.0.2")
    two = kiosk(broker, "till-2", "two-pw", "127.0.0.1")
    for c, device in ((one, "till-1"), (two, "till-2")):
        say(c, device, "status", status, True)
        say(c, device, "telemetry", telemetry, False)
    wait_until(lambda: all(d["telemetry_at"] for d in devices().values()) and len(devices()) == 2
               and devices()["till-1"]["interval_s"] == 10, 20, "both kiosks heard")  # fmt: skip
    heard = devices()["till-1"]["telemetry_at"]
    assert views.device_row(devices()["till-1"], heard + 20)["health"] == "online"
    # till-1 is switched off: nothing more comes; two of its 10 s intervals later it is down
    one.loop_stop()
    one.socket().close()  # the power goes: no DISCONNECT, the broker's keepalive still runs
    row = views.overview(storage, DEFAULT, STORE, heard + 21)
    assert row["kiosks_down"] == ["till-1"] and row["kiosks"] == {"online": 1, "offline": 1}

    # till-2's account gets a new password; the kiosk, still on the old one, is refused
    two.disconnect()
    two.loop_stop()
    passwd = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
    subprocess.run(
        [passwd, "-b", str(broker.dir / "passwd"), f"{STORE}/till-2", "new-pw"], check=True
    )
    broker.reload()
    wait_until(lambda: refused_connect(broker, "till-2", "two-pw") != 0, 10, "the new password")
    wait_until(lambda: devices()["till-2"]["refused_at"] is not None, 20, "the refusal stored")
    now = max(int(time.time()), heard + 21)  # till-1 still silent
    shown = views.kiosk_health(storage, STORE, now)
    assert {d["device"]: d["health"] for d in shown} == {"till-1": "offline", "till-2": "refused"}
    assert views.overview(storage, DEFAULT, STORE, now)["kiosks_down"] == ["till-1", "till-2"]

    # flashed with the new password, it connects again: no longer refused
    again = kiosk(broker, "till-2", "new-pw", "127.0.0.1")
    closing(Ends(again.loop_stop))
    say(again, "till-2", "telemetry", {**telemetry, "up_ms": 9000}, False)
    wait_until(lambda: devices()["till-2"]["telemetry"]["up_ms"] == 9000, 20, "its telemetry")
    assert views.device_row(devices()["till-2"], int(time.time()))["health"] == "online"
