"""The firmware's live heap on the MicroPython VM while it serves thousands of customers.

The figure is what the kiosk itself holds: its code (loaded from the compiled .mpy, as
deployed), the board module, display buffers and every object of the running kiosk; with
`link`, its link to the host and MQTT client too (built, not connected). It
leaves out what exists only in simulation: the simulated `machine` and clock, the test
rig's code, and the VM's pure-Python `binascii` and `asyncio` (C and frozen on an ESP32).
"""

from __future__ import annotations

from tests.vm.mpvm import BOARDS_DIR, ROOT, MicroPythonVM, firmware_modules, vm_files

RIG = ROOT / "tests" / "vm" / "kiosk_rig.py"
# The VM's collector is conservative: a stale word on the Python stack can keep a dead object
# alive for one collection. Deep calls with empty locals overwrite those words first, and a
# figure is taken as the least of a few measurements a few customers apart (see `settled`).
MEASURE = """
def scrub(d, a=None, b=None, c=None, e=None, f=None, g=None, h=None, i=None, j=None, k=None):
    return scrub(d - 1) if d else 0
scrub(90)
gc.collect()
print('HEAP', served, gc.mem_alloc() - base)
"""
# Customers after a mark at which it is measured again: whole rounds of the eight kinds, so
# that every measurement follows the same kinds of customer.
SAMPLES = (0, 8, 16, 24, 32)
# Customers per VM call. The port collects garbage only between calls, where a device
# collects whenever it runs short; small chunks keep the simulation close to the device.
CHUNK = 250

SETUP = """
import gc, machine, network, simclock, binascii, asyncio, os, json, struct, framebuf, random
import kiosk_rig
machine.SPI.recording = False
machine.I2C.recording = False
gc.collect()
base = gc.mem_alloc()
import board
n = len(board.BUTTONS)
conf = dict(kiosk_rig.CONFIG, scale=n, low_threshold=1 if n == 3 else 2)
rig = kiosk_rig.Rig(board, conf=conf, echo=False)
served = 0

def customers(count):
    # Eight kinds of customer in turn: happy ones, middling ones, and low ratings that accept
    # the follow-up and get a code, decline it, or walk away. Between customers the response
    # interval passes and the link drains the outbox.
    global served
    for _ in range(count):
        kind = served % 8
        served += 1
        score = (n, 1, n - 1, 1, 2, n, 1, n - 1)[kind]
        rig.press(score)
        if score <= conf['low_threshold']:
            if kind == 3:
                rig.press(1)  # no, thank you
            elif kind == 6:
                rig.sleep(conf['follow_up_timeout_s'] * 1000 + 1000, 1000)  # no answer
            else:
                rig.press(n)  # yes: the code
        rig.sleep(6000, 1000)
        rig.events(ack=True)
"""


LINK = """
from link import Link
link = Link(rig.kiosk, rig.outbox, rig.clock, network.WLAN(), dict(
    store='store-12', device='till-1', host='127.0.0.1', ssid='shop', key='secret',
    fw='0.1.0', board=board.NAME), dict(load_ids=list))
"""


def heap_by_customers(
    mpvm: MicroPythonVM, board: str, marks: list[int], link: bool = False
) -> dict[int, int]:
    """The live heap in bytes after 0 customers, and after each count in `marks` plus each
    of SAMPLES."""
    steps = [SETUP + (LINK if link else ""), MEASURE]
    served = 0
    for mark in marks:
        for extra in SAMPLES:
            while served < mark + extra:
                count = min(CHUNK, mark + extra - served)
                steps.append(f"customers({count})\n")
                served += count
            steps.append(MEASURE)
    files = vm_files(RIG)
    files["/lib/board.py"] = (BOARDS_DIR / f"{board}.py").read_text()
    out = mpvm.run(steps, firmware_modules(), compiled=True, files=files).ok()
    return {
        int(line.split()[1]): int(line.split()[2])
        for line in out.splitlines()
        if line.startswith("HEAP ")
    }


def settled(heap: dict[int, int], mark: int) -> int:
    """The heap after `mark` customers: the least of its samples (a dead object kept by a
    stale word survives one measurement, never all of them)."""
    return min(heap[mark + extra] for extra in SAMPLES)
