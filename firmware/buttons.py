"""Button scanning: debounce, long press and two-button chords, without allocating per scan.

A press is reported when the button is released (or when it has been held for LONG_MS), so
that the first button of a chord is never taken for a customer's rating.

Every edge is latched by the pin's interrupt, with its time, into a preallocated ring, and
each scan replays the edges that came since the last one before it reads the pins. So a call
that keeps the loop from scanning (flash compaction, DNS, a TLS handshake) delays the screen
but loses no press: the presses made meanwhile are judged by their own times, in order.
"""

import asyncio

from micropython import const

_UP = const(0)
_DOWN = const(1)  # down, not yet reported
_DONE = const(2)  # down, already reported (long press or chord): its release says nothing
# Edges latched between two scans. A press is two edges, a few more while its contacts
# bounce; 64 holds a 3 s stall with a handful of presses. When it is full, later edges are
# dropped and the next scan's read of the pins puts each button right again.
_RING = const(64)
_MASK = const(63)


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
        self.raw = bytearray(n)  # last level seen, pressed = 1
        self.since = [0] * n  # ticks when the raw level last changed
        self.down_at = [0] * n  # ticks when the debounced press began
        self.chorded = False  # the chord of the buttons held now has been reported
        # The ring the interrupt writes and the scan reads: button << 1 | pressed, and ticks.
        # Only the interrupt moves `head` and only the scan moves `tail`, so neither locks.
        self.edge = bytearray(_RING)
        self.edge_at = [0] * _RING
        self.head = 0
        self.tail = 0
        self.lost = 0  # edges dropped on a full ring, for a technician
        # hard: the handler runs in the interrupt itself, not through the scheduler, whose
        # queue (8 entries) would overflow, and whose callbacks wait, during a long call.
        handler = self._latch  # bound once: the interrupt must not allocate
        for p in pins:
            # Both edges, whichever way the board is wired: a press is reported on release.
            p.irq(handler, p.IRQ_FALLING | p.IRQ_RISING, hard=True)

    def _latch(self, pin) -> None:
        # Runs in the pin's interrupt: no allocation, only small ints into the ring.
        h = self.head
        nxt = (h + 1) & _MASK
        if nxt == self.tail:
            self.lost += 1
            return
        pins = self.pins
        for i in range(len(pins)):
            if pins[i] is pin:
                self.edge_at[h] = self.clock.ticks_ms()
                self.edge[h] = i << 1 | (1 if pin.value() == self.pressed else 0)
                self.head = nxt
                return

    def scan(self) -> None:
        clock = self.clock  # its methods are called, never bound: binding one allocates
        # The latched edges first, each judged at its own time (`back` ms ago).
        while self.tail != self.head:
            t = self.tail
            e = self.edge[t]
            back = clock.since_ms(self.edge_at[t])
            self.tail = (t + 1) & _MASK
            self._judge(back)
            i = e >> 1
            if e & 1 != self.raw[i]:
                self.raw[i] = e & 1
                self.since[i] = self.edge_at[t]
        # Then the pins as they are now: an edge the ring missed is caught here.
        now = clock.ticks_ms()
        for i in range(len(self.pins)):
            level = 1 if self.pins[i].value() == self.pressed else 0
            if level != self.raw[i]:
                self.raw[i] = level
                self.since[i] = now
        self._judge(0)

    def _judge(self, back: int) -> None:
        """Debounce, press, long press and chord as of `back` ms ago, from the raw levels."""
        clock = self.clock
        down = 0
        first = second = -1
        for i in range(len(self.pins)):
            if clock.since_ms(self.since[i]) - back >= self.DEBOUNCE_MS:
                level = self.raw[i]
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
            held = clock.since_ms(self.down_at[first]) - back
            if self.state[first] == _DOWN and held >= self.LONG_MS:
                self.state[first] = _DONE
                self.target.long_press(first)
        elif down == 2:
            # two held buttons are a chord, never a rating: their releases say nothing
            self.state[first] = _DONE
            self.state[second] = _DONE
            held = min(clock.since_ms(self.down_at[first]), clock.since_ms(self.down_at[second]))
            if not self.chorded and held - back >= self.CHORD_MS:
                self.chorded = True
                self.target.chord(first, second)

    async def run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep_ms(self.SCAN_MS)
