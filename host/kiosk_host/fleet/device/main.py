"""The kiosk's /main.py: starts the firmware compiled in /lib, unless a deployment is on."""

# Written by `kiosk-host deploy`: MicroPython runs only a source main.py, so this one starts
# the compiled firmware in /lib. While /deploying exists a deployment is under way: the kiosk
# stays stopped, without its watchdog, and the REPL is free; the deployment removes the file
# and resets the kiosk. (The flag's name is FLAG in kiosk_host/fleet/device_scripts.py.)
import os
import sys


def deploying() -> bool:
    try:
        os.stat("/deploying")
        return True
    except OSError:
        return False


if deploying():
    print("kiosk: a deployment is under way; the kiosk starts when it is done")
else:
    sys.path.insert(0, "/lib")  # so that `main` is the firmware's, not this file
    import main  # noqa: F401
