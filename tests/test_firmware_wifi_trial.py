"""A new shop Wi-Fi on trial, on MicroPython: the kiosk's link with a real mosquitto, through
the simulated Wi-Fi on the simulated clock, and its identity on a flash that loses power.

The host's `wifi` command waits in the kiosk's session before it connects. The kiosk acts on
it: it tries the new network and keeps it when it reaches the broker over it (its identity on
flash rewritten, the rest as it was), or gives it up once its minute is over and goes back to
the old one; its status says which, in the contract's words. A power cut at any byte of the
identity's rewrite leaves the old identity or the new, whole.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.wire.contract import Contract, Message
from tests.broker import Mosquitto
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import BOARDS_DIR, ROOT, MicroPythonVM, firmware_modules, vm_files

RIG = ROOT / "tests" / "vm" / "kiosk_rig.py"
FAULTFS = ROOT / "tests" / "vm" / "faultfs.py"
BOARD = "esp32_devkitc_ssd1306"
IDENTITY = {
    "store": "", "device": "till-1", "letter": "A", "host": "127.0.0.1", "port": 0,
    "ssid": "shop", "key": "secret-key", "user": "u", "password": "kiosk-password", "fw": "1.0.0",
}  # fmt: skip

# The rig's kiosk, its identity on /flash, and its link as main.py builds it; the test then
# drives the simulated clock (ADVANCE ms per step) while the link runs, until `done`.
KIOSK = """
import asyncio, gc, json, os, machine, network, simclock, hostnet, logring, wifi_trial
import board, kiosk_rig
asyncio.open_connection = hostnet.open_connection
from link import Link
network.access_point.update(ssid='shop', key='secret-key', connect_ms=0)
network.others.update(OTHERS)
rig = kiosk_rig.Rig(board, echo=False)
IDENT = json.loads(IDENTITY)
with open('/flash/identity.json', 'w') as f:
    json.dump(IDENT, f)
ids = []
hw = {
    'ntp': lambda: kiosk_rig.WALL, 'heap_free': gc.mem_free, 'rssi': lambda: -61,
    'identify': lambda seconds: None, 'reboot': machine.reset, 'save_config': lambda raw: None,
    'load_ids': lambda: ids, 'save_ids': lambda i: None,
    'save_wifi': lambda ssid, key: wifi_trial.store('/flash/identity.json', ssid, key),
}
wlan = network.WLAN(network.STA_IF)
link = Link(rig.kiosk, rig.outbox, rig.clock, wlan, dict(IDENT, board=board.NAME), hw)

async def until(check, what, advance):
    for _ in range(3000):
        if check():
            return
        rig.t.advance(advance)
        await asyncio.sleep_ms(5)
    raise AssertionError('timed out waiting for ' + what + ': error %r' % link.error)

async def main():
    task = asyncio.create_task(link.run())
    await until(lambda: DONE, 'the outcome, online', ADVANCE)
    print('SSID', link.ident['ssid'], link.ident['key'])
    with open('/flash/identity.json') as f:
        print('FLASH', f.read())
    log = logring.payload('s', 'd', 'c', None, rig.clock.uptime_ms())
    print('LOG', bytes(log).decode())
    task.cancel()
    await link.client.disconnect()

