"""A controllable clock with the `time` module's tick API; it moves only when told to."""

_PERIOD = 1 << 30  # ticks_ms wraps here on the ESP32 port (MICROPY_PY_TIME_TICKS_PERIOD)
_HALF = _PERIOD // 2


class SimTime:
    """Ticks, wall time and sleeps for simulated hardware and the firmware's Clock."""

    def __init__(self, start_ticks: int = 0, wall_s: int = 0) -> None:
        self._ticks = start_ticks % _PERIOD
        self._ms = 0  # total simulated milliseconds, never wraps
        self._wall_ms = wall_s * 1000

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time only moves forward")
        self._ticks = (self._ticks + ms) % _PERIOD
        self._ms += ms
        self._wall_ms += ms

    def elapsed_ms(self) -> int:
        return self._ms

    def ticks_ms(self) -> int:
        return self._ticks

    def ticks_add(self, ticks: int, delta: int) -> int:
        return (ticks + delta) % _PERIOD

    def ticks_diff(self, end: int, start: int) -> int:
        return (end - start + _HALF) % _PERIOD - _HALF

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
