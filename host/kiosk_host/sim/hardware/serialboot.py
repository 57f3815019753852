"""Power-up of the serial kiosk: the simulated parts wired to the bridge, a host folder as flash.

Written for the serial kiosk's bridge (`serial_kiosk.mjs`), which starts a fresh VM for every
boot and calls `power_up()` before boot.py and main.py. Afterwards the simulated `machine`,
`network` and `ntptime` are loaded as the port's built-in modules are, the host folder is the
VFS at `/`, and:

* the watchdog and resets go to the bridge, which restarts the VM as the chip restarts;
* `asyncio.run` starts the main task and returns, for this port's event loop is the host's;
  the bridge then counts the program as running until Ctrl-C, as on the device;
* `asyncio.open_connection` reaches the host's network (`hostnet`), and the simulated
  access point takes the Wi-Fi name and key that the kiosk's /identity.json gives;
* every screen the firmware shows is reported to the bridge through the Ui's `on_change`.
"""

import asyncio
import json
import os
import sys
import time

import kioskhost  # pyright: ignore[reportMissingImports] - registered by the bridge
import vfs

import hostflash
import hostnet
import machine
import network
import ntptime  # noqa: F401 - loaded now: the flash at / hides where it came from
import simclock

WIFI_CONNECT_MS = 300
main_task = None  # the task asyncio.run started


class HostClock:
    """The simulated hardware's clock in real time; ticks wrap as the port's do."""

    def elapsed_ms(self) -> int:
        return kioskhost.elapsed_ms()

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_add(self, ticks, delta):
        return time.ticks_add(ticks, delta)

    def ticks_diff(self, end, start):
        return time.ticks_diff(end, start)

    def time(self) -> int:
        return kioskhost.unix_time()

    def sleep_ms(self, ms: int) -> None:
        time.sleep_ms(ms)


class Watchdog:
    """machine.WDT: the bridge restarts the VM when it is not fed within `timeout` ms, and
    keeps counting after Ctrl-C and soft resets, as the ESP32's does."""

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self.timeout = timeout
        self.fed = 0
        kioskhost.wdt_start(timeout)

    def feed(self) -> None:
        self.fed += 1
        kioskhost.wdt_feed()


class Restart(BaseException):
    """The chip is restarting: nothing after a reset runs, and no `except Exception` stops it."""


def reset() -> None:
    kioskhost.reset("hard")
    raise Restart()


def soft_reset() -> None:
    kioskhost.reset("soft")
    raise Restart()


def _run(main) -> None:
    """asyncio.run: the task runs on the host's event loop; an exception that ends it
    restarts the kiosk, as the device's start-up does when asyncio.run raises."""
    kioskhost.program()

    async def supervised():
        try:
            await main
        except Exception as e:
            sys.print_exception(e)
            machine.reset()

    global main_task
    main_task = asyncio.create_task(supervised())


def _join_shop_wifi() -> None:
    ap = network.access_point  # pyright: ignore[reportAttributeAccessIssue] - simulated
    ap["connect_ms"] = WIFI_CONNECT_MS
    try:
        with open("/identity.json") as f:
            ident = json.load(f)
        ap["ssid"] = ident["ssid"]
        ap["key"] = ident["key"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not provisioned yet: the kiosk says so on its screen


def _watch_screens() -> None:
    try:
        import ui  # pyright: ignore[reportMissingImports] - the firmware on the flash
    except Exception:
        return  # no firmware (yet): nothing shows screens
    init = ui.Ui.__init__

    def watched(self, display, texts, on_change=None) -> None:
        init(self, display, texts, on_change or kioskhost.screen)

    ui.Ui.__init__ = watched


def power_up(cause: int) -> None:
    simclock.clock = HostClock()
    machine.WDT = Watchdog
    machine.reset = reset
    machine.soft_reset = soft_reset
    machine._reset_cause = cause  # pyright: ignore[reportAttributeAccessIssue] - simulated
    asyncio.run = _run
    asyncio.open_connection = hostnet.open_connection
    vfs.umount("/")
    vfs.mount(hostflash.HostFlash(), "/")
    os.chdir("/")
    _join_shop_wifi()
    _watch_screens()


def run_file(name: str) -> None:
    """Run boot.py or main.py from the flash, if it is there, as the device's start-up does."""
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return
    try:
        exec(source, {"__name__": "__main__", "__file__": name})
    except Restart:
        raise
    except SystemExit:
        pass
    except BaseException as e:
        sys.print_exception(e)