await asyncio.create_task(main())
"""


# The end of a run: the kiosk online again, with the outcome of its change of Wi-Fi.
OUTCOME = "link.up and link.wifi_said is not None and link.trial is None"


class Host:
    """The host's side: the `wifi` command queued in the kiosk's persistent session before it
    first connects, and every status the kiosk publishes, kept."""

    def __init__(
        self, broker: Mosquitto, store: str, command: dict[str, Any], watch: str = "status"
    ) -> None:
        base = f"kiosk/v1/{store}/till-1"
        self.statuses: list[bytes] = []
        self.lock = threading.Lock()
        kiosk = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{store}/till-1",
                            clean_session=False)  # fmt: skip
        subscribed = threading.Event()
        kiosk.on_subscribe = lambda *args: subscribed.set()
        kiosk.connect(broker.host, broker.port)
        kiosk.loop_start()
        kiosk.subscribe(f"{base}/cmd", 1)
        assert subscribed.wait(10), "no SUBACK"
        kiosk.disconnect()
        kiosk.loop_stop()
        watching = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{store}")
        self.client.on_subscribe = lambda *args: watching.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{base}/{watch}", 1)
        assert watching.wait(10), "no SUBACK"
        self.client.publish(f"{base}/cmd", json.dumps(command), 1).wait_for_publish(10)
        self.topic = f"{base}/{watch}"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.statuses.append(bytes(msg.payload))

    def said(self) -> list[dict[str, Any]]:
        """Every message the kiosk published on the watched topic, checked by the contract."""
        out = []
        with self.lock:
            raw = list(self.statuses)
        for payload in raw:
            result = Contract.load().validate(self.topic, payload)
            assert isinstance(result, Message), f"{result}: {payload!r}"
            out.append(result.payload)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(
    mpvm: MicroPythonVM, broker: Mosquitto, store: str, command: dict[str, Any],
    others: dict[str, str], advance: int, watch: str = "status", done: str = OUTCOME,
) -> tuple[dict[str, str], list[dict[str, Any]], dict[str, Any], Host]:  # fmt: skip
    """The kiosk of `store` with `command` waiting for it, until `done` (MicroPython); (what
    it printed by tag, what it published on `watch`, its log, the host)."""
    host = Host(broker, store, command, watch)
    ident = {**IDENTITY, "store": store, "port": broker.port}
    code = (
        KIOSK.replace("OTHERS", repr(others))
        .replace("IDENTITY", repr(json.dumps(ident)))
        .replace("ADVANCE", str(advance))
        .replace("DONE", done)
    )
    files = vm_files(RIG)
    files["/lib/board.py"] = (BOARDS_DIR / f"{BOARD}.py").read_text()
    try:
        out = mpvm.run(code, firmware_modules(), files=files, run_async=True, net=True).ok()
        printed = {
            line.split(" ", 1)[0]: line.split(" ", 1)[1]
            for line in out.splitlines()
            if line.split(" ", 1)[0] in ("SSID", "FLASH", "LOG")
        }
        if watch == "status":
            wait_until(lambda: any("wifi" in s for s in host.said()), 10, "the outcome")
        else:
            wait_until(lambda: bool(host.said()), 10, f"a message on {watch}")
        log = json.loads(printed["LOG"])
        return printed, host.said(), log, host
    finally:
        host.close()


def wifi_command(cid: str, ssid: str, key: str) -> dict[str, Any]:
    return {"v": 1, "cmd": "wifi", "id": cid, "ts": 1763900000, "ssid": ssid, "key": key}


def test_the_kiosk_joins_the_new_network_reaches_the_broker_and_keeps_it(
    mpvm: MicroPythonVM, mosquitto: Mosquitto
) -> None:
    cmd = wifi_command("w-join-1", "shop-2", "the-new-key")
    printed, said, log, _ = run(
        mpvm, mosquitto, "wifi-join", cmd, {"shop-2": "the-new-key"}, advance=10
    )
    assert printed["SSID"] == "shop-2 the-new-key"
    # on flash: the new name and key, everything else of its identity as it was
    flash = json.loads(printed["FLASH"])
    assert flash == {**IDENTITY, "store": "wifi-join", "port": mosquitto.port,
                     "ssid": "shop-2", "key": "the-new-key"}  # fmt: skip
    outcome = [s["wifi"] for s in said if "wifi" in s]
    assert outcome[-1] == {"id": "w-join-1", "result": "joined", "ssid": "shop-2", "reason": None}
    # offline said by the kiosk as it left (and the statuses it had in flight then, sent
    # again), then online over the new network with the outcome; nothing after it but the
    # rig's power going off
    states = [(s["state"], "wifi" in s) for s in said]
    joined = states.index(("online", True))
    assert ("offline", False) in states[:joined]
    assert all(state == "offline" for state, _ in states[joined + 1 :]), states
    texts = [line["text"] for line in log["lines"]]
    assert "wifi: trying shop-2" in texts and "wifi: joined shop-2, kept" in texts
    assert texts.index("wifi: trying shop-2") < texts.index("wifi: joined shop-2, kept")


@pytest.mark.slow  # a minute of the trial on the simulated clock, with the link
def test_a_network_it_cannot_join_within_a_minute_is_given_up_for_the_old_one(
    mpvm: MicroPythonVM, mosquitto: Mosquitto
) -> None:
    cmd = wifi_command("w-fail-1", "nowhere", "whatever-key")
    # the simulated clock runs 200 times faster than the wall clock: the minute passes quickly
    printed, said, log, _ = run(mpvm, mosquitto, "wifi-fail", cmd, {}, advance=1000)
    assert printed["SSID"] == "shop secret-key"  # back on the old network, online again
    flash = json.loads(printed["FLASH"])
    assert (flash["ssid"], flash["key"]) == ("shop", "secret-key")  # never changed
    outcome = [s["wifi"] for s in said if "wifi" in s]
    assert outcome[-1] == {"id": "w-fail-1", "result": "wifi_failed", "ssid": "nowhere",
                           "reason": "Wi-Fi: no connection to nowhere"}  # fmt: skip
    texts = [line["text"] for line in log["lines"]]
    assert "wifi: back to shop: Wi-Fi: no connection to nowhere" in texts


@pytest.mark.slow  # a minute of the trial on the simulated clock, with the link
def test_a_wrong_key_for_a_network_in_the_air_is_given_up_too(
    mpvm: MicroPythonVM, mosquitto: Mosquitto
) -> None:
    cmd = wifi_command("w-key-1", "shop-2", "a-wrong-key")
    printed, said, _, _ = run(
        mpvm, mosquitto, "wifi-key", cmd, {"shop-2": "the-right-key"}, advance=1000
    )
    assert printed["SSID"] == "shop secret-key"
    outcome = [s["wifi"] for s in said if "wifi" in s][-1]
    assert (outcome["result"], outcome["reason"]) == (
        "wifi_failed",
        "Wi-Fi: no connection to shop-2",
    )


def test_settings_the_kiosk_cannot_use_are_refused_at_once(
    mpvm: MicroPythonVM, mosquitto: Mosquitto
) -> None:
    # Past the contract (a host that did not check): a key too short for WPA2.
    cmd = wifi_command("w-bad-1", "shop-2", "short")
    printed, said, _, _ = run(mpvm, mosquitto, "wifi-bad", cmd, {"shop-2": "short"}, advance=10)
    assert printed["SSID"] == "shop secret-key"
    outcome = [s["wifi"] for s in said if "wifi" in s][-1]
    assert outcome["result"] == "wifi_failed"
    assert (
        outcome["reason"] == "wifi: the key must be 8 to 63 characters, or none for an open network"
    )


STORE_UNDER_CUTS = """
import json, os, vfs
from faultfs import FaultFS, PowerCut
import wifi_trial
fs = FaultFS()
vfs.mount(fs, '/flash')
OLD = json.loads(IDENTITY)
with open('/flash/identity.json', 'wb') as f:
    f.write(json.dumps(OLD).encode())
