"""Start-up on the device: identity, settings, outbox, screens and buttons, then the main loop."""

import json
import sys
import time

import board  # pyright: ignore[reportMissingImports] - the board file, copied as board.py

import logring
import machine
from bootguard import BootGuard
from clock import Clock

# Written when the kiosk is provisioned: store, device, letter, host, port, ssid, key, user,
# password, fw, and ca when the broker speaks TLS: the name of the CA certificate file that
# is copied beside it.
IDENTITY = "/identity.json"
CONFIG = "/config.json"
OUTBOX = "/outbox"
IDS = "/cmd-ids.json"  # the last commands acted on, so a redelivered one is not repeated
WDT_MS = 8000
# machine.reset_cause() on the ESP32 port, by value, for the boot line of the log
RESET_CAUSES = ("", "power on", "hard reset", "watchdog", "deep sleep", "soft reset")


def safe_mode(display, why: str) -> None:
    """Show the problem and return to the REPL, where a new deployment can be copied in."""
    import texts_en
    from ui import Ui

    Ui(display, texts_en).problem(texts_en.SAFE_MODE, why)


def _ids_file():
    try:
        with open(IDS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def _save_ids(ids) -> None:
    with open(IDS, "w") as f:
        json.dump(ids, f)


def _save_wifi(ssid: str, key: str) -> None:
    """A new Wi-Fi that the kiosk has joined and reached the broker over: kept on flash."""
    import wifi_trial

    wifi_trial.store(IDENTITY, ssid, key)


def _boot_line(fw: str) -> str:
    cause = machine.reset_cause()
    why = RESET_CAUSES[cause] if 0 < cause < len(RESET_CAUSES) else "reset cause %d" % cause
    return "boot: firmware %s, after %s" % (fw, why)


def _ntp() -> int:
    import ntptime

    return Clock.unix_from_port(ntptime.time(), time.gmtime(0)[0])


def _blink(seconds: int) -> None:
    """Identify: the LED flashes (and the buzzer clicks) for `seconds`."""
    import asyncio

    async def flash():
        pins = [machine.Pin(p, machine.Pin.OUT) for p in (board.LED, board.BUZZER) if p is not None]
        for i in range(seconds * 4):
            for pin in pins:
                pin.value(i & 1)
            await asyncio.sleep_ms(125)
        for pin in pins:
            pin.value(0)

    asyncio.create_task(flash())


def start() -> None:
    guard = BootGuard("/boots")
    display = board.make_display()
    if not guard.enter():
        safe_mode(display, guard.last_error())
        return
    try:
        import asyncio
        import gc

        import app
        import network
        from buttons import Buttons
        from config import ConfigFile
        from kiosk import Kiosk
        from link import Link
        from outbox import Outbox
        from ui import Ui
        from wire import Events

        with open(IDENTITY) as f:
            ident = json.load(f)
        ident["board"] = board.NAME
        import fwslot  # the factory's, already loaded by /main.py before any update's path

        slots = fwslot.Slots("/fw")
        ident["fw"] = slots.version(ident.get("fw", "?"))  # the version running
        import rompart

        try:
            import vfs
        except ImportError:
            vfs = None  # a MicroPython before 1.23: no ROMFS, so no partitions
        rom = rompart.RomParts(vfs)
        if rom.count() >= rompart.PARTITIONS:
            # Releases come as ROMFS images, written into a partition and run in place.
            ident["takes"] = "romfs"
        else:
            rom = None  # releases come as .mpy files, run from a slot's folder
        if ident.get("ca"):
            ident["ca"] = "/" + ident["ca"]
        clock = Clock(time)
        logring.add(_boot_line(ident.get("fw", "?")), clock.uptime_ms())
        outbox = Outbox(OUTBOX)
        kiosk = Kiosk(
            clock,
            outbox,
            Events(ident["store"], ident["device"]),
            lambda texts: Ui(display, texts),
            len(board.BUTTONS),
            ident["letter"],
        )
        config_file = ConfigFile(CONFIG)
        kiosk.configure(*config_file.load())
        buttons = Buttons(board.button_pins(), board.BUTTON_ACTIVE_LOW, clock, kiosk)
        wlan = network.WLAN(network.STA_IF)
        hw = {
            "ntp": _ntp,
            "heap_free": gc.mem_free,
            "rssi": lambda: wlan.status("rssi") if wlan.isconnected() else None,
            "identify": _blink,
            "reboot": machine.reset,
            "save_config": config_file.save,
            "load_ids": _ids_file,
            "save_ids": _save_ids,
            "save_wifi": _save_wifi,
            "slots": slots,
            "rom": rom,
        }
        link = Link(kiosk, outbox, clock, wlan, ident, hw)
        wdt = machine.WDT(timeout=WDT_MS)
        asyncio.run(app.run(kiosk, buttons, clock, wdt, guard, link))
    except Exception as e:  # anything at all: record it, then restart
        sys.print_exception(e)
        guard.record("%s: %s" % (type(e).__name__, e))
        machine.reset()


start()
