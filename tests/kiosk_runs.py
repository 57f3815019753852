"""Runs a kiosk scenario on the MicroPython VM and reads back its screens and events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kiosk_host.sim.screen_lines import parse_screen
from kiosk_host.wire.contract import Contract, Message
from tests.vm.mpvm import BOARDS_DIR, MicroPythonVM, board_stems, firmware_modules, vm_files

RIG = BOARDS_DIR.parent / "tests" / "vm" / "kiosk_rig.py"
TOPIC = "kiosk/v1/store-12/till-1/event"
MONO = "esp32_devkitc_ssd1306"
BOARDS = tuple(board_stems())


@dataclass
class KioskRun:
    screens: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # everything else the scenario printed

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.screens]

    @property
    def last(self) -> tuple[str, str]:
        return self.screens[-1]


def run_kiosk(
    mpvm: MicroPythonVM, script: str, board: str = MONO, rig_args: str = "", extra: str = ""
) -> KioskRun:
    """Build a Rig on `board`, run `script` (MicroPython using `rig`), return what it showed.

    Every event left in the outbox is checked against the contract on the way out.
    """
    code = (
        f"import {board} as board\n"
        "from kiosk_rig import Rig, CONFIG\n"
        f"{extra}\n"
        f"rig = Rig(board{', ' + rig_args if rig_args else ''})\n"
        f"{script}\n"
        "rig.print_events()\n"
    )
    files = vm_files(RIG, BOARDS_DIR / f"{board}.py")
    out = mpvm.run(code, firmware_modules(), files=files).ok()
    run = KioskRun()
    contract = Contract.load()
    for line in out.splitlines():
        shown = parse_screen(line)
        if shown is not None:
            run.screens.append(shown)
        elif line.startswith("EVENT "):
            payload = line[len("EVENT ") :].encode()
            result = contract.validate(TOPIC, payload)
            assert isinstance(result, Message), f"{result}: {payload!r}"
            run.events.append(json.loads(payload))
        else:
            run.lines.append(line)
    return run
