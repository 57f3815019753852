"""Firmware updates over the air, end to end: kiosks provisioned with `kiosk-host provision`
and run as `virtual-kiosk --identity DIR`, the shipped broker settings and accounts, `kiosk-host
serve` storing, and `kiosk-host ota push` and `ota status` as a person types them."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kiosk_host import __version__
from kiosk_host.fleet.ota import version
from kiosk_host.shipped import FIRMWARE
from kiosk_host.sim.serial_kiosk import SerialKiosk
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.ota import File, chunk_message, key_from_hex, manifest_message
from tests.broker import Mosquitto
from tests.fleet_rig import (
    Client,
    Serve,
    aggregator_url,
    broker_with,
    host_account,
    kiosk_host,
    provision,
)
from tests.virtual_kiosks import VirtualKiosk, wait_until

pytestmark = pytest.mark.e2e  # separate processes end to end: make test runs these

STORE = "ota"
FACTORY_THANKS = "Thank you!"
NEW_THANKS = "Thank you, see you soon!"
PRESS_EVERY_S = 3.5  # past the 3 s thank-you screen: the kiosk is idle between customers


@dataclass
class Fleet:
    tmp: Path
    broker: Mosquitto
    broker_dir: Path
    devices_dir: Path
    db: Path
    watcher: Client  # another aggregator's account: reads every kiosk's topics
    stack: contextlib.ExitStack
    kiosks: dict[str, VirtualKiosk] = field(default_factory=dict)

    def kiosk(self, device: str) -> VirtualKiosk:
        """`virtual-kiosk --identity DIR` of a kiosk provisioned with the fleet."""
        folder = self.devices_dir / STORE / device
        k = VirtualKiosk(self.broker.url, self.tmp / "kiosks" / device, STORE, device,
                         extra=["--identity", str(folder)])  # fmt: skip
        self.stack.callback(k.kill)
        self.kiosks[device] = k
        return k

    def ota(self, *args: str, timeout: float = 300) -> Any:
        """`kiosk-host ota ...` with the provisioned fleet's folders (the fleet account and the
        kiosks' broker from them)."""
        return kiosk_host("ota", *args, "--store", STORE, "--devices-dir", str(self.devices_dir),
                          "--broker-dir", str(self.broker_dir), timeout=timeout)  # fmt: skip

    def status(self, device: str) -> dict[str, Any]:
        """The kiosk's last status as the broker passed it on."""
        said = self.watcher.on(f"kiosk/v1/{STORE}/{device}/status")
        return json.loads(said[-1]) if said else {}

    def online_on(self, device: str, fw: str) -> bool:
        s = self.status(device)
        return s.get("state") == "online" and s.get("fw") == fw

    def stored(self) -> int:
        storage = Storage(self.db)
        try:
            return storage.event_count(STORE)
        finally:
            storage.close()


@pytest.fixture
def start_fleet(tmp_path: Path) -> Iterator[Callable[[list[str]], Fleet]]:
    """Provisions the kiosks named (with `kiosk-host provision`, which makes the accounts),
    then starts the broker, `kiosk-host serve` and a watcher; all stopped when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(devices: list[str]) -> Fleet:
            broker_dir, devices_dir = tmp_path / "broker", tmp_path / "devices"
            broker = broker_with(tmp_path / "mosquitto", broker_dir)
            for device in devices:
                folder = devices_dir / STORE / device
                provision(broker_dir, folder, STORE, device, broker.url)
                # its customers are scripts: no pause needed between two ratings
                config = json.loads((folder / "config.json").read_text())
                config["response_interval_s"] = 0
                (folder / "config.json").write_text(json.dumps(config))
            watch_user, watch_password = host_account(broker_dir, "watch")
            db = tmp_path / "kiosk.db"
            broker.start()
            stack.callback(broker.close)
            serve = Serve(aggregator_url(broker_dir, broker.url), db)
            stack.callback(serve.stop)
            watcher = Client(broker.port, "watch-ota", watch_user, watch_password)
            stack.callback(watcher.close)
            watcher.subscribe(f"kiosk/v1/{STORE}/#", "kiosk/v1/_host/status")

            def aggregator_online() -> bool:
                said = [json.loads(p) for p in watcher.on("kiosk/v1/_host/status")]
                return any(s["state"] == "online" and s["host"] == "kiosk-host" for s in said)

            wait_until(aggregator_online, 30, "the aggregator")
            return Fleet(tmp_path, broker, broker_dir, devices_dir, db, watcher, stack)

        yield start


@pytest.fixture
def fleet(start_fleet: Callable[[list[str]], Fleet]) -> Fleet:
    """One kiosk, till-1, provisioned."""
    return start_fleet(["till-1"])


def release(tmp: Path, name: str, change: Callable[[Path], None]) -> tuple[Path, str]:
    """A copy of the firmware with `change` made to it: its folder and its version."""
    folder = tmp / name
    shutil.copytree(FIRMWARE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    change(folder)
    return folder, version(folder)


def new_thanks(folder: Path) -> None:
    """A visible change: the thank-you screen's text."""
    texts = folder / "texts_en.py"
    source = texts.read_text()
    assert f'THANK_YOU = "{FACTORY_THANKS}"' in source
    texts.write_text(
        source.replace(f'THANK_YOU = "{FACTORY_THANKS}"', f'THANK_YOU = "{NEW_THANKS}"')
    )


