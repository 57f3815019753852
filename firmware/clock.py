"""Kiosk time: a wrap-safe uptime from the tick counter, and wall time once it has been set."""

from micropython import const

# ESP32 ports before MicroPython 1.22 count time.time() from 2000, later ones from 1970.
_EPOCH_2000_S = const(946684800)


class Clock:
    """Uptime and wall time over a `time`-like source (the `time` module, or a simulated one).

    `uptime_ms()` must be called at least once per half tick period (6 days on an ESP32,
    whose ticks_ms wraps at 2**30); the main loop does so on every pass.
    """

    def __init__(self, source) -> None:
        self._src = source
        self._last = source.ticks_ms()
        self._up_ms = 0
        self._wall_ms_at_zero = None  # wall time in ms when uptime was 0; None until synced

    def ticks_ms(self) -> int:
        return self._src.ticks_ms()

    def after_ms(self, ms: int) -> int:
        """The tick value `ms` milliseconds from now (for deadlines compared with since_ms)."""
        return self._src.ticks_add(self._src.ticks_ms(), ms)

    def since_ms(self, start: int) -> int:
        """Milliseconds from the tick value `start` to now."""
        return self._src.ticks_diff(self._src.ticks_ms(), start)

    def uptime_ms(self) -> int:
        now = self._src.ticks_ms()
        self._up_ms += self._src.ticks_diff(now, self._last)
        self._last = now
        return self._up_ms

    def synced(self) -> bool:
        return self._wall_ms_at_zero is not None

    def set_wall(self, unix_s: int) -> None:
        """Record that the wall time is now `unix_s` (Unix seconds, UTC), e.g. after NTP."""
        self._wall_ms_at_zero = unix_s * 1000 - self.uptime_ms()

    def wall(self):
        """Unix seconds (UTC) now, or None while the wall time is unknown."""
        if self._wall_ms_at_zero is None:
            return None
        return (self._wall_ms_at_zero + self.uptime_ms()) // 1000

    @staticmethod
    def unix_from_port(port_seconds: int, port_epoch_year: int) -> int:
        """Unix seconds from a port's time.time(), whose epoch year is time.gmtime(0)[0]."""
        if port_epoch_year == 2000:
            return port_seconds + _EPOCH_2000_S
        return port_seconds
