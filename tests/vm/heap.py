"""The firmware's live heap on the MicroPython VM while it serves thousands of customers.

The figure is what the kiosk itself holds: its code's objects (the firmware run from its
ROMFS image, as `kiosk-host deploy` puts it on a kiosk with a ROMFS partition, so that the
bytecode stays in flash; or, with `rom=False`, loaded from .mpy files into the heap, as on a
MicroPython without ROMFS), the board module, display buffers and every object of the
running kiosk; with
`link`, its link to the host too, connected to a real mosquitto through the VM's simulated
Wi-Fi (the host's TCP sockets, `hostnet`), after a config and a command have come in, with
events drained by the broker's PUBACKs, and each figure taken with a whole window of events
in flight. It leaves out what exists only in simulation: the simulated `machine`, network and
clock, the test rig's code, and the VM's pure-Python `binascii` and `asyncio` (C and frozen on
an ESP32).

The base is read in a step of its own, after the step that imported all that: the port's
gc.collect() cannot free the garbage of the step it runs in, so a base read beside the imports
counts that garbage, freed later, and every figure comes out about 14 KB too low.
"""

from __future__ import annotations

import ast
import json
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import Mosquitto
from tests.vm.mpvm import (
    BOARDS_DIR,
    ROOT,
    MicroPythonVM,
    board_buttons,
    firmware_modules,
    firmware_romfs,
    vm_files,
)

RIG = ROOT / "tests" / "vm" / "kiosk_rig.py"
POLLNET = ROOT / "tests" / "vm" / "pollnet.py"
STORE, DEVICE = "store-12", "till-1"  # the rig's kiosk
TOPICS = f"kiosk/v1/{STORE}/{DEVICE}"
COMMAND = {"v": 1, "cmd": "identify", "id": "heap-cmd-1", "ts": 1763900000, "seconds": 1}
# Customers after a mark at which it is measured again: whole rounds of the eight kinds, so
# that every measurement follows the same kinds of customer.
SAMPLES = (0, 8, 16, 24, 32)
# Customers per VM call. The port collects garbage only between calls, where a device
# collects whenever it runs short; small chunks keep the simulation close to the device.
CHUNK = 250
WAIT_MS = 20000  # for the link to come up, to drain, or to fill its window

# The simulation, and the rig's own helpers, loaded before the base is read.
SIM = """
import gc, machine, network, simclock, binascii, asyncio, os, json, struct, framebuf, random
import kiosk_rig
machine.SPI.recording = False
machine.I2C.recording = False
served = 0
link = None

def customers(count):
    # Eight kinds of customer in turn: happy ones, middling ones, and low ratings that accept
    # the follow-up and get a code, decline it, or walk away. Between customers the response
    # interval passes; the link drains the outbox (without one, the rig acknowledges).
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
        if link is None:
            rig.events(ack=True)

async def until(check, what):
    for _ in range(WAIT_MS // 5):
        if check():
            return
        await asyncio.sleep_ms(5)
    raise AssertionError('timed out waiting for %s: link up %s, error %r, %d in flight, %d in'
                         ' the outbox' % (what, link.up, link.error, len(link.inflight),
                                          rig.outbox.depth()))

def wait(check, what):  # a task: this port's top-level await cannot wake on a timeout
    return asyncio.create_task(until(check, what))

# The VM's collector is conservative: a stale word on the Python stack can keep a dead object
# alive for one collection. Deep calls with empty locals overwrite those words first, and a
# figure is taken as the least of a few measurements a few customers apart (see `settled`).
def scrub(d, a=None, b=None, c=None, e=None, f=None, g=None, h=None, i=None, j=None, k=None):
    return scrub(d - 1) if d else 0
""".replace("WAIT_MS", str(WAIT_MS))

NET = """
import pollnet, kioskhost
asyncio.open_connection = pollnet.open_connection
network.access_point['connect_ms'] = 0
"""

BASE = "scrub(90)\ngc.collect()\nbase = gc.mem_alloc()\n"
# Two steps: the first frees what the steps before it left (after an await, the garbage of a
# step outlives the next step's collection too: up to 10 KB of it on a running link), the
# second reads the heap.
MEASURE = [
    "scrub(90)\ngc.collect()\n",
    "scrub(90)\ngc.collect()\nprint('HEAP', served, gc.mem_alloc() - base)\n",
]

