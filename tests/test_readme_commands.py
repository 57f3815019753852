"""The README's store set-up, run as it stands: a broker, three kiosks, one flashed and online.

The commands are read from the README (the `sh` block after its `<!-- store-setup -->`
line), so that the README and this test cannot drift apart. The values a technician sets
first (the README's `export` lines) are a test's own here: the broker on a free port of this
machine, and a serial kiosk (MicroPython's VM behind a pseudo-terminal) as the board on the
USB cable. The commands run in a folder of their own, as they would in the checkout's.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from kiosk_host.demo.broker import accepts
from kiosk_host.fleet.firmware_image import firmware_version
from kiosk_host.sim.serial_kiosk import SerialKiosk
from tests.broker import free_port
from tests.fleet_rig import broker_pid, identity, open_folder
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import ROOT

README = ROOT / "README.md"
MARKER = "<!-- store-setup -->"

pytestmark = pytest.mark.e2e


def readme_commands(text: str) -> list[str]:
    """The commands of the README's store set-up, a continued line joined to its command."""
    after = text.split(MARKER, 1)[1]
    assert after.startswith("\n```sh\n"), "the store set-up's block must follow its marker"
    block = after.removeprefix("\n```sh\n").split("\n```\n", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending)
        pending = ""
    assert not pending and commands
    return commands


def readme_variables(text: str) -> dict[str, str]:
    """What the README tells a technician to set before the set-up: its `export` lines."""
    before = text.split(MARKER, 1)[0]
    found: dict[str, str] = {}
    for line in before.splitlines():
        if line.startswith("export "):
            found.update(re.findall(r"([A-Z_]+)=('[^']*'|\S+)", line))
    return found


def test_readme_commands_set_up_a_store_and_flash_a_kiosk_that_comes_online() -> None:
    text = README.read_text()
    commands = readme_commands(text)
    documented = readme_variables(text)
    used = set(re.findall(r"\$([A-Z_]+)", " ".join(commands)))
    assert used == set(documented), "every value the commands use is one the README sets"
    with open_folder("kiosk-store-") as store:
        kiosk = SerialKiosk(store / "board-flash", store / "ttyUSB0")  # the board on the cable
        values = {
            "BROKER_IP": "127.0.0.1",
            "MQTT_PORT": str(free_port()),
            "WIFI_SSID": "shop-floor",
            "WIFI_KEY": "the shop's own key",
            "KIOSK_PORT": kiosk.port,
        }
        assert set(values) == used
        outside = ("KIOSK_BROKER", "KIOSK_BROKER_PASSWORD", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        env = {k: v for k, v in os.environ.items() if k not in outside}
        env |= values | {"PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        port = int(values["MQTT_PORT"])
        said: list[str] = []
        with kiosk:
            try:
                for cmd in commands:
                    done = subprocess.run(
                        ["bash", "-c", cmd], cwd=store, env=env, text=True, capture_output=True,
                        timeout=600, check=False,
                    )  # fmt: skip
                    assert done.returncode == 0, f"{cmd}\n{done.stdout}{done.stderr}"
                    said.append(done.stdout)
                    if cmd.startswith("/usr/sbin/mosquitto"):  # in the background, as it says
                        wait_until(lambda: accepts(port), 10, "the broker to listen")
            finally:
                screens = kiosk.screens()
        init, _start, *provisioned, flashed = said
        # broker init prints the very command the README runs next
        assert init.splitlines()[-1] == f"start the broker with: {commands[1]}"
        pid = broker_pid(store / "var" / "broker" / "state" / "mosquitto.pid")
        assert pid is not None
        for out in provisioned:  # each new account reaches the running broker
            assert out.splitlines()[-1] == (
                f"broker reloaded (pid {pid}): it reads the accounts again"
            )
        for name in ("till-1", "till-2", "till-3"):
            ident = identity(store / "var" / "devices" / "store-12" / name)
            assert (ident["host"], ident["port"]) == ("127.0.0.1", int(values["MQTT_PORT"]))
        # deploy watched the kiosk's status with the fleet tools' account, unasked
        assert flashed.splitlines()[-1].startswith(
            f"deployed till-1 (store-12): online with firmware {firmware_version()}"
        )
        assert ("idle", "How did we do today?") in screens
        on_board = (store / "board-flash" / "identity.json").read_text()
        assert '"device":"till-1"' in on_board.replace(" ", "")
