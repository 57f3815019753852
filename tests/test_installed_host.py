"""The host as a user installs it: a wheel built from the checkout, in a venv of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.sim.screen_lines import parse_screen
from tests.broker import Mosquitto
from tests.virtual_kiosks import wait_until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds a wheel and installs it with its dependencies


def _run(*argv: str | Path, cwd: Path, stdin: bytes | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, input=stdin, capture_output=True, timeout=600, env=env
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    return done.stdout.decode()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ folder of a fresh venv outside the checkout, with the wheel installed."""
    where = tmp_path_factory.mktemp("installed")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", where / "dist", ROOT,
         cwd=where)  # fmt: skip
    wheels = sorted((where / "dist").glob("kiosk_host-*.whl"))
    assert len(wheels) == 1, wheels
    _run(sys.executable, "-m", "venv", where / "venv", cwd=where)
    bin_dir = where / "venv" / "bin"
    _run(bin_dir / "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheels[0], cwd=where)
    yield bin_dir


def test_the_installed_package_runs_from_its_own_files(installed: Path, tmp_path: Path) -> None:
    code = "import kiosk_host.shipped as s; print(s.__file__, s.CHECKOUT, s.FIRMWARE)"
    where, checkout, firmware = _run(installed / "python", "-c", code, cwd=tmp_path).split()
    assert where.startswith(str(installed.parent)), where
    assert checkout == "None"
    shipped = Path(firmware)
    assert sorted(p.name for p in shipped.glob("*.py")) == sorted(
        p.name for p in (ROOT / "firmware").glob("*.py")
    )


def test_the_installed_cli_validates_a_rating(installed: Path, tmp_path: Path) -> None:
    example = json.loads((ROOT / "mqtt_schemas" / "examples" / "event-rating.json").read_text())
    topic, rating = example["topic"], json.dumps(example["valid"][0]["payload"]).encode()
    out = _run(installed / "kiosk-host", "validate", topic, "-", cwd=tmp_path, stdin=rating)
    assert out.strip() == "valid event/rating"


def test_the_installed_virtual_kiosk_reaches_a_mosquitto(
    installed: Path, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    got: list[dict[str, object]] = []
    subscribed = threading.Event()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="installed-watcher")
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe("kiosk/v1/shop-1/till-9/event", 1)
    watcher.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
    watcher.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    kiosk = subprocess.Popen(
        [
            installed / "kiosk-host",
            "virtual-kiosk",
            "--store",
            "shop-1",
            "--device",
            "till-9",
            "--broker",
            mosquitto.url,
            "--state-dir",
            tmp_path / "flash",
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    screens: list[str] = []
    try:
        assert subscribed.wait(10), "the watcher's SUBACK"
        assert kiosk.stdin is not None and kiosk.stdout is not None
        reader = threading.Thread(
            target=lambda: screens.extend(
                s[0] for line in kiosk.stdout or [] if (s := parse_screen(line)) is not None
            ),
            daemon=True,
        )
        reader.start()
        wait_until(lambda: "idle" in screens, 30, "the installed kiosk's idle screen")
        kiosk.stdin.write("press 4\n")
        kiosk.stdin.flush()
        wait_until(lambda: len(got) >= 1, 30, "the rating on the broker")
        assert got[0]["kind"] == "rating" and got[0]["score"] == 4
        kiosk.stdin.write("quit\n")
        kiosk.stdin.flush()
        assert kiosk.wait(15) == 0, kiosk.stderr.read() if kiosk.stderr else ""
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()
        watcher.loop_stop()
        watcher.disconnect()
