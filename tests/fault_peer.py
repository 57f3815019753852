"""A fault-injecting MQTT peer: a TCP server on 127.0.0.1 between a kiosk and a real mosquitto.

It passes MQTT 3.1.1 packets through, whole, in both directions, and at the chosen phase of
a connection it injects one failure instead of what would come next:

* phases: `connect` (the connection just accepted, nothing read yet), `connack` (the CONNECT
  read, instead of its CONNACK), `suback` (instead of the first SUBACK), `drain` (instead of
  forwarding the third event the kiosk publishes), `puback` (the event forwarded, instead of
  its PUBACK), `pingresp` (the PINGREQ forwarded, instead of its PINGRESP);
* failures: `refused` (nothing listens on the port), `reset` (a TCP RST), `eof` (the peer
  closes), `connack1`..`connack5` (a CONNACK with that return code), `tls` (a certificate
  the kiosk must not trust), `timeout` (the peer goes silent, the connection stays open),
  `garbage` (bytes that are no MQTT), `memory` (the kiosk runs out of memory reading the
  next packet: the peer sends `POISON`, which the kiosk's test stream turns into the
  MemoryError a device raises when a read cannot allocate).

The failure is injected at the first `times` occurrences of the phase, then the peer is a
plain proxy ("the fault clears", `cleared` is set); `refused` is a broker down for
`refused_s` seconds instead, as there is no connection to count.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

PHASES = ("connect", "connack", "suback", "drain", "puback", "pingresp")
FAILURES = (
    "refused",
    "reset",
    "eof",
    "connack1",
    "connack2",
    "connack3",
    "connack4",
    "connack5",
    "tls",
    "timeout",
    "garbage",
    "memory",
)
# A packet type that MQTT 3.1.1 reserves (15) with a two-byte body: the kiosk's test stream
# raises MemoryError when it reads it (see tests/link_fault_kiosk.py).
POISON = b"\xf0\x02\xee\x01"
# Not MQTT: a reserved packet type and a remaining length that never ends.
GARBAGE = b"\x05\xff\xff\xff\xff\x7fgarbage\r\n"
# The simulated TLS handshake of the MicroPython runs (its VM has no TLS): the first byte
# the peer sends is a TLS handshake record (trusted) or an alert (bad certificate).
TLS_OK = b"\x16"
TLS_BAD = b"\x15"
DRAIN_AT = 3  # the event publish that the drain fault replaces


def applies(failure: str, phase: str) -> bool:
    """Whether `failure` can happen at `phase` (the matrix leaves the other cells out):
    a refused connection and a certificate only at connect; a CONNACK return code only as
    the CONNACK; a MemoryError only when a packet is read, so not before the CONNECT."""
    if failure in ("refused", "tls"):
        return phase == "connect"
    if failure.startswith("connack"):
        return phase == "connack"
    if failure == "memory":
        return phase != "connect"
    return True


async def read_packet(r: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet, fixed header included."""
    head = await r.readexactly(2)
    n = head[1] & 0x7F
    shift = 7
    x = head[1]
    while x & 0x80:
        b = await r.readexactly(1)
        head += b
        x = b[0]
        n |= (x & 0x7F) << shift
        shift += 7
    return head + await r.readexactly(n)


def _body_start(pkt: bytes) -> int:
    i = 1
    while pkt[i] & 0x80:
        i += 1
    return i + 1


