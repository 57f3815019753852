"""`make screens`: a PNG of every kiosk screen on every board, as the firmware paints it, in
build/docs/screens/ (`make docs` copies them into docs/screens/).

The real firmware runs on the MicroPython VM with simulated hardware; every bus write is
recorded and fed to an emulator of the board's panel controller (tests/vm/panels.py), so
each picture is what the glass would show, bands, offsets and colour order included.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.vm.mpvm import (
    BOARDS_DIR,
    ROOT,
    MicroPythonVM,
    board_buttons,
    firmware_modules,
    vm_files,
)
from tests.vm.panels import BOARDS, TRACE_DUMP, TRACE_ON, parse_traces

RIG = ROOT / "tests" / "vm" / "kiosk_rig.py"
SCREENS_DIR = ROOT / "build" / "docs" / "screens"  # not docs/: `make docs` refreshes that

# The screens in the order a scenario reaches them; `{n}` is the number of buttons.
SCENARIO = """
rig = Rig(board, conf=conf, echo=False)
dump_trace('idle')
rig.press({n})
dump_trace('thanks')
rig.sleep(8000, 100)
rig.press(1)
dump_trace('sorry')
rig.press({n})
dump_trace('code')
rig.sleep(61000, 1000)
rig.kiosk.confirm_recovery('A7K36')
dump_trace('confirm')
rig.press(1)
rig.sleep(4000, 100)
rig.kiosk.set_cases([('A7K36', 1763900000 + 5 * 3600), ('B2XZ9', 1763900000 + 20 * 3600)])
rig.chord(1, {n}, 3100)
dump_trace('staff')
rig.press(1)
rig.kiosk.apply_config(json.dumps(dict(conf, scale=7)).encode())
dump_trace('problem')
rig.sleep(11000, 1000)
german = dict(conf, language='de', prompt='Wie waren wir heute?')
rig.kiosk.apply_config(json.dumps(german).encode())
dump_trace('idle-de')
rig.press({n})
dump_trace('thanks-de')
rig.sleep(8000, 100)
rig.press(1)
dump_trace('sorry-de')
rig.press(1)
rig.sleep(4000, 100)
rig.kiosk.confirm_recovery('A7K36')
dump_trace('confirm-de')
"""


def capture(mpvm: MicroPythonVM, stem: str, out_dir: Path) -> list[Path]:
    """Paint every screen on the board `stem`; one PNG per screen in `out_dir`."""
    board = BOARDS[stem]
    n = board_buttons(stem)
    conf = "dict(CONFIG, scale=3, low_threshold=1)" if n == 3 else "CONFIG"
    code = (
        TRACE_DUMP
        + TRACE_ON
        + "import json\nimport board\nfrom kiosk_rig import Rig, CONFIG\n"
        + f"conf = {conf}\n"
        + SCENARIO.format(n=n)
    )
    files = vm_files(RIG)
    files["/lib/board.py"] = (BOARDS_DIR / f"{stem}.py").read_text()
    out = mpvm.run(code, firmware_modules(), files=files).ok()
    panel = board.panel()
    written = []
    for screen, events in parse_traces(out).items():
        panel.feed(events)
        path = out_dir / f"{stem}-{screen}.png"
        panel.picture().save_png(path)
        written.append(path)
    return written


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    vm = MicroPythonVM(heapsize=64 * 1024 * 1024)  # the traces of a colour screen are large
    for stem in BOARDS:
        for path in capture(vm, stem, out_dir):
            print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SCREENS_DIR)
