"""A whole kiosk on simulated hardware, for tests on the MicroPython VM.

The test presses buttons (pins driven through the real button scanner) and moves the
simulated clock; every screen change is printed as `SCREEN <name>: <text>`, and the outbox
can be read back. This file runs on MicroPython (loaded into the VM as /lib/kiosk_rig.py).
"""

import json
import os

import simclock

# The firmware's modules are imported when a Rig is built, not with this file, so that a
# test can measure the firmware's own heap apart from the simulation's.

WALL = 1763900000  # 2025-11-23 12:13:20 UTC
CONFIG = {
    "v": 1,
    "prompt": "How did we do today?",
    "language": "en",
    "scale": 4,
    "low_threshold": 2,
    "response_interval_s": 5,
    "follow_up_timeout_s": 20,
    "code_display_s": 60,
    "confirm_timeout_s": 60,
    "telemetry_interval_s": 60,
    "station": "till-1",
    "staff": [{"id": "ana", "name": "Ana"}, {"id": "ben-k", "name": "Ben K."}],
}


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # already there


class Rig:
    STEP_MS = 10  # the button scanner's period

    def __init__(self, board, conf=CONFIG, letter="A", echo=True, synced=True, outbox=None):
        import config as configmod
        from buttons import Buttons
        from clock import Clock
        from kiosk import Kiosk
        from outbox import Outbox
        from wire import Events

        self.t = simclock.reset(start_ticks=(1 << 30) - 5000, wall_s=WALL)
        self.clock = Clock(self.t)
        if synced:
            self.clock.set_wall(WALL)
        self.board = board
        self.display = board.make_display()
        self.pins = board.button_pins()
        self.n = len(self.pins)
        for i in range(self.n):  # released, as the board's pull-ups (internal or not) hold it
            self._drive(i + 1, False)
        _mkdir("/flash")
        self.outbox = outbox or Outbox("/flash/outbox")
        self.echo = echo
        self.screen = ("", "")
        self.changes = 0
        self.kiosk = Kiosk(
            self.clock, self.outbox, Events("store-12", "till-1"), self._ui, self.n, letter
        )
        self.buttons = Buttons(self.pins, board.BUTTON_ACTIVE_LOW, self.clock, self.kiosk)
        if conf is None:
            self.kiosk.configure(None, "config: none on this kiosk yet")
        else:
            self.kiosk.configure(*configmod.parse(json.dumps(conf).encode()))

    def _ui(self, texts):
        from ui import Ui

        return Ui(self.display, texts, self._changed)

    def _changed(self, name, text):
        self.screen = (name, text)
        self.changes += 1
        if self.echo:
            print("SCREEN %s: %s" % (name, text))

    def sleep(self, ms, step=STEP_MS):
        """Let `ms` of simulated time pass, scanning buttons and ticking as the device does."""
        while ms > 0:
            dt = min(step, ms)
            self.t.advance(dt)
            self.buttons.scan()
            self.kiosk.tick()
            ms -= dt

    def _drive(self, button, down):
        pressed = 0 if self.board.BUTTON_ACTIVE_LOW else 1
        self.pins[button - 1].drive(pressed if down else 1 - pressed)

    def press(self, button, ms=100):
        """Press and release `button` (1 = leftmost), as a customer's tap."""
        self.hold(button, ms)

    def hold(self, button, ms):
        self._drive(button, True)
        self.sleep(ms)
        self._drive(button, False)
        self.sleep(60)

    def chord(self, a, b, ms):
        self._drive(a, True)
        self._drive(b, True)
        self.sleep(ms)
        self._drive(a, False)
        self._drive(b, False)
        self.sleep(60)

    def events(self, ack=False):
        """The unacknowledged events in the outbox, oldest first (acknowledged if `ack`)."""
        out = []
        after = 0
        while True:
            rec = self.outbox.peek(after)
            if rec is None:
                break
            after = rec[0]
            out.append(rec[1])
            if ack:
                self.outbox.ack(after)
        return out

    def print_events(self):
        for payload in self.events():
            print("EVENT " + payload.decode())