@dataclass
class FaultPeer:
    upstream_port: int
    failure: str
    phase: str
    event_topic: bytes = b"/event"
    times: int = 2
    refused_s: float = 1.0
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None  # (trusted, untrusted) on CPython
    tls_simulated: bool = False
    port: int = 0
    injected: int = 0
    connections: int = 0
    cleared_at: float | None = None
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()
        self._readers: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}

    # -- life --------------------------------------------------------------------------------

    def start(self) -> FaultPeer:
        self._thread.start()
        if self.failure == "refused":
            # A port that was ours and now has nobody listening: connect() is refused.
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.injected = 1
            self._run(self._reopen_later())
        else:
            self._run(self._listen())
        return self

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        ctx = None
        if self.tls is not None:
            ctx = self.tls[0]
            ctx.sni_callback = self._sni
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=ctx, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reopen_later(self) -> None:
        async def later() -> None:
            await asyncio.sleep(self.refused_s)  # the length of the outage, not a wait for it
            self._clear()
            await self._listen()

        asyncio.get_running_loop().create_task(later())

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def cleared(self) -> bool:
        return self.cleared_at is not None

    # -- the fault ---------------------------------------------------------------------------

    def _arm(self, phase: str) -> bool:
        """True when this occurrence of `phase` gets the failure."""
        with self._lock:
            if phase != self.phase or self.injected >= self.times:
                return False
            self.injected += 1
            self.log.append(f"inject {self.failure} at {phase}")
            return True

    def _clear(self) -> None:
        with self._lock:
            if self.cleared_at is None:
                self.cleared_at = time.monotonic()
                self.log.append("cleared")

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        assert self.tls is not None
        if self.failure == "tls" and self._arm("connect"):
            sslobj.context = self.tls[1]
            if self.injected >= self.times:
                self._clear()

    async def _inject(self, w: asyncio.StreamWriter, up: asyncio.StreamWriter | None) -> None:
        """Do the failure to the kiosk's connection `w` (and drop the broker's, `up`)."""
        f = self.failure
        if up is not None:
            up.close()
        if f.startswith("connack"):
            w.write(bytes((0x20, 2, 0, int(f[-1]))))
            await w.drain()
            await self._until_closed(w)
        elif f == "reset":
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        elif f == "eof":
            w.close()
        elif f == "garbage":
            w.write(GARBAGE)
            await w.drain()
            await self._until_closed(w)
        elif f == "memory":
            w.write(POISON)
            await w.drain()
            await self._until_closed(w)
        elif f == "tls":  # simulated: an alert instead of the handshake
            w.write(TLS_BAD)
            await w.drain()
            await self._until_closed(w)
        else:  # timeout: silence, with the connection open, until the kiosk gives up on it
            await self._until_closed(w)
        if self.injected >= self.times:
            self._clear()

    async def _until_closed(self, w: asyncio.StreamWriter) -> None:
        r = self._readers[w]
        try:
            while await r.read(4096):
                pass  # what the kiosk still says goes nowhere
        except OSError:
            pass
        w.close()

    # -- the proxy ---------------------------------------------------------------------------

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self._readers[w] = r
        self.connections += 1
        up_w: asyncio.StreamWriter | None = None
        try:
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_simulated:
                bad = self.failure == "tls" and self._arm("connect")
                if bad:
                    await self._inject(w, None)
                    return
                w.write(TLS_OK)
            elif self.failure != "tls" and self._arm("connect"):
                await self._inject(w, None)
                return
            connect = await read_packet(r)
            if self._arm("connack"):
                await self._inject(w, None)
                return
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_w.write(connect)
            await up_w.drain()
            pumps = [
                asyncio.create_task(self._kiosk_to_broker(r, w, up_w)),
                asyncio.create_task(self._broker_to_kiosk(up_r, w, up_w)),
            ]
            _, rest = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for t in rest:
                t.cancel()
            ends = await asyncio.gather(*pumps, return_exceptions=True)
            if True in ends:  # a pump stopped at the phase: the failure, in place of a packet
                await self._inject(w, up_w)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the kiosk went away
        finally:
            self._readers.pop(w, None)
            if up_w is not None:
                up_w.close()
            w.close()

    async def _kiosk_to_broker(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, up: asyncio.StreamWriter
    ) -> bool:
        events = 0
        while True:
            pkt = await read_packet(r)
            kind = pkt[0] & 0xF0
            if kind == 0x30:
                i = _body_start(pkt)
                tlen = pkt[i] << 8 | pkt[i + 1]
                if pkt[i + 2 : i + 2 + tlen].endswith(self.event_topic):
                    events += 1
                    if events == DRAIN_AT and self._arm("drain"):
                        return True
            up.write(pkt)
            await up.drain()

    async def _broker_to_kiosk(
        self, up_r: asyncio.StreamReader, w: asyncio.StreamWriter, up: asyncio.StreamWriter
    ) -> bool:
        while True:
            pkt = await read_packet(up_r)
            kind = pkt[0] & 0xF0
            phase = {0x90: "suback", 0x40: "puback", 0xD0: "pingresp"}.get(kind)
            if phase is not None and self._arm(phase):
                return True
            w.write(pkt)
            await w.drain()