KIOSK = """
import board
n = len(board.BUTTONS)
conf = dict(kiosk_rig.CONFIG, scale=n, low_threshold=1 if n == 3 else 2)
rig = kiosk_rig.Rig(board, conf=conf, echo=False)
"""

# As main.py builds and runs it: the boot guard, the same callables for what only the device
# can do, on the flash, and app.run (its buttons task, its ticks, its link task). No watchdog:
# the simulated clock leaps while the rig serves customers, and would starve it.
LINK = """
import app
from bootguard import BootGuard
from config import ConfigFile
from link import Link

guard = BootGuard('/flash/boots')
guard.enter()

config_file = ConfigFile('/flash/config.json')

def save_ids(ids):
    with open('/flash/cmd-ids.json', 'w') as f:
        json.dump(ids, f)

wlan = network.WLAN(network.STA_IF)
hw = {
    'ntp': lambda: kiosk_rig.WALL,
    'heap_free': gc.mem_free,
    'rssi': lambda: wlan.status('rssi') if wlan.isconnected() else None,
    'identify': lambda seconds: None,
    'reboot': machine.reset,
    'save_config': config_file.save,
    'load_ids': list,
    'save_ids': save_ids,
    'slots': SLOTS,
}
link = Link(rig.kiosk, rig.outbox, rig.clock, wlan, dict(
    store='%(store)s', device='%(device)s', host='127.0.0.1', port=%(port)d, ssid='shop',
    key='secret', fw='0.1.0', board=board.NAME), hw)
asyncio.create_task(app.run(rig.kiosk, rig.buttons, rig.clock, None, guard, link))
"""
# Where the link takes updates over the air: the slots on the flash, the receiver loaded and
# made as the first `ota` message makes it.
NO_OTA = "SLOTS = None\n"
WITH_OTA = "import fwslot\nSLOTS = fwslot.Slots('/flash/fw')\n"
RECEIVER = "import ota\nlink.ota = ota.Receiver(SLOTS, link.ident, 'mpy', link.log)\n"
UP = (
    f"await wait(lambda: link.up and link.ids == ['{COMMAND['id']}']"
    " and 'config.json' in os.listdir('/flash'), 'the link up, the config and the command in')\n"
)
DRAINED = "await wait(lambda: not rig.outbox.depth() and not link.inflight, 'the outbox drained')\n"
# The broker's answers held back in the simulated network: the next events fill the window.
HOLD = "kioskhost.hold(True)\ncustomers(%d)\n"
FULL = "await wait(lambda: len(link.inflight) == link.WINDOW, 'a full window in flight')\n"
RELEASE = "kioskhost.hold(False)\n" + DRAINED


def heap_by_customers(
    mpvm: MicroPythonVM,
    board: str,
    marks: list[int],
    link: bool = False,
    rom: bool = True,
    ota: bool = False,
    image: bytes | None = None,
) -> dict[int, int]:
    """The live heap in bytes after 0 customers, and after each count in `marks` plus each
    of SAMPLES; connected to a mosquitto of its own when `link`, with its update receiver
    loaded too when `ota`; the firmware run from its ROMFS image when `rom` (`image`, a
    release's, instead of the build's when given), else from .mpy files in /lib."""
    if not link:
        return _run(mpvm, board, marks, None, rom, image=image)
    with tempfile.TemporaryDirectory(prefix="heap-broker-") as tmp, Mosquitto(Path(tmp)) as broker:
        n = board_buttons(board)
        _prime(broker, {**_rig_config(), "scale": n, "low_threshold": 1 if n == 3 else 2})
        host = Host(broker)
        try:
            return _run(mpvm, board, marks, broker.port, rom, ota, image)
        finally:
            host.close()


