"""Start-up on the device: identity, settings, outbox, screens and buttons, then the main loop."""

import json
import sys
import time

import board  # pyright: ignore[reportMissingImports] - the board file, copied as board.py

import machine
from bootguard import BootGuard
from clock import Clock

IDENTITY = "/identity.json"  # store, device and kiosk letter, written when provisioned
CONFIG = "/config.json"
OUTBOX = "/outbox"
WDT_MS = 8000


def safe_mode(display, why: str) -> None:
    """Show the problem and return to the REPL, where a new deployment can be copied in."""
    import texts_en
    from ui import Ui

    Ui(display, texts_en).problem(texts_en.SAFE_MODE, why)


def start() -> None:
    guard = BootGuard("/boots")
    display = board.make_display()
    if not guard.enter():
        safe_mode(display, guard.last_error())
        return
    try:
        import asyncio

        import app
        from buttons import Buttons
        from config import ConfigFile
        from kiosk import Kiosk
        from outbox import Outbox
        from ui import Ui
        from wire import Events

        with open(IDENTITY) as f:
            ident = json.load(f)
        clock = Clock(time)
        kiosk = Kiosk(
            clock,
            Outbox(OUTBOX),
            Events(ident["store"], ident["device"]),
            lambda texts: Ui(display, texts),
            len(board.BUTTONS),
            ident["letter"],
        )
        kiosk.configure(*ConfigFile(CONFIG).load())
        buttons = Buttons(board.button_pins(), board.BUTTON_ACTIVE_LOW, clock, kiosk)
        wdt = machine.WDT(timeout=WDT_MS)
        asyncio.run(app.run(kiosk, buttons, clock, wdt, guard))
    except Exception as e:
        sys.print_exception(e)
        guard.record("%s: %s" % (type(e).__name__, e))
        machine.reset()


start()
