"""The MicroPython VM harness runs code on MicroPython, reports what it raised, and bites."""

from __future__ import annotations

import pytest

from tests.vm.mpvm import MicroPythonError, MicroPythonVM


def test_code_runs_on_micropython(mpvm: MicroPythonVM) -> None:
    out = mpvm.run(
        "import sys\nprint(sys.implementation.name)\nprint(sys.implementation.version[0])"
    )
    assert out.ok().split() == ["micropython", "1"]


def test_an_exception_is_reported_with_type_and_traceback(mpvm: MicroPythonVM) -> None:
    result = mpvm.run("print('before')\ndef f():\n    raise ValueError('no such score')\nf()")
    assert result.stdout == "before\n"
    assert result.error_type == "ValueError"
    assert "no such score" in (result.traceback or "")
    assert ", line 3, in f" in (result.traceback or "")
    with pytest.raises(MicroPythonError, match="no such score"):
        result.ok()


@pytest.mark.parametrize(
    ("construct", "error"),
    [
        # CPython 3.10 structural pattern matching: MicroPython's compiler does not know `match`.
        ("match 3:\n    case 3:\n        print('three')", "SyntaxError"),
        # CPython-only standard library modules.
        ("import dataclasses", "ImportError"),
        ("import typing", "ImportError"),
        # CPython 3.9 string methods that MicroPython's str lacks.
        ("print('kiosk-1'.removeprefix('kiosk-'))", "AttributeError"),
    ],
)
def test_cpython_only_constructs_fail_there(
    mpvm: MicroPythonVM, construct: str, error: str
) -> None:
    assert mpvm.run(construct).error_type == error


def test_each_run_starts_a_fresh_interpreter(mpvm: MicroPythonVM) -> None:
    mpvm.run("import sys\nsys.modules['leftover'] = 1").ok()
    assert mpvm.run("import sys\nprint('leftover' in sys.modules)").ok() == "False\n"


def test_top_level_await_runs_asyncio_tasks(mpvm: MicroPythonVM) -> None:
    code = (
        "import asyncio\n"
        "async def beat(n):\n"
        "    await asyncio.sleep_ms(1)\n"
        "    return n * 2\n"
        "t = asyncio.create_task(beat(21))\n"
        "print(await t)\n"
    )
    assert mpvm.run(code, run_async=True).ok() == "42\n"


def test_simulated_pins_and_watchdog_run_on_the_simulated_clock(mpvm: MicroPythonVM) -> None:
    code = """
import machine, simclock
button = machine.Pin(34, machine.Pin.IN, machine.Pin.PULL_UP)
edges = []
button.irq(lambda p: edges.append(p.value()), machine.Pin.IRQ_FALLING)
print(button.value())
button.drive(0)
button.drive(1)
print(edges)
wdt = machine.WDT(timeout=5000)
simclock.clock.advance(4999)
wdt.feed()
simclock.clock.advance(5001)
try:
    wdt.feed()
except machine.ResetRequested as e:
    print('reset:', e)
"""
    assert mpvm.run(code).ok().splitlines() == [
        "1",
        "[0]",
        "reset: watchdog starved for more than 5000 ms",
    ]


def test_simulated_wifi_connects_after_its_delay_and_drops_with_the_access_point(
    mpvm: MicroPythonVM,
) -> None:
    code = """
import network, simclock
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect('shop', 'secret')
print(wlan.isconnected())
simclock.clock.advance(network.access_point['connect_ms'])
print(wlan.isconnected(), wlan.status('rssi'))
network.access_point['up'] = False
print(wlan.isconnected(), wlan.status() == network.STAT_NO_AP_FOUND)
"""
    assert mpvm.run(code).ok().splitlines() == ["False", "True -61", "False True"]
