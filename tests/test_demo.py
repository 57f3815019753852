"""`kiosk-host demo`: its script, its private mosquitto, and the whole demo run for real."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host import __version__
from kiosk_host.demo import broker as demo_broker
from kiosk_host.demo.broker import (
    LISTENER_KEYS,
    MISSING,
    PLACEMENT_KEYS,
    SHIPPED_CONF,
    BrokerError,
    Mosquitto,
    demo_config,
)
from kiosk_host.demo.processes import CLIENT_ID
from kiosk_host.demo.run import (
    KIOSKS,
    STORES_FILE,
    STORY,
    SWITCHED_OFF,
    Confirm,
    Fix,
    N,
    Rate,
    S,
    Update,
    code_on_screen,
    customers,
    scaled_stores,
    script,
)
from kiosk_host.errors import UserError
from kiosk_host.rules.stores import parse_stores
from kiosk_host.wire.topics import topic, topic_filter
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


def test_the_story_updates_one_store_over_the_air_before_its_kiosk_is_switched_off() -> None:
    (update,) = [s for s in STORY if isinstance(s, Update)]
    assert update.store in STORES and update in script(5)
    # its last kiosk is switched off only once the customers are done: long after the update
    assert update.at < max(s.at for s in STORY) / 2


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
    assert code_on_screen("Your code | B7KQU | Show it to our staff", "B") == "B7KQU"
    assert code_on_screen("Your code | B7KQU | Show it to our staff", "A") is None
    assert code_on_screen("Your code | BOKQ | Show it", "B") is None  # no O in codes


# --- the demo's broker: a private mosquitto ---------------------------------------------------


def directives(text: str) -> list[tuple[str, str]]:
    return [
        (w[0], w[1].strip() if len(w) > 1 else "")
        for w in (line.split(None, 1) for line in text.splitlines())
        if w and not w[0].startswith("#")
    ]


def test_the_demo_broker_runs_the_shipped_settings_on_loopback(tmp_path: Path) -> None:
    shipped = directives(SHIPPED_CONF.read_text())
    made = directives(demo_config(SHIPPED_CONF.read_text(), 18830, tmp_path, tmp_path / "b.log"))
    listeners = [i for i, (key, _) in enumerate(made) if key == "listener"]
    assert [made[i] for i in listeners] == [("listener", "18830 127.0.0.1")]  # the only one
    assert listeners[0] == len(made) - 1  # last: every setting above it is a global one
    kept = [(k, v) for k, v in shipped if k not in PLACEMENT_KEYS | LISTENER_KEYS]
    assert kept and made[: len(kept)] == kept  # every queue and persistence setting as shipped
    assert ("max_queued_messages", "1000000") in kept and ("persistence", "true") in kept
    own = dict(made[len(kept) :])
    assert own["persistence_location"] == f"{tmp_path}/"
    logs = [v for k, v in made[len(kept) :] if k == "log_dest"]
    assert logs == [f"file {tmp_path / 'b.log'}", "topic"]  # the topic: refused kiosks' notices
    assert own["allow_anonymous"] == "true"  # the demo's kiosks have no accounts
    assert not {"password_file", "acl_file"} & {k for k, _ in made}


def test_listener_settings_stay_with_their_listener() -> None:
    shipped = """
listener 1883
max_connections 500
max_queued_messages 7
listener 8883
certfile /etc/broker.crt
keyfile /etc/broker.key
max_connections 5
allow_anonymous false
password_file /etc/passwd
set_tcp_nodelay true
"""
    made = directives(demo_config(shipped, 18830, Path("/var/x"), Path("/var/x/b.log")))
    at = made.index(("listener", "18830 127.0.0.1"))
    assert ("max_queued_messages", "7") in made[:at] and ("set_tcp_nodelay", "true") in made[:at]
    assert made[at + 1 :] == [("max_connections", "500")]  # the plain listener's, not TLS's
    assert not {"certfile", "keyfile", "password_file"} & {k for k, _ in made}
    assert ("allow_anonymous", "true") in made and ("allow_anonymous", "false") not in made


class Client:
    """A paho client that keeps what it receives; `subscribe` returns at the SUBACK."""

    def __init__(self, port: int, client_id: str, *, clean: bool) -> None:
        self.got: list[bytes] = []
        self.lock = threading.Lock()
        self.subacks: set[int] = set()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        wait_until(c.is_connected, 10, f"{client_id} connected")
        self.client = c

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append(msg.payload)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:
        with self.lock:
            self.subacks.add(mid)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return list(self.got)

    def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, 1)
        assert result == 0
        wait_until(lambda: mid in self.subacks, 10, f"the SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def leave(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_private_mosquitto_keeps_the_aggregators_session_over_a_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    broker = Mosquitto(port, tmp_path / "broker", tmp_path / "logs" / "broker.log")
    event = topic("event", store="s", device="k")
    broker.start()
    try:
        aggregator = Client(port, CLIENT_ID, clean=False)
        aggregator.subscribe(topic_filter("event"))
        aggregator.leave()
        kiosk = Client(port, "s/k", clean=True)
        kiosk.publish(event, b"while away")
        kiosk.leave()
    finally:
        assert broker.stop() == 0  # SIGTERM: it saves its database and exits
    assert (tmp_path / "broker" / "mosquitto.db").exists()
    assert "mosquitto version" in (tmp_path / "logs" / "broker.log").read_text()
    broker.start()  # the next run of the demo
    try:
        back = Client(port, CLIENT_ID, clean=False)
        wait_until(lambda: back.payloads() == [b"while away"], 10, "the message kept for it")
        back.leave()
    finally:
        broker.stop()


def test_a_mosquitto_that_cannot_start_says_where_its_log_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "mosquitto.conf"
    shipped.write_text(SHIPPED_CONF.read_text() + "no_such_setting 1\n")
    monkeypatch.setattr(demo_broker, "SHIPPED_CONF", shipped)
    log = tmp_path / "logs" / "broker.log"
    broker = Mosquitto(free_port(), tmp_path / "broker", log)
    with pytest.raises(BrokerError, match=re.escape(str(log))):
        broker.start()
    assert not broker.running()


def test_without_mosquitto_the_demo_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_broker.shutil, "which", lambda *a, **k: None)
    with pytest.raises(UserError, match=re.escape(MISSING)):
        Mosquitto(free_port(), tmp_path, tmp_path / "broker.log")
    assert MISSING == "the demo needs mosquitto: apt-get install mosquitto (make demo installs it)"


# --- the demo, for real --------------------------------------------------------------------


class DemoRun:
    """`kiosk-host demo` in fast mode in its own process; its output is collected."""

    def __init__(self, var: Path, mqtt_port: int, http_port: int) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(KIOSK_HOST), "demo", "--speed", "4", "--minutes", "4", "--var", str(var),
             "--mqtt-port", str(mqtt_port), "--http-port", str(http_port),
             "--smtp-port", str(free_port())],
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

    def interrupt(self) -> float:
        """Ctrl-C, and wait until the demo has stopped everything it started; how long that
        took, in seconds."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(120) == 0, "\n".join(self.lines)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return time.monotonic() - started


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


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


