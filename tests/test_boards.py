"""Every board file loads on MicroPython and names what the firmware needs of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk_host.shipped import ROOT
from tests.vm.mpvm import MicroPythonVM

BOARDS = sorted((ROOT / "boards").glob("*.py"))


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_file_describes_its_hardware(mpvm: MicroPythonVM, path: Path) -> None:
    code = (
        f"import json, {path.stem} as b\n"
        "print(json.dumps([b.NAME, b.DISPLAY, b.WIDTH, b.HEIGHT, list(b.BUTTONS),"
        " b.BUTTON_ACTIVE_LOW]))\n"
    )
    name, display, width, height, buttons, active_low = json.loads(
        mpvm.run(code, files={f"/lib/{path.name}": path.read_text()}).ok()
    )
    assert name == path.stem.replace("_", "-")
    assert display
    assert width > 0 and height > 0
    assert 3 <= len(buttons) <= 5  # one button per point of the scale
    assert len(set(buttons)) == len(buttons)
    assert isinstance(active_low, bool)


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_file_names_the_rest_and_its_factories(mpvm: MicroPythonVM, path: Path) -> None:
    code = (
        f"import json, {path.stem} as b\n"
        "print(json.dumps([b.COLOUR, b.LED, b.BUZZER, callable(b.make_display),"
        " callable(b.button_pins)]))\n"
    )
    colour, led, buzzer, *factories = json.loads(
        mpvm.run(code, files={f"/lib/{path.name}": path.read_text()}).ok()
    )
    assert isinstance(colour, bool)
    assert led is None or isinstance(led, int)
    assert buzzer is None or isinstance(buzzer, int)
    assert factories == [True, True]
