"""The kiosk on the network: the real firmware as a virtual kiosk against a real mosquitto.

Every press must arrive, once per seq and in order, through broker restarts, Wi-Fi outages
and power cuts; every message the kiosk publishes must fit the contract.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.shipped import ROOT
from kiosk_host.sim.screen_lines import parse_screen
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import check_character
from tests.broker import Mosquitto
from tests.virtual_kiosks import KIOSK_HOST, VirtualKiosk, Watcher, first_seen, wait_until

pytestmark = pytest.mark.e2e  # separate processes end to end: make test runs these

CONFIG = {
    "v": 1, "prompt": "How was your visit?", "language": "en", "scale": 4, "low_threshold": 2,
    "response_interval_s": 0, "follow_up_timeout_s": 20, "code_display_s": 5,
    "confirm_timeout_s": 60, "telemetry_interval_s": 10, "station": "till-1", "staff": [],
}  # fmt: skip


@pytest.fixture
def watch() -> Iterator[Callable[..., Watcher]]:
    """Makes paho watchers that are closed when the test ends."""
    made: list[Watcher] = []

    def make(*args: Any) -> Watcher:
        made.append(Watcher(*args))
        return made[-1]

    yield make
    for watcher in made:
        watcher.close()


@pytest.fixture
def start() -> Iterator[Callable[..., VirtualKiosk]]:
    """Starts virtual kiosks that are killed when the test ends."""
    made: list[VirtualKiosk] = []

    def make(*args: Any, **kwargs: Any) -> VirtualKiosk:
        made.append(VirtualKiosk(*args, **kwargs))
        return made[-1]

    yield make
    for kiosk in made:
        kiosk.kill()


def publish(watcher: Watcher, topic: str, payload: dict[str, Any], retain: bool = False) -> None:
    watcher.client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(10)


def gone(watcher: Watcher) -> bool:
    """The kiosk's last will is in: the broker saw its connection go."""
    return any(json.loads(p)["state"] == "offline" for _, p, _ in watcher.on("/status"))


def net_down(kiosk: VirtualKiosk, watcher: Watcher) -> None:
    """Wi-Fi off, and until the kiosk's link has dropped its connection (its last will)."""
    kiosk.send("net down")
    wait_until(lambda: gone(watcher), 15, "the kiosk's link to drop (its last will)")


def handled(kiosk: VirtualKiosk, watcher: Watcher, store: str, cid: str) -> None:
    """Until the kiosk has handled every command sent to it before: an identify command sent
    now comes after them, and the kiosk shows it. Its one second on the screen outlasts the
    delay of a reboot (500 ms)."""
    identify = {"v": 1, "cmd": "identify", "id": cid, "ts": 1763900000, "seconds": 1}
    publish(watcher, f"kiosk/v1/{store}/till-1/cmd", identify)
    kiosk.wait_screen("identify", text="till-1")
    kiosk.wait_screen("idle", timeout=10)


