"""Buttons on MicroPython: debounce, press on release, long press, chords, no allocation; presses
latched by the pins' interrupts while the loop is held up (a DNS lookup of 3 s among them)."""

from __future__ import annotations

from tests.vm.mpvm import BOARDS_DIR, ROOT, MicroPythonVM, firmware_modules, vm_files

RIG = ROOT / "tests" / "vm" / "kiosk_rig.py"

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


def test_latching_an_edge_and_replaying_it_allocate_nothing(mpvm: MicroPythonVM) -> None:
    # The interrupt runs with the heap locked (a hard IRQ may not allocate): any allocation
    # in the handler raises MemoryError here.
    script = (
        "import micropython\n"
        "run(100)\n"
        "gc.collect()\n"
        "before = gc.mem_alloc()\n"
        "for k in range(200):\n"
        "    micropython.heap_lock()\n"
        "    pins[k % 4].drive(k & 1 ^ 1)\n"
        "    micropython.heap_unlock()\n"
        "    t.advance(7)\n"
        "    if k % 5 == 0:\n"
        "        b.scan()\n"
        "print('grew', gc.mem_alloc() - before, 'lost', b.lost)\n"
    )
    assert events(mpvm, script)[-1] == "grew 0 lost 0"


STALLED = """
def stall(ms):  # the loop is held up: time passes, nothing scans
    t.advance(ms)
def latch(i, levels):  # contact bounce, a level every 2 ms, while nothing scans
    for level in levels:
        pins[i].drive(level)
        t.advance(2)
"""


def test_presses_made_while_nothing_scans_are_each_reported_in_order(mpvm: MicroPythonVM) -> None:
    # Three taps (two of them bouncing) and a long press within 3 s, and not one scan.
    script = STALLED + (
        "latch(1, [0, 1, 0])\nstall(120)\nlatch(1, [1, 0, 1])\nstall(300)\n"
        "pins[3].drive(0)\nstall(90)\npins[3].drive(1)\nstall(300)\n"
        "pins[0].drive(0)\nstall(1700)\npins[0].drive(1)\nstall(100)\n"
        "latch(2, [0, 1, 0])\nstall(80)\nlatch(2, [1, 0, 1])\nstall(100)\n"
        "print('scan')\nrun(50)\n"
    )
    assert events(mpvm, script) == ["scan", "press 1", "press 3", "long 0", "press 2"]


def test_a_full_ring_drops_edges_but_leaves_no_button_stuck(mpvm: MicroPythonVM) -> None:
    script = STALLED + (
        "for k in range(301):\n"  # a chattering contact: 301 edges, ending pressed
        "    pins[1].drive(k & 1)\n"
        "    t.advance(1)\n"
        "stall(100)\n"
        "print('lost', b.lost > 0)\n"
        "run(100)\n"
        "pins[1].drive(1)\n"
        "run(100)\n"
    )
    assert events(mpvm, script) == ["lost True", "press 1"]


# The whole kiosk on the VM (tests/vm/kiosk_rig.py) with its link to the host: the broker's
# name is looked up with socket.getaddrinfo, which blocks the loop. Here the lookup takes 3 s
# of the simulated clock, and five customers press one after another meanwhile.
BLOCKING_LOOKUP = """
import asyncio, network, socket
import esp32_devkitc_ssd1306 as board
from kiosk_rig import Rig, CONFIG
from link import Link

rig = Rig(board, conf=dict(CONFIG, response_interval_s=0), echo=False)
network.access_point['connect_ms'] = 0
BUTTONS = (3, 4, 4, 3, 4)

def customers():
    # 3 s in all; each tap 120 ms, as the simulated clock runs and no scan runs
    shown = rig.changes
    for button in BUTTONS:
        rig._drive(button, True)
        rig.t.advance(120)
        rig._drive(button, False)
        rig.t.advance(480)
    shown = rig.changes - shown
    print('during the lookup:', shown, 'screen changes,', rig.outbox.depth(), 'events')

socket.during = customers
opened = []

async def unreachable(host, port, ssl=None, server_hostname=None):
    opened.append(host)
    raise OSError(113)  # EHOSTUNREACH: this test is about the buttons

asyncio.open_connection = unreachable
link = Link(rig.kiosk, rig.outbox, rig.clock, network.WLAN(), dict(
    store='store-12', device='till-1', host='broker.shop.example', ssid='shop', key='secret',
    fw='0.1.0', board=board.NAME), dict(load_ids=list))

async def main():
    task = asyncio.create_task(link.run())
    for _ in range(2000):
        if opened:
            break
        await asyncio.sleep_ms(1)
    task.cancel()
    print('connected to', opened[0], 'after', socket.lookups, 'lookup')

await asyncio.create_task(main())
rig.sleep(300)
print('ratings', [e['score'] for e in map(json.loads, rig.events())])
"""

