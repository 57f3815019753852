"""The kiosk's USB serial line: does MicroPython answer on it, is it back after a reset."""

from __future__ import annotations

import os
import select
import termios
import time
import tty
from contextlib import suppress

from kiosk_host.fleet.deploy_errors import DeployError, NotMicroPython, PortMissing
from kiosk_host.shipped import CHECKOUT

PROBE_S = 5.0  # for a kiosk to answer MicroPython's raw REPL
REBOOT_S = 20.0  # for a kiosk to come back after a reset
_MPREMOTE = "mpremote" if CHECKOUT is None else ".venv/bin/mpremote"  # as a person types it


def probe(port: str, timeout: float = PROBE_S) -> None:
    """Check that MicroPython answers on `port`: Ctrl-C, then Ctrl-A for its raw REPL."""
    if not os.path.exists(port):
        raise PortMissing(
            f"there is no serial port {port}: plug the kiosk in by USB and find its port "
            f"(`ls /dev/ttyUSB* /dev/ttyACM*`, or `{_MPREMOTE} connect list`), "
            "then pass it as PORT"
        )
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        raise DeployError(
            f"no permission to open {port}: add yourself to its group "
            f"(`sudo usermod -aG dialout $USER`, then log in again)"
        ) from None
    except OSError as why:
        raise PortMissing(f"cannot open {port} ({why.strerror}): plug the kiosk in again") from None
    got = b""
    try:
        if os.isatty(fd):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = termios.B115200
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        _drain(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.write(fd, b"\r\x03\x03\r\x01")  # interrupt whatever runs, then the raw REPL
            got += _read_for(fd, min(1.0, max(0.0, deadline - time.monotonic())))
            if b"raw REPL; CTRL-B to exit" in got:
                os.write(fd, b"\r\x02")  # back to the friendly REPL, as it was found
                return
    finally:
        os.close(fd)
    what = (
        "nothing came back"
        if not got
        else f"what came back is not MicroPython's raw REPL ({got[:40]!r})"
    )
    raise NotMicroPython(
        f"{port} does not answer as MicroPython ({what}). Check that it is the kiosk's port "
        "and that no serial monitor (screen, minicom, another mpremote) has it open; a board "
        "without MicroPython needs it installed first: `esptool.py --port PORT erase_flash`, "
        "then `esptool.py --port PORT write_flash -z 0x1000 ESP32_GENERIC-<version>.bin` "
        "(from https://micropython.org/download/ESP32_GENERIC/)"
    )


def _drain(fd: int) -> None:
    with suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


def _read_for(fd: int, seconds: float) -> bytes:
    got = b""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0 or b"raw REPL; CTRL-B to exit" in got:
            return got
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, OSError):
                chunk = b""
            if not chunk:
                time.sleep(0.05)  # a pty with nobody on the other end reads empty
            got += chunk


def wait_for_reboot(port: str, timeout: float = REBOOT_S) -> None:
    """Wait until the kiosk answers again after a reset (its port may vanish meanwhile)."""
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while True:
        try:
            probe(port, min(3.0, max(0.5, deadline - time.monotonic())))
            return
        except DeployError:
            if time.monotonic() > deadline:
                raise DeployError(
                    f"the kiosk on {port} did not come back within {timeout:.0f} s of its "
                    "reset: unplug it, plug it in again, and deploy again"
                ) from None
            time.sleep(0.5)
