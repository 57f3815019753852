"""`kiosk-host demo`: its script, its embedded broker, and the whole demo run for real."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.demo.broker import EmbeddedBroker
from kiosk_host.demo.run import (
    KIOSKS,
    STORES_FILE,
    STORY,
    Confirm,
    Fix,
    Rate,
    code_on_screen,
    customers,
    scaled_stores,
    script,
)
from kiosk_host.rules.stores import parse_stores
from tests.broker import free_port
from tests.virtual_kiosks import KIOSK_HOST, wait_until

STORES = ("store-north", "store-south")

# --- the script -------------------------------------------------------------------------------


def test_the_story_opens_five_cases_recovers_four_and_leaves_one_to_breach() -> None:
    opened = {(s.store, s.case): s.at for s in STORY if isinstance(s, Rate) and s.case}
    assert len(opened) == 5
    verdicts = [(s.store, s.case, s.verdict) for s in STORY if isinstance(s, Confirm)]
    last = {(store, case): v for store, case, v in verdicts}
    assert sorted(last.values()) == ["fixed", "wow", "wow", "wow"]
    assert ("store-south", "wrong-size", "not_fixed") in verdicts  # "Not yet" first
    (left,) = set(opened) - set(last)
    assert left == ("store-north", "lost-parcel")
    window = parse_stores(STORES_FILE.read_text()).get("store-north").window_s
    assert opened[left] + window < 5 * 60  # it breaches within the demo's five minutes
    for s in STORY:
        if isinstance(s, Fix | Confirm):
            assert (s.store, s.case) in opened and opened[(s.store, s.case)] < s.at
            assert s.at < opened[(s.store, s.case)] + window  # in time, with the 3-minute window
        if isinstance(s, Confirm):
            fixes = [f.at for f in STORY if isinstance(f, Fix) and f.case == s.case]
            assert any(at < s.at for at in fixes)  # staff fixed it before the customer came
        if isinstance(s, Rate | Confirm):
            assert any((k.store, k.device) == (s.store, s.device) for k in KIOSKS)


def test_the_script_is_in_time_order_and_keeps_customers_off_story_kiosks() -> None:
    steps = script(5)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert all(s in steps for s in STORY)
    crowd = [s for s in steps if s not in STORY]
    assert len(crowd) > 60 and all(isinstance(s, Rate) and s.case is None for s in crowd)
    for c in crowd:
        assert isinstance(c, Rate)
        for s in STORY:
            if isinstance(s, Rate | Confirm) and (s.store, s.device) == (c.store, c.device):
                assert abs(s.at - c.at) >= 10
    assert script(5) == steps  # the same every run
    scores = [c.score for c in customers(5)]
    assert scores.count(4) > len(scores) / 2 and min(scores) == 1  # mostly happy, some not


def test_every_station_of_the_demo_stores_has_a_kiosk() -> None:
    stores = parse_stores(STORES_FILE.read_text())
    for store in {k.store for k in KIOSKS}:
        cfg = stores.get(store)
        assert store in stores and cfg.scale == 4 and cfg.low_threshold == 2
        stations = {e.station for e in cfg.roster}
        assert stations == {k.device for k in KIOSKS if k.store == store}
        assert {e.staff for e in cfg.roster} == {staff for staff, _ in cfg.names}


@pytest.mark.parametrize(
    ("speed", "window", "near"), [(1, 3, 1), (2, 2, 0), (3, 1, 0), (4, 1, 0), (0.5, 6, 2)]
)
def test_a_faster_demo_has_shorter_windows_in_whole_minutes(
    speed: float, window: int, near: int
) -> None:
    stores = parse_stores(scaled_stores(STORES_FILE.read_text(), speed))
    for store in ("store-north", "store-south"):
        assert (stores.get(store).window_minutes, stores.get(store).near_minutes) == (window, near)
    assert stores.get("store-south").tz_name == "Europe/Lisbon"  # the rest as it was


def test_the_code_is_read_off_the_code_screen() -> None:
    assert code_on_screen("Your code | B7KQ | Show it to our staff", "B") == "B7KQ"
    assert code_on_screen("Your code | B7KQ | Show it to our staff", "A") is None
    assert code_on_screen("Your code | BOKQ | Show it", "B") is None  # no O in codes


# --- the embedded broker with the aggregator's kind of session --------------------------------


class Client:
    """A paho client that keeps what it receives and, when `manual`, acknowledges only when
    told, as the aggregator does after its commit."""

    def __init__(self, port: int, client_id: str, *, clean: bool, manual: bool = False,
                 will: tuple[str, bytes] | None = None) -> None:  # fmt: skip
        self.got: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.manual_ack_set(manual)
        if will:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        wait_until(c.is_connected, 10, f"{client_id} connected")
        self.client = c

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append(msg)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.got]

    def subscribe(self, topic: str) -> None:
        result, _ = self.client.subscribe(topic, 1)
        assert result == 0
        time.sleep(0.3)  # the SUBACK

    def ack_all(self) -> None:
        with self.lock:
            for m in self.got:
                self.client.ack(m.mid, m.qos)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def leave(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def crash(self) -> None:
        """The connection drops with no DISCONNECT and nothing acknowledged, as on kill -9."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(free_port(), tmp_path / "state.json", tmp_path / "broker.log")
    b.start()
    yield b
    b.stop()


