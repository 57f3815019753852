"""The firmware type check uses the ESP32 stubs: an API the ESP32 port lacks is an error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kiosk_host.shipped import ROOT


def pyright(tmp_path: Path, source: str) -> list[str]:
    config = json.loads((ROOT / "pyrightconfig.firmware.json").read_text())
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "probe.py").write_text(source)
    shutil.copy(ROOT / "firmware" / "wire.py", firmware / "wire.py")
    config["include"] = ["firmware"]
    for key in ("typeshedPath", "stubPath"):
        config[key] = str(ROOT / config[key])
    config["extraPaths"] = [str(ROOT / p) for p in config.get("extraPaths", [])]
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [str(ROOT / "node_modules" / ".bin" / "pyright"), "--outputjson", "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    report = json.loads(proc.stdout)
    return [d["message"] for d in report["generalDiagnostics"] if d["severity"] == "error"]


def test_esp32_apis_pass(tmp_path: Path) -> None:
    source = (
        "import machine, time, network, wire\n"
        "p = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)\n"
        "d = time.ticks_diff(time.ticks_ms(), time.ticks_add(time.ticks_ms(), 5))\n"
        "w = network.WLAN(network.STA_IF)\n"
        "ok = wire.is_identifier('till-1')\n"
    )
    assert pyright(tmp_path, source) == []


def test_apis_the_esp32_port_lacks_are_errors(tmp_path: Path) -> None:
    source = (
        "import machine, time\n"
        "machine.Pin(0).toggle_twice()\n"  # no such method
        "time.monotonic_ns()\n"  # CPython's, not MicroPython's
    )
    errors = pyright(tmp_path, source)
    assert any("toggle_twice" in e for e in errors), errors
    assert any("monotonic_ns" in e for e in errors), errors
