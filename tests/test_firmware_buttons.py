"""Button scanning on MicroPython: debounce, press on release, long press, chords, no allocation."""

from __future__ import annotations

from tests.vm.mpvm import MicroPythonVM

SETUP = """
import gc, machine, simclock
from buttons import Buttons
from clock import Clock
t = simclock.reset()
clock = Clock(t)
pins = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP) for p in (32, 33, 25, 26)]
class Log:
    def press(self, i): print('press', i)
    def long_press(self, i): print('long', i)
    def chord(self, a, b): print('chord', a, b)
b = Buttons(pins, True, clock, Log())
def run(ms):
    for _ in range(ms // 10):
        t.advance(10)
        b.scan()
def bounce(i, levels):  # contact bounce: a level every 2 ms
    for level in levels:
        pins[i].drive(level)
        t.advance(2)
        b.scan()
"""


def events(mpvm: MicroPythonVM, script: str) -> list[str]:
    return mpvm.run(SETUP + script, ["buttons", "clock"]).ok().splitlines()


def test_a_tap_is_one_press_reported_on_release(mpvm: MicroPythonVM) -> None:
    script = "pins[2].drive(0)\nrun(100)\nprint('held')\npins[2].drive(1)\nrun(100)"
    assert events(mpvm, script) == ["held", "press 2"]


def test_contact_bounce_is_one_press(mpvm: MicroPythonVM) -> None:
    script = "bounce(0, [0, 1, 0, 1, 0])\nrun(100)\nbounce(0, [1, 0, 1, 0, 1])\nrun(100)"
    assert events(mpvm, script) == ["press 0"]


def test_a_glitch_shorter_than_the_debounce_is_nothing(mpvm: MicroPythonVM) -> None:
    assert events(mpvm, "pins[1].drive(0)\nrun(20)\npins[1].drive(1)\nrun(100)") == []


def test_a_long_hold_is_reported_once_while_held_and_its_release_is_silent(
    mpvm: MicroPythonVM,
) -> None:
    script = (
        "pins[3].drive(0)\nrun(1600)\nprint('still held')\nrun(2000)\npins[3].drive(1)\nrun(100)"
    )
    assert events(mpvm, script) == ["long 3", "still held"]


def test_two_buttons_held_three_seconds_are_a_chord_and_never_a_press(mpvm: MicroPythonVM) -> None:
    script = (
        "pins[0].drive(0)\nrun(200)\npins[3].drive(0)\nrun(2900)\nprint('not yet')\nrun(200)\n"
        "pins[0].drive(1)\npins[3].drive(1)\nrun(100)"
    )
    assert events(mpvm, script) == ["not yet", "chord 0 3"]


def test_two_buttons_let_go_early_are_nothing(mpvm: MicroPythonVM) -> None:
    script = "pins[0].drive(0)\npins[3].drive(0)\nrun(1000)\n"
    script += "pins[0].drive(1)\npins[3].drive(1)\nrun(100)"
    assert events(mpvm, script) == []


def test_scanning_allocates_nothing(mpvm: MicroPythonVM) -> None:
    script = (
        "run(100)\n"  # warm up
        "gc.collect()\n"
        "before = gc.mem_alloc()\n"
        "for _ in range(1000):\n"
        "    b.scan()\n"
        "print('grew', gc.mem_alloc() - before)\n"
    )
    assert events(mpvm, script) == ["grew 0"]
