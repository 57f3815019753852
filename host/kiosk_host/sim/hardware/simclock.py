"""A controllable clock with the `time` module's tick API; it moves only when told to."""

# ticks_ms wraps at 2**30 on the ESP32 port (MICROPY_PY_TIME_TICKS_PERIOD). 2**30 itself is
# not a MicroPython small int, so the arithmetic masks with 2**30 - 1 and never allocates.
_MASK = (1 << 30) - 1
_HALF = 1 << 29


class SimTime:
    """Ticks, wall time and sleeps for simulated hardware and the firmware's Clock."""

    def __init__(self, start_ticks: int = 0, wall_s: int = 0) -> None:
        self._ticks = start_ticks & _MASK
        self._ms = 0  # total simulated milliseconds, never wraps
        self._wall_ms = wall_s * 1000

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time only moves forward")
        self._ticks = (self._ticks + ms) & _MASK
        self._ms += ms
        self._wall_ms += ms

    def elapsed_ms(self) -> int:
        return self._ms

    def ticks_ms(self) -> int:
        return self._ticks

    def ticks_add(self, ticks: int, delta: int) -> int:
        return (ticks + delta) & _MASK

    def ticks_diff(self, end: int, start: int) -> int:
        d = (end - start) & _MASK
        return d - _HALF - _HALF if d >= _HALF else d

    def time(self) -> int:
        return self._wall_ms // 1000

    def sleep_ms(self, ms: int) -> None:
        self.advance(ms)


clock = SimTime()  # the one clock that the simulated machine and network share


def reset(start_ticks: int = 0, wall_s: int = 0) -> SimTime:
    """Start the shared clock afresh (for a new simulated power-up)."""
    global clock
    clock = SimTime(start_ticks, wall_s)
    return clock
