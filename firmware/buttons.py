"""Button scanning: debounce, long press and two-button chords, without allocating per scan.

A press is reported when the button is released (or when it has been held for LONG_MS), so
that the first button of a chord is never taken for a customer's rating.
"""

import asyncio

from micropython import const

_UP = const(0)
_DOWN = const(1)  # down, not yet reported
_DONE = const(2)  # down, already reported (long press or chord): its release says nothing


class Buttons:
    """Scans input pins every SCAN_MS and calls the kiosk's press, long_press and chord."""

    SCAN_MS = 10
    DEBOUNCE_MS = 30  # a level must hold this long to count (contact bounce is shorter)
    LONG_MS = 1500
    CHORD_MS = 3000

    def __init__(self, pins, active_low: bool, clock, target) -> None:
        self.pins = pins
        self.pressed = 0 if active_low else 1  # the pin level while a button is pressed
        self.clock = clock
        self.target = target
        n = len(pins)
        self.state = bytearray(n)
        self.raw = bytearray(n)  # last level read, pressed = 1
        self.since = [0] * n  # ticks when the raw level last changed
        self.down_at = [0] * n  # ticks when the debounced press began
        self.chorded = False  # the chord of the buttons held now has been reported

    def scan(self) -> None:
        clock = self.clock  # its methods are called, never bound: binding one allocates
        now = clock.ticks_ms()
        down = 0
        first = second = -1
        for i in range(len(self.pins)):
            level = 1 if self.pins[i].value() == self.pressed else 0
            if level != self.raw[i]:
                self.raw[i] = level
                self.since[i] = now
            elif clock.since_ms(self.since[i]) >= self.DEBOUNCE_MS:
                st = self.state[i]
                if level and st == _UP:
                    self.state[i] = _DOWN
                    self.down_at[i] = self.since[i]
                elif not level and st != _UP:
                    self.state[i] = _UP
                    if st == _DOWN:
                        self.target.press(i)
            if self.state[i] != _UP:
                down += 1
                if first < 0:
                    first = i
                else:
                    second = i
        if down == 0:
            self.chorded = False
        elif down == 1:
            if self.state[first] == _DOWN and clock.since_ms(self.down_at[first]) >= self.LONG_MS:
                self.state[first] = _DONE
                self.target.long_press(first)
        elif down == 2:
            # two held buttons are a chord, never a rating: their releases say nothing
            self.state[first] = _DONE
            self.state[second] = _DONE
            held = min(clock.since_ms(self.down_at[first]), clock.since_ms(self.down_at[second]))
            if not self.chorded and held >= self.CHORD_MS:
                self.chorded = True
                self.target.chord(first, second)

    async def run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep_ms(self.SCAN_MS)
