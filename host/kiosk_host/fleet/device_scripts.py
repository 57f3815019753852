"""The MicroPython scripts in `device/`, as the text that mpremote runs on a kiosk.

Each script in device/ is a real module of the MicroPython subset (pyright checks it against
the ESP32 stubs and `make build` compiles it with mpy-cross, like the firmware) that defines
one function, named as its file. `call()` gives the script's text with a last line that calls
that function with the host's arguments, written as Python literals; mpremote sends the
source, as the kiosk compiles it itself. device/main.py is no script but the kiosk's
/main.py, copied onto it as it is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

DEVICE = Path(__file__).resolve().parent / "device"
DEVICE_MAIN_FILE = DEVICE / "main.py"  # the kiosk's /main.py
FLAG = "/deploying"  # while it exists the kiosk stays stopped; device/main.py spells it too
MARK = "KIOSK-DEPLOY "  # the line the device scripts answer with

ScriptArg = str | int | list[str] | dict[str, str]


@cache
def source(name: str) -> str:
    """The text of device/NAME.py."""
    return (DEVICE / f"{name}.py").read_text()


def call(name: str, *args: ScriptArg) -> str:
    """Script `name` and a call of its function `name` with `args`, for `mpremote exec`."""
    return f"{source(name)}\n{name}({', '.join(repr(a) for a in args)})\n"


DEVICE_MAIN = source("main")