def broken_import(folder: Path) -> None:
    """A release that raises on import: kiosk.py needs a module no kiosk has."""
    kiosk = folder / "kiosk.py"
    kiosk.write_text("import not_on_any_kiosk  # noqa: F401\n" + kiosk.read_text())


BROKEN = "crashed: ModuleNotFoundError: No module named 'not_on_any_kiosk'"


class Customers:
    """Customers at a kiosk: a rating every PRESS_EVERY_S, from a thread, until stopped."""

    def __init__(self, kiosk: VirtualKiosk, stack: contextlib.ExitStack) -> None:
        self.kiosk = kiosk
        self.pressed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        stack.callback(self.stop)  # before the kiosk is killed (callbacks run last first)

    def _run(self) -> None:
        while not self.done.is_set():
            self.kiosk.send("press 4")
            self.pressed += 1
            self.done.wait(PRESS_EVERY_S)

    def stop(self) -> int:
        self.done.set()
        self.thread.join(10)
        return self.pressed


def thanks(kiosk: VirtualKiosk) -> list[str]:
    """The texts of the thank-you screens the kiosk showed, in order."""
    with kiosk._lock:
        return [text for name, text in kiosk.screens if name == "thanks"]


def all_stored(fleet: Fleet, kiosk: VirtualKiosk, pressed: int) -> None:
    """Every press the customers made was taken (a thank-you screen) and stored once."""
    wait_until(lambda: len(thanks(kiosk)) == pressed, 30, f"{pressed} thank-you screens")
    wait_until(lambda: fleet.stored() >= pressed, 30, f"{pressed} events stored")
    assert fleet.stored() == pressed