def test_every_message_the_kiosk_publishes_fits_the_contract(
    fresh_mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(fresh_mosquitto.url)
    kiosk = start(fresh_mosquitto.url, tmp_path)
    kiosk.wait_screen("idle")
    wait_until(lambda: len(watcher.on("/telemetry")) >= 1, 15, "telemetry")
    kiosk.send("press 4", "press 2", "press 4")  # a happy rating; a low one, accepted
    wait_until(lambda: len(watcher.events()) == 3, 15, "three events")
    kiosk.kill()
    wait_until(lambda: gone(watcher), 30, "the last will")
    contract = Contract.load()
    shapes = set()
    for topic, payload, _ in watcher.messages:
        result = contract.validate(topic, payload)
        assert isinstance(result, Message), f"{result}: {topic} {payload!r}"
        shapes.add(result.shape)
    assert {"rating", "follow_up", "status", "status_will", "telemetry"} <= shapes
    rating, low, follow_up = watcher.events()
    assert (rating["score"], low["score"], follow_up["accepted"]) == (4, 2, True)


@pytest.mark.slow  # a load test: 500 presses, the broker restarted among them
def test_a_broker_restart_in_the_middle_of_500_presses_loses_nothing(
    fresh_mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(fresh_mosquitto.url)
    kiosk = start(fresh_mosquitto.url, tmp_path)
    kiosk.wait_screen("idle")
    kiosk.send(*["press 4"] * 250)
    wait_until(lambda: kiosk.count("thanks") >= 120, 60, "the first presses")
    fresh_mosquitto.restart()
    kiosk.send(*["press 3"] * 250)
    wait_until(lambda: kiosk.count("thanks") == 500, 120, "500 presses")
    wait_until(lambda: len(set(watcher.seqs())) == 500, 120, "500 events at the watcher")
    assert first_seen(watcher.seqs()) == list(range(1, 501))


@pytest.mark.slow  # a load test: 2,000 presses held in the outbox, then drained
def test_2000_presses_offline_then_every_one_arrives_in_order(
    mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(mosquitto.url, "kiosk/v1/offline/till-1/#", "watch-offline")
    kiosk = start(mosquitto.url, tmp_path, store="offline")
    kiosk.wait_screen("idle")
    wait_until(lambda: len(watcher.on("/status")) >= 1, 15, "the kiosk online")
    net_down(kiosk, watcher)
    kiosk.send(*["press 4"] * 2000)
    wait_until(lambda: kiosk.count("thanks") == 2000, 240, "2000 thank-yous")
    assert watcher.seqs() == []  # nothing got out while the link was down
    kiosk.send("net up")
    wait_until(lambda: len(set(watcher.seqs())) == 2000, 240, "2000 events after net up")
    assert first_seen(watcher.seqs()) == list(range(1, 2001))


@pytest.mark.slow  # a load test: 400 presses held, the power cut in the middle of their drain
def test_a_power_cut_during_the_drain_loses_nothing_shown_as_captured(
    mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(mosquitto.url, "kiosk/v1/cut/till-1/#", "watch-cut")
    kiosk = start(mosquitto.url, tmp_path, store="cut")
    kiosk.wait_screen("idle")
    wait_until(lambda: len(watcher.on("/status")) >= 1, 15, "the kiosk online")
    net_down(kiosk, watcher)
    kiosk.send(*["press 4"] * 400)
    wait_until(lambda: kiosk.count("thanks") == 400, 120, "400 thank-yous")
    kiosk.send("power-cut 40", "net up")  # the power goes after the 40th PUBACK
    assert kiosk.wait_exit(60) == 137
    assert len(set(watcher.seqs())) < 400  # the cut came in the middle of the drain
    kiosk.start()  # power back: the same flash
    wait_until(lambda: len(set(watcher.seqs())) == 400, 120, "all 400 after the restart")
    assert first_seen(watcher.seqs()) == list(range(1, 401))


def test_a_retained_config_changes_the_prompt_and_a_bad_one_is_refused(
    mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(mosquitto.url, "kiosk/v1/conf/till-1/#", "watch-conf")
    kiosk = start(mosquitto.url, tmp_path, store="conf")
    kiosk.wait_screen("idle")
    publish(watcher, "kiosk/v1/conf/till-1/config", CONFIG, retain=True)
    kiosk.wait_screen("idle", text="How was your visit?")
    publish(watcher, "kiosk/v1/conf/till-1/config", dict(CONFIG, scale=9), retain=True)
    kiosk.wait_screen("problem", text="Config problem | scale: expected 3..5, got 9")

    def refused() -> bool:
        states = [json.loads(p) for _, p, _ in watcher.on("/status")]
        return any(s.get("config_error") == "scale: expected 3..5, got 9" for s in states)

    wait_until(refused, 15, "the refusal on MQTT")
    kiosk.wait_screen("idle", timeout=20, text="How was your visit?")  # the old one stays
    kiosk.send("press 4")
    wait_until(lambda: len(watcher.events()) == 1, 15, "a rating under the old config")


def test_confirm_recovery_shows_the_wow_screen_and_wow_is_published_once(
    mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(mosquitto.url, "kiosk/v1/wow/till-1/#", "watch-wow")
    kiosk = start(mosquitto.url, tmp_path, store="wow")
    kiosk.wait_screen("idle")
    wait_until(lambda: len(watcher.on("/status")) >= 1, 15, "the kiosk online")
    code = "A7K3" + check_character("A7K3")
    cmd = {"v": 1, "cmd": "confirm_recovery", "id": "c-1", "ts": 1763900000, "case": code}
    publish(watcher, "kiosk/v1/wow/till-1/cmd", cmd)
    kiosk.wait_screen("confirm", text=f"Code {code}: did we make it right? | [Not yet] | "
                      "[Yes] | [Yes, wow!]")  # fmt: skip
    kiosk.send("press 4")
    kiosk.wait_screen("thanks")
    publish(watcher, "kiosk/v1/wow/till-1/cmd", cmd)  # the same command again
    handled(kiosk, watcher, "wow", "i-1")
    wait_until(lambda: len(watcher.events()) == 1, 15, "the verdict")
    (verdict,) = watcher.events()
    assert (verdict["kind"], verdict["case"], verdict["outcome"]) == (
        "recovery_confirm",
        code,
        "wow",
    )
    assert kiosk.count("confirm") == 1  # the redelivered command was not acted on again


def test_identify_shows_the_device_and_reboot_restarts_once(
    mosquitto: Mosquitto,
    tmp_path: Path,
    watch: Callable[..., Watcher],
    start: Callable[..., VirtualKiosk],
) -> None:
    watcher = watch(mosquitto.url, "kiosk/v1/ident/till-1/#", "watch-ident")
    kiosk = start(mosquitto.url, tmp_path, store="ident")
    kiosk.wait_screen("idle")
    wait_until(lambda: len(watcher.on("/status")) >= 1, 15, "the kiosk online")
    identify = {"v": 1, "cmd": "identify", "id": "i-1", "ts": 1763900000, "seconds": 2}
    publish(watcher, "kiosk/v1/ident/till-1/cmd", identify)
    kiosk.wait_screen("identify", text="till-1")
    kiosk.wait_screen("idle", timeout=10)
    reboot = {"v": 1, "cmd": "reboot", "id": "r-1", "ts": 1763900000}
    publish(watcher, "kiosk/v1/ident/till-1/cmd", reboot)
    # as the chip resets: the process starts again in place, and comes back on its own
    wait_until(lambda: kiosk.count("reboot") == 1, 15, "the restart")
    kiosk.wait_screen("idle")
    publish(watcher, "kiosk/v1/ident/till-1/cmd", reboot)  # the same command, redelivered
    handled(kiosk, watcher, "ident", "i-2")
    kiosk.send("press 4")
    wait_until(lambda: len(watcher.events()) == 1, 15, "a rating after the restart")
    assert kiosk.proc is not None and kiosk.proc.poll() is None
    assert kiosk.count("reboot") == 1  # not rebooted again


@pytest.mark.parametrize(
    ("board", "wrong", "right"), [("esp32_devkitc_ssd1306", 9, 4), ("m5stack_core", 4, 3)]
)
def test_a_button_the_kiosk_lacks_is_a_message_and_the_kiosk_carries_on(
    mosquitto: Mosquitto, tmp_path: Path, board: str, wrong: int, right: int
) -> None:
    done = subprocess.run(
        [str(KIOSK_HOST), "virtual-kiosk", "--store", "keys", "--device", "till-1",
         "--broker", mosquitto.url, "--state-dir", str(tmp_path), "--board", board],
        input=f"press {wrong}\nhold 0 100\nchord 1 {wrong} 100\npress\npress {right}\n"
        "sleep 300\nquit\n",
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    buttons = f"1 to {right}"
    assert done.stderr.splitlines() == [
        f"virtual-kiosk: press {wrong}: no such button; this kiosk has buttons {buttons}",
        f"virtual-kiosk: hold 0: no such button; this kiosk has buttons {buttons}",
        f"virtual-kiosk: chord {wrong}: no such button; this kiosk has buttons {buttons}",
        f"virtual-kiosk: press: give press N, with buttons {buttons} (left to right)",
    ]
    screens = [s for s in map(parse_screen, done.stdout.splitlines()) if s is not None]
    assert [name for name, _ in screens] == ["idle", "thanks"]  # the right press still counts
