"""Start-up on MicroPython: the boot-loop guard, safe mode, and the watchdog fed by the loop."""

from __future__ import annotations

from tests.kiosk_runs import MONO
from tests.vm.mpvm import BOARDS_DIR, MicroPythonVM, firmware_modules, vm_files


def test_three_failed_starts_in_a_row_mean_safe_mode(mpvm: MicroPythonVM) -> None:
    code = """
from bootguard import BootGuard
g = BootGuard('/boots')
print([g.enter() for _ in range(4)])
g.record('ValueError: bad pin')
print(BootGuard('/boots').enter(), BootGuard('/boots').last_error())
g.reset()
print(g.enter(), g.last_error())
"""
    assert mpvm.run(code, ["bootguard"]).ok().splitlines() == [
        "[True, True, True, False]",
        "False ValueError: bad pin",
        "True repeated crashes at start",
    ]


def test_a_start_that_runs_long_enough_clears_the_count(mpvm: MicroPythonVM) -> None:
    code = """
from bootguard import BootGuard
g = BootGuard('/boots')
for _ in range(10):
    assert g.enter()
    g.running()
print('never safe')
"""
    assert mpvm.run(code, ["bootguard"]).ok() == "never safe\n"


def test_the_device_start_up_shows_safe_mode_after_repeated_crashes(mpvm: MicroPythonVM) -> None:
    code = """
import ui
shown = []
problem = ui.Ui.problem
def record(self, title, detail):
    shown.append((title, detail))
    problem(self, title, detail)
ui.Ui.problem = record
with open('/boots', 'w') as f:
    f.write('3')
with open('/boots.err', 'w') as f:
    f.write('OSError: [Errno 2] ENOENT')
import main
print(shown)
"""
    files = vm_files(BOARDS_DIR / f"{MONO}.py")
    files["/lib/board.py"] = files.pop(f"/lib/{MONO}.py")
    out = mpvm.run(code, [*firmware_modules(), "main"], files=files).ok()
    assert out == "[('Safe mode', 'OSError: [Errno 2] ENOENT')]\n"


def test_the_main_loop_feeds_the_watchdog_and_marks_a_good_start(mpvm: MicroPythonVM) -> None:
    code = """
import asyncio, time, machine
import app
from bootguard import BootGuard
from clock import Clock
class Idle:
    ticks = 0
    def tick(self):
        self.ticks += 1
    async def run(self):
        while True:
            await asyncio.sleep_ms(10)
class Guard(BootGuard):
    STABLE_MS = 200
    def running(self):
        print('good start')
wdt = machine.WDT(timeout=8000)
kiosk = Idle()
task = asyncio.create_task(app.run(kiosk, Idle(), Clock(time), wdt, Guard('/boots')))
await asyncio.sleep_ms(500)  # what is tested: the loop runs past STABLE_MS, feeding the dog
task.cancel()
print(wdt.fed > 3, kiosk.ticks > 3)
"""
    out = mpvm.run(code, ["app", "bootguard", "clock"], run_async=True).ok()
    assert out.splitlines() == ["good start", "True True"]