def test_a_push_gives_a_provisioned_virtual_kiosk_the_new_version_while_customers_tap(
    fleet: Fleet,
) -> None:
    kiosk = fleet.kiosk("till-1")
    kiosk.wait_screen("idle", timeout=30)
    wait_until(lambda: fleet.online_on("till-1", __version__), 30, "the kiosk online")
    assert fleet.status("till-1")["takes"] == "py"
    folder, new = release(fleet.tmp, "release", new_thanks)
    customers = Customers(kiosk, fleet.stack)
    wait_until(lambda: len(thanks(kiosk)) >= 1, 15, "a first customer")
    done = fleet.ota("push", "--device", "till-1", "--firmware", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"{STORE}/till-1: runs {new}\n"
    assert "100% " in done.stderr and "receiving" in done.stderr  # the progress bar
    wait_until(lambda: thanks(kiosk).count(NEW_THANKS) >= 2, 30, "customers on the new version")
    pressed = customers.stop()
    all_stored(fleet, kiosk, pressed)
    shown = thanks(kiosk)
    switched = shown.index(NEW_THANKS)
    assert switched >= 1 and set(shown[:switched]) == {FACTORY_THANKS}
    assert set(shown[switched:]) == {NEW_THANKS}  # never back to the old version
    assert kiosk.count("reboot") == 1  # one switch, and the process went on (its presses too)
    status = fleet.status("till-1")
    assert status["fw"] == new and status["ota"]["state"] == "done"
    listed = fleet.ota("status", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["fw"], row["state"]) == (new, "done")


def test_a_release_that_raises_on_import_rolls_back_by_itself_and_presses_are_stored(
    fleet: Fleet,
) -> None:
    kiosk = fleet.kiosk("till-1")
    kiosk.wait_screen("idle", timeout=30)
    wait_until(lambda: fleet.online_on("till-1", __version__), 30, "the kiosk online")
    folder, bad = release(fleet.tmp, "broken", broken_import)
    customers = Customers(kiosk, fleet.stack)
    done = fleet.ota("push", "--device", "till-1", "--firmware", str(folder))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == f"{STORE}/till-1: not updated: ota_failed: {BROKEN}\n"
    after = customers.pressed + 2
    wait_until(lambda: len(thanks(kiosk)) >= after, 30, "customers after it")
    pressed = customers.stop()
    all_stored(fleet, kiosk, pressed)
    assert set(thanks(kiosk)) == {FACTORY_THANKS}
    # switched once, then two trial starts that crashed, then the rollback's start
    assert kiosk.count("reboot") == 1
    status = fleet.status("till-1")
    assert status["state"] == "online" and status["fw"] == __version__
    assert status["ota"]["state"] == "ota_failed"
    assert (status["ota"]["version"], status["ota"]["reason"]) == (bad, BROKEN)
    listed = fleet.ota("status")
    assert listed.returncode == 0, listed.stderr
    said = re.fullmatch(
        rf"{STORE}/till-1: runs (\S+), being given (\S+), ota_failed, (\d+)/(\d+) chunks: (.*)\n",
        listed.stdout,
    )
    assert said is not None, listed.stdout
    assert said.group(1, 2, 5) == (__version__, bad, BROKEN)
    assert said.group(3) == said.group(4) != "0"  # the whole release came, then was tried


def test_a_manifest_or_chunk_signed_with_another_key_is_refused_and_nothing_switches(
    fleet: Fleet,
) -> None:
    kiosk = fleet.kiosk("till-1")
    kiosk.wait_screen("idle", timeout=30)
    wait_until(lambda: fleet.online_on("till-1", __version__), 30, "the kiosk online")
    ident = json.loads((fleet.devices_dir / STORE / "till-1" / "identity.json").read_text())
    key, other = key_from_hex(ident["ota_key"]), bytes.fromhex(secrets.token_hex(32))
    files = [File(p.name, p.read_bytes()) for p in sorted(FIRMWARE.glob("*.py"))]
    topic = f"kiosk/v1/{STORE}/till-1/ota"
    # the fleet tools' account may write the topic, as `ota push` does
    creds = json.loads((fleet.broker_dir / "fleet.json").read_text())
    fleet_client = Client(fleet.broker.port, "forger", creds["user"], creds["password"])
    fleet.stack.callback(fleet_client.close)

    def ota() -> dict[str, Any]:
        member: dict[str, Any] = fleet.status("till-1").get("ota") or {}
        return member

    forged = manifest_message(other, STORE, "till-1", "r-forged", "9.9.9+forged", "py", files)
    fleet_client.publish(topic, forged)
    wait_until(lambda: ota().get("state") == "refused", 15, "the forged manifest refused")
    assert ota()["reason"] == "manifest: bad signature" and ota()["id"] == "r-forged"
    flash = fleet.tmp / "kiosks" / "till-1" / "fw"
    assert not (flash / "a" / "manifest.json").exists() and not (flash / "current").exists()

    # a genuine manifest, then its first chunk changed on the way (signed with another key)
    rid, ver = "r-genuine", f"{__version__}+0a0b0c0d"
    fleet_client.publish(topic, manifest_message(key, STORE, "till-1", rid, ver, "py", files))
    wait_until(lambda: ota().get("id") == rid and ota().get("want") == [0, 0], 15, "its want")
    fleet_client.publish(topic, chunk_message(other, rid, files, 0, 0))
    wait_until(lambda: ota().get("state") == "refused", 15, "the forged chunk refused")
    assert ota()["reason"] == "chunk 0/0: bad signature" and ota()["want"] == [0, 0]
    first = flash / "a" / files[0].path
    assert not first.exists() or first.stat().st_size == 0  # the staging as it was
    # the genuine chunk still goes in: the kiosk asks for the next one
    fleet_client.publish(topic, chunk_message(key, rid, files, 0, 0))
    wait_until(lambda: ota().get("want") not in (None, [0, 0]), 15, "the genuine chunk taken")
    assert ota()["state"] == "receiving"
    kiosk.send("press 4")
    wait_until(lambda: fleet.stored() == 1, 30, "a press stored")
    assert not (flash / "current").exists()  # nothing switched
    assert kiosk.count("reboot") == 0 and fleet.status("till-1")["fw"] == __version__


@pytest.mark.slow  # ten kiosks, two rollouts
def test_a_canary_rollout_to_ten_kiosks_stops_on_a_bad_release_and_completes_a_good_one(
    start_fleet: Callable[[list[str]], Fleet],
) -> None:
    names = [f"till-{i:02d}" for i in range(1, 11)]
    fleet = start_fleet(names)
    kiosks = [fleet.kiosk(name) for name in names]
    for name, k in zip(names, kiosks, strict=True):
        k.wait_screen("idle", timeout=90)
        wait_until(lambda n=name: fleet.online_on(n, __version__), 60, f"{name} online")
    bad_folder, bad = release(fleet.tmp, "broken", broken_import)
    done = fleet.ota("push", "--all", "--canary", "2", "--firmware", str(bad_folder))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"{STORE}/{n}: not updated: ota_failed: {BROKEN}" for n in names[:2]]
    assert lines[-1] == (
        f"rollout stopped after the canaries: till-01: ota_failed: {BROKEN}; "
        f"till-02: ota_failed: {BROKEN}"
    )
    for name in names[2:]:  # never sent anything
        assert "ota" not in fleet.status(name), name
        assert f"{STORE}/{name}: not updated: not sent: rollout stopped" in done.stdout
    assert all(fleet.status(n)["fw"] == __version__ for n in names)
    assert all(fleet.status(n)["ota"]["version"] == bad for n in names[:2])

    good_folder, good = release(fleet.tmp, "release", new_thanks)
    done = fleet.ota("push", "--all", "--canary", "2", "--firmware", str(good_folder), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"{STORE}/{n}: runs {good}" for n in names]
    for name in names:
        wait_until(lambda n=name: fleet.online_on(n, good), 30, f"{name} on the new version")
        assert fleet.status(name)["ota"]["state"] == "done"


