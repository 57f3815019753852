"""The provisioned fleet (the kiosks' folders in var/devices): fleet commands refuse a kiosk
that was never provisioned before they reach for the broker, and `devices` lists the
provisioned kiosks that never connected."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kiosk_host.storage.sqlite import Storage
from tests.broker import free_port
from tests.cli_run import run_cli
from tests.fleet_rig import provision


def kiosk_host(*args: str) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGS`, in this process."""
    return run_cli(args)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """store-12 with till-1, till-2 and till-3 provisioned into tmp_path/devices; no broker."""
    devices = tmp_path / "devices"
    for name in ("till-1", "till-2", "till-3"):
        provision(tmp_path / "broker", devices / "store-12" / name, "store-12", name,
                  "mqtt://broker.shop.example:1883")  # fmt: skip
    return devices


def command(devices: Path, *args: str) -> tuple[int, str]:
    """A fleet command against a port nobody listens on: only a refusal before any connection
    differs from "no connection to the broker"."""
    broker = f"mqtt://kiosk-fleet@127.0.0.1:{free_port()}"
    done = kiosk_host(*args, "--devices-dir", str(devices), "--broker", broker)
    assert done.stdout == ""
    return done.returncode, done.stderr


def test_a_kiosk_never_provisioned_is_refused_with_the_names_it_may_mean(fleet: Path) -> None:
    code, said = command(fleet, "identify", "till-9", "--store", "store-12")
    assert code == 2
    assert said == (
        f"kiosk-host: no kiosk till-9 was provisioned in store store-12 (in {fleet}/store-12: "
        "till-1, till-2, till-3); did you mean till-1, till-2 or till-3?\n"
    )
    code, said = command(fleet, "reboot", "till-1", "--store", "store-21")
    assert code == 2
    assert said == (
        f"kiosk-host: no store store-21 was provisioned in {fleet} (its stores: store-12); "
        "did you mean store-12?\n"
    )
    code, said = command(fleet, "config", "push", "--store", "store-12", "--device", "kitchen",
                         "--set", "prompt=Hello")  # fmt: skip
    assert code == 2
    assert said.startswith("kiosk-host: no kiosk kitchen was provisioned in store store-12")
    assert "did you mean" not in said  # nothing is close to it
    code, said = command(fleet, "config", "push", "--store", "store-99", "--set", "prompt=Hi")
    assert code == 2 and "no store store-99 was provisioned" in said


def test_a_provisioned_kiosk_goes_on_to_the_broker(fleet: Path, tmp_path: Path) -> None:
    code, said = command(fleet, "identify", "till-2", "--store", "store-12")
    assert code == 2 and said.startswith("kiosk-host: no connection to the broker at ")
    # with no provisioned kiosk in the folder there is nothing to check against: it says so
    code, said = command(tmp_path / "elsewhere", "reboot", "till-2", "--store", "store-12")
    lines = said.splitlines()
    assert lines[0] == (
        f"kiosk-host: note: no provisioned kiosks in {tmp_path / 'elsewhere'} to check "
        "store-12/till-2 against: give --devices-dir where provisioning wrote them"
    )
    assert code == 2 and lines[1].startswith("kiosk-host: no connection to the broker at ")


def test_devices_lists_the_provisioned_kiosks_that_never_connected(
    fleet: Path, tmp_path: Path
) -> None:
    db = tmp_path / "kiosk.db"
    Storage.open(str(db), create=True).close()  # as `serve` makes it, before any kiosk came
    done = kiosk_host("devices", "--db", str(db), "--devices-dir", str(fleet), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    board = "esp32-devkitc-ssd1306"  # the board fleet_rig.provision gives
    assert [(r["store"], r["device"], r["state"], r["board"]) for r in rows] == [
        ("store-12", name, "never seen", board) for name in ("till-1", "till-2", "till-3")
    ]
    assert all(r["since"] is None and r["fw"] is None for r in rows)
    text = kiosk_host("devices", "--db", str(db), "--devices-dir", str(fleet))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == (
        "store-12/till-1: never seen (provisioned, board esp32-devkitc-ssd1306; it has not "
        "connected yet: flash it, or check its Wi-Fi and broker)"
    )
    assert len(text.stdout.splitlines()) == 3
    where = ("--db", str(db), "--devices-dir", str(fleet))
    one = kiosk_host("devices", *where, "--store", "store-12")
    assert one.returncode == 0, one.stderr  # a store of the fleet before any kiosk came
    assert len(one.stdout.splitlines()) == 3
    typo = kiosk_host("devices", *where, "--store", "store-21")
    assert typo.returncode == 2 and "no such store" in typo.stderr
    nothing = kiosk_host("devices", "--db", str(db), "--devices-dir", str(tmp_path / "none"))
    assert nothing.returncode == 0 and nothing.stdout == ""