def _run(
    mpvm: MicroPythonVM,
    board: str,
    marks: list[int],
    port: int | None,
    rom: bool,
    ota: bool = False,
    image: bytes | None = None,
) -> dict[int, int]:
    connected = port is not None
    steps = [SIM + (NET if connected else ""), BASE, KIOSK]
    if connected:
        link = LINK % {"store": STORE, "device": DEVICE, "port": port}
        steps += [(WITH_OTA if ota else NO_OTA) + link, UP]
        if ota:
            steps.append(RECEIVER)
    steps += MEASURE
    window = 8  # customers that leave at least Link.WINDOW events (one or two each)
    served = 0
    for mark in marks:
        for extra in SAMPLES:
            target = mark + extra - (window if connected else 0)
            while served < target:
                count = min(CHUNK, target - served)
                steps.append(f"customers({count})\n")
                served += count
                if connected:
                    steps.append(DRAINED)
            if connected:
                steps += [HOLD % window, FULL, *MEASURE, RELEASE]
                served += window
            else:
                steps += MEASURE
    files = vm_files(RIG, POLLNET) if connected else vm_files(RIG)
    files["/lib/board.py"] = (BOARDS_DIR / f"{board}.py").read_text()
    out = mpvm.run(
        steps,
        [] if rom else firmware_modules(),
        compiled=True,
        files=files,
        run_async=connected,
        net=connected,
        romfs=(image or firmware_romfs()) if rom else None,
    ).ok()
    return {
        int(line.split()[1]): int(line.split()[2])
        for line in out.splitlines()
        if line.startswith("HEAP ")
    }


def _rig_config() -> dict[str, object]:
    """kiosk_rig.CONFIG, read from the rig's source (it is MicroPython, not imported here)."""
    tree = ast.parse(RIG.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CONFIG" for t in node.targets
        ):
            config: dict[str, object] = ast.literal_eval(node.value)
            return config
    raise ValueError("tests/vm/kiosk_rig.py has no CONFIG")


def _prime(broker: Mosquitto, config: dict[str, object]) -> None:
    """What the host has sent before the kiosk comes up: its config (retained) and a command
    queued in its persistent session."""
    kiosk = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{STORE}/{DEVICE}", clean_session=False
    )
    subscribed = threading.Event()
    kiosk.on_subscribe = lambda *args: subscribed.set()
    kiosk.connect(broker.host, broker.port)
    kiosk.loop_start()
    try:
        kiosk.subscribe(f"{TOPICS}/cmd", 1)
        if not subscribed.wait(10):
            raise AssertionError("no SUBACK from the test broker")
    finally:
        kiosk.disconnect()
        kiosk.loop_stop()
    host = paho.Client(CallbackAPIVersion.VERSION2, client_id="heap-host")
    host.connect(broker.host, broker.port)
    host.loop_start()
    try:
        for topic, payload, retain in (
            (f"{TOPICS}/config", config, True),
            (f"{TOPICS}/cmd", COMMAND, False),
        ):
            host.publish(topic, json.dumps(payload), 1, retain).wait_for_publish(10)
    finally:
        host.disconnect()
        host.loop_stop()


class Host:
    """The host's side of the drain, as the aggregator plays it: every event the kiosk
    publishes is taken as stored, and the mark (the highest seq up to which all are) goes back
    on the kiosk's retained ack topic, so that its outbox lets them go."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: set[int] = set()
        self.mark = 0
        self.changed = threading.Condition()
        self.stopped = False
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="heap-host")
        self.client.on_message = self._on_event
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{TOPICS}/event", 1)
        if not subscribed.wait(10):
            raise AssertionError("no SUBACK from the test broker")
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _on_event(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.changed:
            self.seen.add(json.loads(msg.payload)["seq"])
            while self.mark + 1 in self.seen:
                self.mark += 1
                self.seen.discard(self.mark)
            self.changed.notify()

    def _publish(self) -> None:
        sent = [0]
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.stopped or self.mark != sent[0])
                if self.stopped:
                    return
                sent[0] = self.mark
            payload = json.dumps({"v": 1, "seq": sent[0]})
            self.client.publish(f"{TOPICS}/ack", payload, 1, True)

    def close(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify()
        self.thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


def settled(heap: dict[int, int], mark: int) -> int:
    """The heap after `mark` customers: the least of its samples (a dead object kept by a
    stale word survives one measurement, never all of them)."""
    return min(heap[mark + extra] for extra in SAMPLES)
