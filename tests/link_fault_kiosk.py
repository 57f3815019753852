"""Kiosks for the link fault matrix: the firmware's Kiosk, Outbox and Link, one per cell.

Runs unchanged on MicroPython (the WebAssembly VM, with host sockets through `hostnet`) and
on CPython (as a virtual kiosk does). Every kiosk has a backlog of presses, connects through
its own fault peer (tests/fault_peer.py), and is pressed again once it has come back from
the failure; it is done when the broker has acknowledged every event (PUBACK) in the
current session. (No host runs here, so the outbox keeps the records: only the host's mark
lets them go.)
One line per kiosk: `RESULT <name> <json>`.
"""

import asyncio
import json

import network
from clock import Clock
from kiosk import Kiosk
from link import Link, reap
from outbox import Outbox
from wire import Events

BEFORE = 6  # presses waiting in the outbox when the link first comes up
AFTER = 3  # presses once the kiosk has come back from the failure
BUTTON = 3  # the rightmost of four: a happy rating, the thank-you screen
DEADLINE_MS = 30000  # for each of the two waits below; the test's own bound is tighter
POLL_MS = 20
CONFIG = (
    b'{"v":1,"prompt":"How did we do today?","language":"en","scale":4,"low_threshold":2,'
    b'"response_interval_s":0,"follow_up_timeout_s":20,"code_display_s":60,'
    b'"confirm_timeout_s":60,"telemetry_interval_s":60,"station":"till-1","staff":[]}'
)
TLS_OK = 0x16  # see fault_peer.TLS_OK


class Screen:
    """The screens, as names and texts (the fault matrix is about the link, not the pixels)."""

    def __init__(self) -> None:
        self.name = ""
        self.notes = []  # every technician's line shown under the prompt

    def idle(self, prompt, n, note=None) -> None:
        self.name = "idle"
        if note is not None and note not in self.notes:
            self.notes.append(note)

    def thanks(self) -> None:
        self.name = "thanks"

    def problem(self, title, why) -> None:
        self.name = "problem"


class PoisonReader:
    """The stream as the firmware reads it, but the peer's POISON packet (a reserved type 15
    with a two-byte body) raises MemoryError, as a read that cannot allocate does on a
    device. Packet ids never reach 0xF002 in these runs, so no PUBACK body is mistaken."""

    def __init__(self, r) -> None:
        self.r = r

    async def readexactly(self, n):
        data = await self.r.readexactly(n)
        if (n == 2 or n == 4) and data[0] == 0xF0 and data[1] == 2:
            raise MemoryError("memory allocation failed (injected)")
        return data


def opener(base, tls_simulated):
    """asyncio.open_connection for the firmware: `base` (the runtime's own), with the poison
    reader, and where the runtime has no TLS, the peer's one-byte handshake: an alert is the
    ValueError mbedTLS raises when the broker's certificate does not verify."""

    async def open_connection(host, port, ssl=None, server_hostname=None):
        if ssl is not None and not tls_simulated:
            r, w = await base(host, port, ssl=ssl, server_hostname=server_hostname)
        else:
            r, w = await base(host, port)
        if ssl is not None and tls_simulated:
            first = await r.readexactly(1)
            if first[0] != TLS_OK:
                w.close()
                raise ValueError("MBEDTLS_ERR_X509_CERT_VERIFY_FAILED")
        return PoisonReader(r), w

    return open_connection


class Ids:
    def __init__(self) -> None:
        self.ids = []

    def load(self):
        return self.ids

    def save(self, ids) -> None:
        self.ids = list(ids)


def build(spec, folder, timing):
    import time

    clock = Clock(time if hasattr(time, "ticks_add") else timing)
    clock.set_wall(time.time())
    outbox = Outbox(folder + "/" + spec["name"])
    screen = Screen()
    kiosk = Kiosk(clock, outbox, Events(spec["store"], spec["name"]), lambda t: screen, 4, "A")
    kiosk.apply_config(CONFIG)
    ids = Ids()
    hw = {
        "ntp": lambda: int(time.time()),
        "heap_free": lambda: 100000,
        "rssi": lambda: -61,
        "identify": lambda seconds: None,
        "reboot": lambda: None,
        "save_config": lambda raw: None,
        "load_ids": ids.load,
        "save_ids": ids.save,
    }
    ident = {
        "store": spec["store"],
        "device": spec["name"],
        "host": spec["host"],
        "port": spec["port"],
        "ssid": "shop",
        "key": "secret",
        "fw": "0.0.0",
        "board": "esp32-devkitc",
        "ca": spec.get("ca"),
    }
    if spec.get("ca") and spec.get("tls_simulated"):
        ident["ca"] = None  # no TLS in this runtime: the handshake is the peer's one byte
    link = Link(kiosk, outbox, clock, network.WLAN(), ident, hw)
    if spec.get("tls_simulated") and spec.get("ca"):
        link.client.ssl = "simulated"
    # Deadlines and backoff scaled down so that the matrix runs in seconds; the same code
    # paths as the product's values.
    c = link.client
    c.keepalive = 1
    c.TIMEOUT_S = 1
    link.CONNECT_WAIT_S = 3
    link.SUBACK_WAIT_MS = 1500
    link.PUBACK_WAIT_MS = 2500
    link.BACKOFF_MIN_MS = 100
    link.BACKOFF_MAX_MS = 400
    return kiosk, outbox, link, screen


def drained(link, last) -> bool:
    """Every event up to `last` published in this session and acknowledged by the broker."""
    return link.up and link.after >= last and not link.inflight


async def one(spec, folder, timing) -> None:
    kiosk, outbox, link, screen = build(spec, folder, timing)
    errors = []
    shown = kiosk.link_problem

    def seen(why) -> None:
        if why is not None and why not in errors:
            errors.append(why)
        shown(why)

    kiosk.link_problem = seen
    for _ in range(BEFORE):
        kiosk.press(BUTTON)
    kiosk.to_idle()  # the thank-you screen is over: the prompt, where the line shows
    task = asyncio.create_task(link.run())
    waited = 0
    while not (link.failures and link.up):
        if waited > DEADLINE_MS or task.done():
            break
        await asyncio.sleep_ms(POLL_MS)
        waited += POLL_MS
    back = bool(link.failures and link.up)
    for _ in range(AFTER):
        kiosk.press(BUTTON)
    last = outbox.next_seq() - 1
    waited = 0
    while not drained(link, last) and waited <= DEADLINE_MS and not task.done():
        await asyncio.sleep_ms(POLL_MS)
        waited += POLL_MS
    done = drained(link, last)
    alive = not task.done()
    ended = await reap(task)
    await link.client.disconnect()
    result = {
        "back": back,
        "alive": alive,
        "ended": None if ended is None else repr(ended),
        "failures": link.failures,
        "errors": errors,
        "notes": screen.notes,
        "drained": done,
        "pressed": outbox.next_seq() - 1,
        "screen": screen.name,
        "inflight": len(link.inflight),
        "unacked": link.client.inflight(),
    }
    print("RESULT " + spec["name"] + " " + json.dumps(result))


async def main(specs, base, tls_simulated, folder, timing=None) -> None:
    asyncio.open_connection = opener(base, tls_simulated)
    network.access_point["connect_ms"] = 0
    tasks = [asyncio.create_task(one(s, folder, timing)) for s in specs]
    for t in tasks:
        await t
    print("DONE")