FAKE_SOCKET = """
# The shop's DNS for the test: a lookup that blocks while `during()` happens in the world.
SOCK_STREAM = 1
lookups = 0
during = None

def getaddrinfo(host, port, *args):
    global lookups
    lookups += 1
    if during:
        during()
    return [(2, 1, 0, '', ('192.0.2.7', port))]
"""


def blocked_kiosk(mpvm: MicroPythonVM, after_rig: str = "") -> list[str]:
    code = "import json\n" + BLOCKING_LOOKUP.replace(
        "network.access_point", after_rig + "network.access_point", 1
    )
    files = vm_files(RIG, BOARDS_DIR / "esp32_devkitc_ssd1306.py")
    files["/lib/socket.py"] = FAKE_SOCKET
    out = mpvm.run(code, firmware_modules(), files=files, run_async=True, timeout=60)
    return out.ok().splitlines()


def test_five_presses_during_a_three_second_lookup_are_five_ratings_in_order(
    mpvm: MicroPythonVM,
) -> None:
    out = blocked_kiosk(mpvm)
    assert out == [
        # the loop was held up: not a screen changed, not an event stored, meanwhile
        "during the lookup: 0 screen changes, 0 events",
        # the name was looked up once and the address used as it is
        "connected to 192.0.2.7 after 1 lookup",
        "ratings [3, 4, 4, 3, 4]",
    ]


def test_without_the_pins_interrupts_the_same_presses_are_lost(mpvm: MicroPythonVM) -> None:
    # What the latch is for: scanning alone sees the buttons only after the lookup, released.
    out = blocked_kiosk(mpvm, "for p in rig.pins:\n    p.irq(None)\n")
    assert out[-1] == "ratings []"


# The lookup itself, on the MQTT client: once, kept while connects succeed, again after one
# fails; an address given as such is never looked up.
LOOKUP_CACHE = """
import asyncio, socket, mqtt

answers = ['192.0.2.7', '192.0.2.8']
looked = []

def getaddrinfo(host, port, *args):
    looked.append(host)
    return [(2, 1, 0, '', (answers[len(looked) - 1], port))]

socket.getaddrinfo = getaddrinfo
opened = []
refuse = []

class Broker:  # answers CONNECT with a CONNACK
    def __init__(self):
        self.data = b'\\x20\\x02\\x00\\x00'
    async def readexactly(self, n):
        out, self.data = self.data[:n], self.data[n:]
        if len(out) < n:
            raise EOFError
        return out
    def write(self, b):
        pass
    async def drain(self):
        pass
    def close(self):
        pass
    async def wait_closed(self):
        pass

async def open_connection(host, port, ssl=None, server_hostname=None):
    opened.append(host)
    if refuse:
        refuse.pop()
        raise OSError(111)
    b = Broker()
    return b, b

asyncio.open_connection = open_connection

async def attempt(c):
    try:
        await c.connect()
        c.close()
        print('connected to', opened[-1], 'lookups', len(looked))
    except OSError:
        print('refused by', opened[-1], 'lookups', len(looked))

async def main():
    c = mqtt.MQTTClient('till-1', 'broker.shop.example')
    await attempt(c)
    await attempt(c)
    refuse.append(1)
    await attempt(c)
    await attempt(c)
    await attempt(mqtt.MQTTClient('till-1', '10.0.0.5'))

await asyncio.create_task(main())
"""


def test_the_broker_name_is_looked_up_once_and_again_only_after_a_failed_connect(
    mpvm: MicroPythonVM,
) -> None:
    files = {"/lib/socket.py": FAKE_SOCKET}
    out = mpvm.run(LOOKUP_CACHE, ["mqtt"], files=files, run_async=True, timeout=60).ok()
    assert out.splitlines() == [
        "connected to 192.0.2.7 lookups 1",
        "connected to 192.0.2.7 lookups 1",  # kept: no lookup
        "refused by 192.0.2.7 lookups 1",
        "connected to 192.0.2.8 lookups 2",  # the failure sent it back to the DNS
        "connected to 10.0.0.5 lookups 2",  # an IP address as it is
    ]