def test_a_persistent_session_gets_what_was_sent_while_it_was_away(
    broker: EmbeddedBroker,
) -> None:
    aggregator = Client(broker.port, "agg", clean=False, manual=True)
    aggregator.subscribe("kiosk/v1/#")
    aggregator.leave()
    kiosk = Client(broker.port, "s/k", clean=True)
    kiosk.publish("kiosk/v1/s/k/event", b"while away")
    back = Client(broker.port, "agg", clean=False, manual=True)
    wait_until(lambda: back.payloads() == [b"while away"], 10, "the message kept for it")
    assert not back.got[0].retain  # as it was sent
    back.ack_all()
    back.leave()
    kiosk.leave()


def test_what_the_subscriber_received_but_did_not_acknowledge_comes_again(
    broker: EmbeddedBroker,
) -> None:
    aggregator = Client(broker.port, "agg", clean=False, manual=True)
    aggregator.subscribe("kiosk/v1/#")
    kiosk = Client(broker.port, "s/k", clean=True)
    kiosk.publish("kiosk/v1/s/k/event", b"not stored yet")
    wait_until(lambda: aggregator.payloads() == [b"not stored yet"], 10, "the delivery")
    time.sleep(6)  # longer than amqtt's own 5 s wait for a PUBACK
    aggregator.crash()
    back = Client(broker.port, "agg", clean=False, manual=True)
    wait_until(lambda: back.payloads() == [b"not stored yet"], 20, "the redelivery")
    assert back.got[0].dup
    back.ack_all()
    time.sleep(0.5)
    back.leave()
    again = Client(broker.port, "agg", clean=False, manual=True)
    time.sleep(1.0)
    assert again.payloads() == []  # acknowledged: gone
    again.leave()
    kiosk.leave()


def test_retained_messages_and_the_last_will(broker: EmbeddedBroker) -> None:
    kiosk = Client(broker.port, "s/k", clean=False, will=("kiosk/v1/s/k/status", b"offline"))
    kiosk.publish("kiosk/v1/s/k/status", b"online", retain=True)
    watcher = Client(broker.port, "watch", clean=True)
    watcher.subscribe("kiosk/v1/+/+/status")
    wait_until(lambda: watcher.payloads() == [b"online"], 10, "the retained status")
    assert watcher.got[0].retain
    kiosk.crash()
    wait_until(lambda: watcher.payloads() == [b"online", b"offline"], 10, "the last will")
    late = Client(broker.port, "late", clean=True)
    late.subscribe("kiosk/v1/+/+/status")
    wait_until(lambda: late.payloads() == [b"offline"], 10, "the will, retained")
    watcher.leave()
    late.leave()


def test_a_restarted_broker_keeps_sessions_waiting_messages_and_retained(
    tmp_path: Path,
) -> None:
    port = free_port()
    state = tmp_path / "state.json"
    first = EmbeddedBroker(port, state, tmp_path / "broker.log")
    first.start()
    aggregator = Client(port, "agg", clean=False, manual=True)
    aggregator.subscribe("kiosk/v1/#")
    aggregator.leave()
    kiosk = Client(port, "s/k", clean=True)
    kiosk.publish("kiosk/v1/s/summary", b"retained", retain=True)
    kiosk.publish("kiosk/v1/s/k/event", b"queued")
    kiosk.leave()
    first.stop()
    assert json.loads(state.read_text())["sessions"][0]["client_id"] == "agg"
    second = EmbeddedBroker(port, state, tmp_path / "broker.log")
    second.start()
    try:
        back = Client(port, "agg", clean=False, manual=True)
        wait_until(lambda: b"queued" in back.payloads(), 10, "the queued message")
        back.ack_all()
        back.leave()
        late = Client(port, "late", clean=True)
        late.subscribe("kiosk/v1/s/summary")
        wait_until(lambda: late.payloads() == [b"retained"], 10, "the retained message")
        late.leave()
    finally:
        second.stop()


