"""Simulated `ntptime` module: the time server's answer is the simulated clock's wall time."""

import time as _time

import simclock

host = "pool.ntp.org"
timeout = 1
_EPOCH_2000_S = 946684800  # Unix seconds at 2000-01-01, the ESP32 port's epoch


def time() -> int:
    """Seconds since the port's epoch (time.gmtime(0)), as the ESP32's ntptime.time()."""
    unix = simclock.clock.time()
    return unix - _EPOCH_2000_S if _time.gmtime(0)[0] == 2000 else unix


def settime() -> None:
    """The port's clock follows the host in simulation: nothing to set."""