start = fs.steps
wifi_trial.store('/flash/identity.json', 'shop-2', 'the-new-key')
whole = fs.steps - start
snap = fs.snapshot()
seen = {}
for n in range(whole + 1):
    with open('/flash/identity.json', 'wb') as f:
        f.write(json.dumps(OLD).encode())
    for p in ('/flash/identity.json.new',):
        try:
            os.remove(p)
        except OSError:
            pass
    fs.cut_after(n)
    try:
        wifi_trial.store('/flash/identity.json', 'shop-2', 'the-new-key')
    except PowerCut:
        pass
    fs.power_on()
    with open('/flash/identity.json', 'rb') as f:
        now = json.loads(f.read())
    new = dict(OLD, ssid='shop-2', key='the-new-key')
    kind = 'old' if now == OLD else 'new' if now == new else 'MIX'
    seen[kind] = seen.get(kind, 0) + 1
print('STEPS', whole)
print('SEEN', json.dumps(seen))
"""


def test_a_power_cut_at_any_byte_of_the_rewrite_leaves_the_old_identity_or_the_new(
    mpvm: MicroPythonVM,
) -> None:
    code = STORE_UNDER_CUTS.replace("IDENTITY", repr(json.dumps({**IDENTITY, "store": "s"})))
    files = {"/lib/faultfs.py": Path(FAULTFS).read_text()}
    out = mpvm.run(code, ["wifi_trial"], files=files).ok().splitlines()
    steps = int(out[0].split()[1])
    seen = json.loads(out[1].split(" ", 1)[1])
    assert steps > 100  # every byte of the new file is a step: the cuts fall everywhere
    assert set(seen) == {"old", "new"}, seen  # never a mix, never a broken file
    assert seen["new"] == 1  # only once the rename is done