@pytest.mark.slow  # a deployment over USB to the MicroPython VM, then a compiled release
def test_a_serial_kiosk_deployed_over_usb_takes_a_compiled_release_through_its_loader(
    fleet: Fleet, built_firmware: None
) -> None:
    folder = fleet.devices_dir / STORE / "till-1"
    flash = fleet.tmp / "flash"
    with SerialKiosk(flash) as kiosk:
        deployed = kiosk_host("deploy", "--port", kiosk.port, "--device", "till-1", "--dir",
                              str(folder), "--broker-dir", str(fleet.broker_dir),
                              "--no-build", timeout=300)  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        factory = json.loads((flash / "identity.json").read_text())["fw"]
        wait_until(lambda: fleet.online_on("till-1", factory), 60, "the kiosk online")
        assert fleet.status("till-1")["takes"] == "mpy"
        release_dir, new = release(fleet.tmp, "release", new_thanks)
        mark = kiosk.mark()
        done = fleet.ota("push", "--device", "till-1", "--firmware", str(release_dir))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout == f"{STORE}/till-1: runs {new}\n"
        kiosk.wait_line(lambda line: line.startswith("RESET"), 30, after=mark)  # the switch
        pointer = json.loads((flash / "fw" / "current").read_text())
        assert (pointer["slot"], pointer["version"], pointer["trial"]) == ("a", new, False)
        slot = sorted(p.name for p in (flash / "fw" / "a").iterdir())
        assert "texts_en.mpy" in slot and "main.mpy" in slot and "manifest.json" in slot
        status = fleet.status("till-1")
        assert (status["fw"], status["ota"]["state"]) == (new, "done")
