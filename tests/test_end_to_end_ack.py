"""End-to-end acknowledgement: a kiosk lets an event go only once the host has stored it.

The broker's PUBACK comes before its disk has the event (autosave_interval), so a broker that
crashes while the aggregator is away loses what it acknowledged. The kiosk keeps every event
until the host's mark (kiosk/v1/{store}/{device}/ack, retained) covers it, and sends again,
on every connect, whatever it still keeps.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.storage.sqlite import Storage
from tests.broker import Mosquitto
from tests.virtual_kiosks import KIOSK_HOST, VirtualKiosk, Watcher, wait_until


def gone(watcher: Watcher) -> bool:
    return any(json.loads(p)["state"] == "offline" for _, p, _ in watcher.on("/status"))


def online_count(watcher: Watcher) -> int:
    return sum(1 for _, p, _ in watcher.on("/status") if json.loads(p)["state"] == "online")


def test_the_broker_puback_keeps_an_event_and_the_host_mark_lets_it_go(
    mosquitto: Mosquitto, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    watcher = closing(Watcher(mosquitto.url, "kiosk/v1/mark/till-1/#", "watch-mark"))
    kiosk = closing(VirtualKiosk(mosquitto.url, tmp_path, store="mark"))
    kiosk.wait_screen("idle")
    wait_until(lambda: online_count(watcher) == 1, 15, "the kiosk online")
    kiosk.send("press 4", "press 4", "press 4")
    wait_until(lambda: sorted(set(watcher.seqs())) == [1, 2, 3], 15, "three events")
    # The broker acknowledged all three; no host has stored them. The host says 1 and 2 are
    # stored (retained, as the aggregator publishes it).
    ack = {"v": 1, "seq": 2}
    info = watcher.client.publish("kiosk/v1/mark/till-1/ack", json.dumps(ack), 1, retain=True)
    info.wait_for_publish(10)
    before = len(watcher.seqs())
    kiosk.send("net down")
    wait_until(lambda: gone(watcher), 15, "the kiosk's link to drop (its last will)")
    kiosk.send("net up")
    wait_until(lambda: online_count(watcher) == 2, 30, "the kiosk online again")
    kiosk.send("press 4")  # sent after whatever the kiosk sends again, in seq order
    wait_until(lambda: 4 in watcher.seqs(), 15, "the fourth event")
    # The retained mark reaches the kiosk as it subscribes, before its drain gets far; it
    # may be a moment late, so 1 and 2 may go again once, never after the fourth.
    again = watcher.seqs()[before:]
    assert again[again.index(3) :] == [3, 4]  # 3 was only acknowledged by the broker: again
    assert again.count(3) == 1


@pytest.mark.slow  # a load test: 2,000 presses, the broker killed in the middle of them
def test_a_broker_killed_while_the_aggregator_is_away_loses_no_event(
    tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    # Persistence on, and saved only every hour: whatever the broker took in since its start
    # is lost by kill -9, as with any autosave setting between two saves.
    broker = closing(Mosquitto(tmp_path / "broker", settings={"autosave_interval": "3600"}))
    broker.start()
    db = tmp_path / "kiosk.db"
    args = [str(KIOSK_HOST), "serve", "--broker", broker.url, "--db", str(db),
            "--client-id", "agg-e2e"]  # fmt: skip

    def serve(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / name).open("wb") as log:
            proc = subprocess.Popen(args, stderr=log, stdout=log)
        closing(proc)
        return proc

    # The aggregator's persistent session and subscription, saved by a clean restart.
    host = closing(Watcher(broker.url, "kiosk/v1/_host/status", "watch-host"))
    first = serve("serve-0.log")
    storage = Storage(db)
    wait_until(lambda: any(b'"online"' in p for _, p, _ in host.messages), 30, "aggregator")
    first.terminate()
    first.wait(30)
    host.close()
    broker.restart()

    watcher = closing(Watcher(broker.url, "kiosk/v1/crash/till-1/event", "watch-crash"))
    kiosk = closing(VirtualKiosk(broker.url, tmp_path / "kiosk", store="crash"))
    kiosk.wait_screen("idle")
    kiosk.send(*["press 4"] * 2000)
    wait_until(lambda: len(set(watcher.seqs())) >= 600, 120, "600 events through the broker")
    broker.kill()  # acknowledged to the kiosk, held for the aggregator, never saved
    broker.start()
    wait_until(lambda: kiosk.count("thanks") == 2000, 240, "2000 thank-yous")
    second = serve("serve-1.log")
    wait_until(lambda: storage.event_count("crash") >= 2000, 240, "2000 events stored")
    assert storage.seqs("crash", "till-1") == list(range(1, 2001))  # each once, none lost
    assert storage.dead_letter_count() == 0
    # And the kiosk hears that all of it is stored: its outbox is empty.
    marks = closing(Watcher(broker.url, "kiosk/v1/crash/till-1/ack", "watch-ack"))
    wait_until(
        lambda: any(json.loads(p)["seq"] == 2000 for _, p, _ in marks.messages), 30, "mark 2000"
    )
    assert second.poll() is None
    storage.close()


def test_a_kiosk_whose_count_went_back_moves_past_the_host_mark_and_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    # The worst case for the counter: a kiosk under the same name with a blank flash (a swap
    # of the board, every record of its count gone). The host's retained mark moves it on.
    db = tmp_path / "kiosk.db"
    args = [str(KIOSK_HOST), "serve", "--broker", mosquitto.url, "--db", str(db),
            "--client-id", "agg-back"]  # fmt: skip
    status = closing(Watcher(mosquitto.url, "kiosk/v1/_host/status", "watch-back-host"))
    with (tmp_path / "serve.log").open("wb") as log:
        host = closing(subprocess.Popen(args, stderr=log, stdout=log))
    storage = Storage(db)
    # Subscribed before it says so, on the same connection: every event from now on reaches it.
    wait_until(lambda: any(b'"agg-back"' in p for _, p, _ in status.messages), 30, "the host")
    marks = closing(Watcher(mosquitto.url, "kiosk/v1/back/till-1/ack", "watch-back"))
    first = closing(VirtualKiosk(mosquitto.url, tmp_path / "first", store="back"))
    first.wait_screen("idle")
    first.send("press 4", "press 4", "press 4")
    wait_until(lambda: b'{"v":1,"seq":3}' in [p for _, p, _ in marks.messages], 30, "mark 3")
    first.kill()

    def state() -> str:
        found = storage.devices("back")
        return str(found[0]["state"]) if found else ""

    wait_until(lambda: state() == "offline", 30, "the first one's last will")
    second = closing(VirtualKiosk(mosquitto.url, tmp_path / "blank", store="back"))
    second.wait_screen("idle")
    wait_until(lambda: state() == "online", 30, "the second one online")
    second.send("press 3", "press 3")
    wait_until(lambda: storage.event_count("back") >= 5, 30, "two more events")
    assert storage.seqs("back", "till-1") == [1, 2, 3, 4, 5]
    # No seq given out twice (the broker is shared: other tests' retained messages may be
    # dead letters of their own here).
    assert [d for d in storage.dead_letters() if "/back/" in d.topic] == []
    assert host.poll() is None
    storage.close()