# --- the demo, for real --------------------------------------------------------------------


class DemoRun:
    """`kiosk-host demo` in fast mode in its own process; its output is collected."""

    def __init__(self, var: Path, mqtt_port: int, http_port: int) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(KIOSK_HOST), "demo", "--speed", "4", "--minutes", "4", "--var", str(var),
             "--mqtt-port", str(mqtt_port), "--http-port", str(http_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def said(self, words: str) -> bool:
        return any(words in line for line in self.lines)

    def wait_said(self, words: str, timeout: float) -> None:
        def check() -> bool:
            if self.proc.poll() is not None and not self.said(words):
                raise AssertionError("the demo ended:\n" + "\n".join(self.lines))
            return self.said(words)

        wait_until(check, timeout, f"the demo to say {words!r}")

    def descendants(self) -> set[int]:
        """The demo's process and every process under it, from /proc."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
        found = {self.proc.pid}
        while True:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            if not more:
                return found
            found |= more

    def interrupt(self) -> None:
        """Ctrl-C, and wait until the demo has stopped everything it started."""
        self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(120) == 0, "\n".join(self.lines)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def alive(pid: int) -> bool:
    """Whether a process is there and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def cli(db: Path, *args: str) -> Any:
    out = subprocess.run(
        [str(KIOSK_HOST), *args, "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cases(db: Path) -> dict[str, dict[str, Any]]:
    """Every case of the demo's stores by store and code."""
    return {
        f"{store}/{c['code']}": c
        for store in STORES
        for c in cli(db, "cases", "list", "--store", store)
    }


def online(db: Path) -> int:
    return sum(1 for d in cli(db, "devices") if d["state"] == "online")


def states(found: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(c["state"] for c in found.values())


@pytest.mark.timeout(900)
def test_the_demo_recovers_cases_breaches_one_stops_cleanly_and_carries_on(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    db = var / "demo.db"
    mqtt_port, http_port = free_port(), free_port()
    first = DemoRun(var, mqtt_port, http_port)
    try:
        first.wait_said(f"Dashboard: http://127.0.0.1:{http_port}/", 180)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=30) as page:
            assert page.status == 200
        wait_until(lambda: online(db) == 6, 30, "six kiosks online")
        # The story: four cases recovered in time (three Wow!, one Fixed), one breached.
        expected = ["breached", "recovered", "wow", "wow", "wow"]
        wait_until(lambda: states(cases(db)) == expected, 300, f"the cases to be {expected}")
        done = cases(db)
        assert all(c["fixed_by"] for c in done.values() if c["state"] != "breached")
        assert sum(c["escalations"] for c in done.values()) == 1  # one "Not yet" on the way
        alerts = [
            a["type"] for store in STORES for a in cli(db, "alerts", "list", "--store", store)
        ]
        assert alerts.count("case_opened") == 5 and alerts.count("breached") == 1
        assert first.said("ALERT store-north breached")
        ratings = sum(
            r["ratings"]
            for s in STORES
            for r in cli(db, "report", "--store", s, "--period", "week")
        )
        assert ratings > 50
        processes = first.descendants()
        assert len(processes) >= 8  # the demo, the aggregator and six kiosks
    finally:
        first.interrupt()
    still = [pid for pid in processes if alive(pid)]
    assert still == [], f"left running: {still}"
    assert first.said("Stopped.")
    assert sorted(d["state"] for d in cli(db, "devices")) == ["offline"] * 6  # their last will
    broker = json.loads((var / "broker" / "state.json").read_text())
    assert "kiosk-host-demo" in {s["client_id"] for s in broker["sessions"]}

    second = DemoRun(var, mqtt_port, http_port)
    try:
        second.wait_said(f"Dashboard: http://127.0.0.1:{http_port}/", 180)
        assert second.said("carrying on with the data in")
        wait_until(lambda: len(cases(db)) > len(done), 120, "a new case on top of the old ones")
        again = cases(db)
        assert {key: again[key]["state"] for key in done} == {
            key: c["state"] for key, c in done.items()
        }
        more = sum(
            r["ratings"]
            for s in STORES
            for r in cli(db, "report", "--store", s, "--period", "week")
        )
        assert more > ratings
        wait_until(lambda: online(db) == 6, 30, "six kiosks online again")
        processes = second.descendants()
    finally:
        second.interrupt()
    still = [pid for pid in processes if alive(pid)]
    assert still == [], f"left running: {still}"