@pytest.mark.slow
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
        # A new release goes over the air to one store's three kiosks, one canary first, while
        # the customers keep tapping: built, then each kiosk receives, switches and confirms.
        first.wait_said("Update: release ", 120)
        updated = [k.device for k in KIOSKS if k.store == S]
        for device in updated:
            first.wait_said(f"Update: {S}/{device} receiving the release", 120)
            first.wait_said(f"Update: {S}/{device} every file received and checked", 120)
            first.wait_said(f"Update: {S}/{device} restarted on ", 120)
        first.wait_said("Update: every kiosk of the store runs ", 60)
        (built,) = [line for line in first.lines if "Update: release " in line]
        new = built.split("Update: release ")[1].split()[0]
        assert new.startswith(__version__ + "+")
        assert [line.split(maxsplit=1)[1] for line in first.lines if f": runs {new}" in line] == [
            f"{S}/{device}: runs {new}" for device in sorted(updated)
        ]
        # The story: four cases recovered in time (three "Yes, wow!", one "Yes"), one breached
        # and then fixed late by staff: unconfirmed, overdue, still listed.
        expected = ["recovered", "unconfirmed", "wow", "wow", "wow"]
        wait_until(lambda: states(cases(db)) == expected, 300, f"the cases to be {expected}")
        first.wait_said("fixed late: overdue, listed until a manager closes it", 60)
        done = cases(db)
        assert all(c["fixed_by"] for c in done.values())
        (late,) = [c for c in done.values() if c["state"] == "unconfirmed"]
        assert late.get("late") is True and late["overdue"] is True
        assert sum(c["escalations"] for c in done.values()) == 1  # one "Not yet" on the way
        alerts = [
            a["type"] for store in STORES for a in cli(db, "alerts", "list", "--store", store)
        ]
        assert alerts.count("case_opened") == 5 and alerts.count("breached") == 1
        assert first.said("ALERT store-north breached")
        # ... and the managers were told by e-mail, in their store's language, kept as files
        assert first.said("Mail: the managers' e-mails go to a mail server of the demo's own")
        wait_until(lambda: first.said("MAIL to manager@store-north.example"), 60, "a mail")
        assert any("Neuer Fall" in line for line in first.lines)  # store-north speaks German
        assert len(list((var / "mail").glob("*.eml"))) >= 5
        sent = cli(db, "alerts", "deliveries", "--store", N)
        assert sent and {d["to"] for d in sent} == {"manager@store-north.example"}
        assert {d["state"] for d in sent} <= {"delivered", "pending"}
        ratings = sum(
            r["ratings"]
            for s in STORES
            for r in cli(db, "report", "--store", s, "--period", "week")
        )
        assert ratings > 50
        # Near the end a kiosk is switched off: the overview names it down within two of its
        # telemetry intervals (its silence), and only it.
        first.wait_said("is switched off", 240)
        first.wait_said("The overview names {}/{} down".format(*SWITCHED_OFF), 120)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/stores", timeout=30) as r:
            down = {row["store"]: row["kiosks_down"] for row in json.load(r)["stores"]}
        assert down == {N: [], S: ["help-desk"]} and SWITCHED_OFF == (S, "help-desk")
        processes = first.descendants()
        assert len(processes) >= 9  # the demo, mosquitto, the aggregator and six kiosks
        programs = [Path(command_line(pid)[0]).name for pid in processes if command_line(pid)]
        assert "mosquitto" in programs
    finally:
        took = first.interrupt()
    still = [pid for pid in processes if alive(pid)]
    assert still == [], f"left running: {still}"
    assert took < 10, f"Ctrl-C took {took:.1f} s to stop the demo"
    assert first.said("Stopped.")
    assert sorted(d["state"] for d in cli(db, "devices")) == ["offline"] * 6  # their last will
    # mosquitto saved the aggregator's persistent session for the next run
    assert CLIENT_ID.encode() in (var / "broker" / "mosquitto.db").read_bytes()

    second = DemoRun(var, mqtt_port, http_port)
    try:
        second.wait_said(f"Dashboard: http://127.0.0.1:{http_port}/", 180)
        assert second.said("carrying on with the data in")
        second.wait_said("Update: every kiosk of the store runs ", 180)
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
