"""Fleet operations with a provisioned virtual kiosk, mosquitto and the aggregator: the
`devices` view, `config push` checked by the contract, `identify` and `reboot`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk_host import __version__
from tests.broker import Mosquitto
from tests.fleet_rig import (
    Client,
    Serve,
    aggregator_url,
    broker_with,
    device,
    devices,
    fleet_url,
    host_account,
    kiosk_host,
    provision,
)
from tests.virtual_kiosks import VirtualKiosk, wait_until

pytestmark = pytest.mark.e2e  # separate processes end to end: make test runs these

STORE = "fleet"


@dataclass
class Shop:
    broker: Mosquitto
    url: str  # the fleet tools': mqtt://kiosk-fleet:PASSWORD@127.0.0.1:PORT
    db: Path
    devices_dir: Path
    watcher: Client  # another aggregator's account, on kiosk/v1/fleet/#
    kiosk: VirtualKiosk  # fleet/till-1, as provisioned; fleet/till-2 is provisioned only

    def cli(self, *args: str) -> Any:
        """A fleet command on the fleet tools' account, knowing the provisioned kiosks."""
        return kiosk_host(*args, "--broker", self.url, "--devices-dir", str(self.devices_dir))

    def configs(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.watcher.on(f"kiosk/v1/{STORE}/{name}/config")]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    broker_dir, devices_dir = tmp_path / "broker", tmp_path / "devices"
    broker = broker_with(tmp_path / "mosquitto", broker_dir)
    for name in ("till-1", "till-2"):
        provision(broker_dir, devices_dir / STORE / name, STORE, name, broker.url)
    watch_user, watch_password = host_account(broker_dir, "watch")
    url = fleet_url(broker_dir, broker.url)
    db = tmp_path / "kiosk.db"
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.close)
        serve = Serve(aggregator_url(broker_dir, broker.url), db)
        stack.callback(serve.stop)
        watcher = Client(broker.port, "watch-fleet", watch_user, watch_password)
        stack.callback(watcher.close)
        watcher.subscribe(f"kiosk/v1/{STORE}/#", "kiosk/v1/_host/status")

        def aggregator_online() -> bool:
            said = [json.loads(p) for p in watcher.on("kiosk/v1/_host/status")]
            return any(s["state"] == "online" and s["host"] == "kiosk-host" for s in said)

        # the kiosk's first telemetry goes out at once, at QoS 0: the aggregator listens first
        wait_until(aggregator_online, 30, "the aggregator")
        kiosk = VirtualKiosk(broker.url, tmp_path / "state", STORE, "till-1",
                             extra=["--identity", str(devices_dir / STORE / "till-1")])  # fmt: skip
        stack.callback(kiosk.kill)
        yield Shop(broker, url, db, devices_dir, watcher, kiosk)


def test_devices_shows_a_kiosk_online_its_telemetry_and_offline_by_its_last_will(
    shop: Shop,
) -> None:
    shop.kiosk.wait_screen("idle")
    wait_until(lambda: device(shop.db, STORE, "till-1").get("state") == "online", 30, "online")
    wait_until(lambda: device(shop.db, STORE, "till-1").get("telemetry") is not None, 30, "figures")
    online = device(shop.db, STORE, "till-1")
    assert (online["fw"], online["board"]) == (__version__, "esp32-devkitc-ssd1306")
    assert online["since"] is not None and online["config_error"] is None
    # the simulated kiosk: 100 000 bytes free, -61 dBm, nothing waiting, nothing dropped
    figures = {k: online[k] for k in ("heap_free", "rssi", "outbox", "dropped")}
    assert figures == {"heap_free": 100000, "rssi": -61, "outbox": 0, "dropped": 0}
    assert online["telemetry"]["up_ms"] >= 0 and online["telemetry_at"] is not None
    text = kiosk_host("devices", "--db", str(shop.db), "--store", STORE)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{STORE}/till-1: online since ")
    assert f"fw {__version__}, board esp32-devkitc-ssd1306" in text.stdout
    assert "heap 100000 B free, RSSI -61 dBm, outbox 0, dropped 0" in text.stdout

    shop.kiosk.kill()  # the power goes: the broker publishes its last will
    wait_until(lambda: device(shop.db, STORE, "till-1").get("state") == "offline", 30, "offline")
    offline = device(shop.db, STORE, "till-1")
    assert offline["since"] >= online["since"]
    assert (offline["fw"], offline["board"]) == (__version__, "esp32-devkitc-ssd1306")  # kept
    assert offline["heap_free"] == 100000  # the last figures stay, with their time
    assert [d["device"] for d in devices(shop.db)] == ["till-1"]
    # till-2 was provisioned, and never connected
    known = devices(shop.db, "--devices-dir", str(shop.devices_dir))
    assert [(d["device"], d["state"]) for d in known] == [
        ("till-1", "offline"), ("till-2", "never seen")
    ]  # fmt: skip

    shop.kiosk.start()
    wait_until(lambda: device(shop.db, STORE, "till-1").get("state") == "online", 30, "back")
    assert device(shop.db, STORE, "till-1")["since"] >= offline["since"]


