"""The kiosk's /main.py: starts the compiled firmware, unless a deployment is on."""

# Written by `kiosk-host deploy`: MicroPython runs only a source main.py, so this one starts
# the compiled firmware: from /rom when the board's ROMFS partition holds it (its code then
# runs from flash, not from the heap), else from /lib; board.mpy is in /lib either way.
# While /deploying exists a deployment is under way: the kiosk stays stopped, without its
# watchdog, and the REPL is free; the deployment removes the file and resets the kiosk.
# (The flag's name is FLAG in kiosk_host/fleet/device_scripts.py.)
import os
import sys


def exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


if exists("/deploying"):
    print("kiosk: a deployment is under way; the kiosk starts when it is done")
else:
    sys.path.insert(0, "/lib")  # so that `main` is the firmware's, not this file
    if exists("/rom/main.mpy"):
        sys.path.insert(0, "/rom")
    import main  # noqa: F401
