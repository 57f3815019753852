"""The kiosk's Clock on MicroPython: uptime survives the tick counter's wrap, wall time once set."""

from __future__ import annotations

from tests.vm.mpvm import MicroPythonVM


def test_uptime_keeps_counting_across_the_tick_wrap(mpvm: MicroPythonVM) -> None:
    # Start 1 s before the ESP32's ticks_ms wraps at 2**30 and run 20 days in 6-hour steps.
    code = """
import simclock
from clock import Clock
t = simclock.reset(start_ticks=(1 << 30) - 1000)
c = Clock(t)
for _ in range(80):
    t.advance(6 * 3600 * 1000)
    c.uptime_ms()
print(c.uptime_ms(), t.elapsed_ms(), t.ticks_ms() < (1 << 30))
"""
    up, elapsed, in_range = mpvm.run(code, ["clock"]).ok().split()
    assert int(up) == int(elapsed) == 80 * 6 * 3600 * 1000
    assert in_range == "True"


def test_wall_time_is_unknown_until_set_then_follows_uptime(mpvm: MicroPythonVM) -> None:
    code = """
import simclock
from clock import Clock
t = simclock.reset()
c = Clock(t)
print(c.wall(), c.synced())
t.advance(1500)
c.set_wall(1763900000)
t.advance(2500)
print(c.wall(), c.synced())
print(Clock.unix_from_port(0, 2000), Clock.unix_from_port(5, 1970))
"""
    assert mpvm.run(code, ["clock"]).ok().splitlines() == [
        "None False",
        "1763900002 True",
        "946684800 5",
    ]