def test_config_push_is_checked_by_the_contract_then_delivered(shop: Shop) -> None:
    shop.kiosk.wait_screen("idle", text="How did we do today?")
    refusals = {
        "scale=9": "maximum at /scale: 9 is greater than the maximum of 5",
        "low_threshold=4": "maximum at /low_threshold: 4 is greater than the maximum of 3",
        "brightness=80": "additionalProperties at /brightness",
        "language=it": "enum at /language",
        "prompt=": "minLength at /prompt",
        'staff=[{"id": "Ana B", "name": "Ana"}]': "pattern at /staff/0/id",
    }
    for setting, why in refusals.items():
        done = shop.cli("config", "push", "--store", STORE, "--device", "till-1", "--set",
                        setting, "--devices-dir", str(shop.devices_dir))  # fmt: skip
        assert done.returncode == 2, done.stdout
        assert "config refused, nothing was published" in done.stderr
        assert f"{STORE}/till-1: {why}" in done.stderr, done.stderr
    bad = shop.cli("config", "push", "--store", STORE, "--set", "prompt")
    assert bad.returncode == 2 and "give KEY=VALUE" in bad.stderr

    done = shop.cli("config", "push", "--store", STORE, "--device", "till-1", "--set",
                    "prompt=Hello from the host", "--devices-dir", str(shop.devices_dir),
                    "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (pushed,) = json.loads(done.stdout)
    assert pushed["from"] == str(shop.devices_dir / STORE / "till-1" / "config.json")
    shop.kiosk.wait_screen("idle", text="Hello from the host")
    wait_until(lambda: len(shop.configs("till-1")) == 1, 10, "the config on the broker")
    (config,) = shop.configs("till-1")  # only the good one was ever published
    provisioned = json.loads((shop.devices_dir / STORE / "till-1" / "config.json").read_text())
    assert config == {**provisioned, "prompt": "Hello from the host"}

    # the whole store: each kiosk's own config, changed in the same setting
    both = ("--set", "language=de", "--set", "telemetry_interval_s=30")
    done = shop.cli(
        "config", "push", "--store", STORE, *both, "--devices-dir", str(shop.devices_dir)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("published on") == 2
    wait_until(lambda: len(shop.configs("till-2")) == 1, 10, "till-2's config")
    wait_until(lambda: len(shop.configs("till-1")) == 2, 10, "till-1's second config")
    assert shop.configs("till-1")[-1] == {**config, "language": "de", "telemetry_interval_s": 30}
    assert shop.configs("till-2")[-1]["station"] == "till-2"  # from its provisioned config


def test_identify_shows_the_kiosk_its_name(shop: Shop) -> None:
    shop.kiosk.wait_screen("idle")
    wait_until(lambda: device(shop.db, STORE, "till-1").get("state") == "online", 30, "online")
    done = shop.cli("identify", "till-1", "--store", STORE, "--seconds", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"sent identify to kiosk/v1/{STORE}/till-1/cmd\n"
    shop.kiosk.wait_screen("identify", text="till-1")
    shop.kiosk.wait_screen("idle", timeout=15)
    (sent,) = [json.loads(p) for p in shop.watcher.on(f"kiosk/v1/{STORE}/till-1/cmd")]
    assert (sent["cmd"], sent["seconds"]) == ("identify", 2)
    bad = shop.cli("identify", "till-1", "--store", STORE, "--seconds", "500")
    assert bad.returncode == 2
    assert "maximum at /seconds: 500 is greater than the maximum of 120" in bad.stderr
    typo = shop.cli("identify", "till-9", "--store", STORE)  # never provisioned: not sent
    assert typo.returncode == 2 and typo.stdout == ""
    assert "no kiosk till-9 was provisioned in store fleet" in typo.stderr
    assert "did you mean till-1 or till-2?" in typo.stderr
    shop.cli("identify", "till-1", "--store", STORE, "--seconds", "1")  # after the typo's
    wait_until(lambda: len(shop.watcher.on(f"kiosk/v1/{STORE}/till-1/cmd")) == 2, 10, "the 2nd")
    assert shop.watcher.on(f"kiosk/v1/{STORE}/till-9/cmd") == []


def test_reboot_restarts_the_kiosk_once(shop: Shop) -> None:
    shop.kiosk.wait_screen("idle")
    wait_until(lambda: device(shop.db, STORE, "till-1").get("state") == "online", 30, "online")
    done = shop.cli("reboot", "till-1", "--store", STORE, "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["topic"], answer["kiosk"]) == (f"kiosk/v1/{STORE}/till-1/cmd", "online")
    assert answer["command"]["cmd"] == "reboot"
    # as the chip resets: the process starts again in place, and comes back on its own
    wait_until(lambda: shop.kiosk.count("reboot") == 1, 15, "the restart")
    shop.kiosk.wait_screen("idle")
    offline = shop.cli("reboot", "till-2", "--store", STORE)  # provisioned, never connected
    assert offline.returncode == 0, offline.stderr
    assert "the kiosk is not known to the broker: it acts on it when it connects" in offline.stdout
