"""An MQTT 3.1.1 client on asyncio streams: QoS 0 and 1, keepalive, last will, TLS.

Written here rather than taken from a library because the kiosk needs all of it at once: it
must run unchanged on MicroPython and on CPython (the virtual kiosk), share one asyncio loop
with the buttons, and be driven by the outbox, which lets an event go only on its PUBACK.
micropython-lib's umqtt.simple and umqtt.robust block on a plain socket, do not track PUBACKs
and never resend unacknowledged messages with DUP after a reconnect; paho-mqtt does not run on
MicroPython.

Every packet is built whole, one allocation, and written with one write: a header and a body
written apart would wait behind Nagle's algorithm for the broker's delayed ACK. A written
packet is not changed while its connection lives, since CPython may keep a reference to it in
the transport's buffer rather than a copy.
"""

import asyncio
from collections import OrderedDict

from micropython import const

_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"
_TICKS = const(4)  # keepalive checks per keepalive period
_CHUNK = const(256)  # an oversize packet is read and dropped this many bytes at a time


class MQTTError(Exception):
    """The broker refused the connection (args[0] is the CONNACK return code), or a peer broke
    the protocol."""


def packet(first: int, parts: list) -> bytearray:
    """The packet with fixed header byte `first` and, after the remaining length, `parts` in
    order: a str as a length-prefixed UTF-8 string, an int as a 16-bit number, bytes as they
    are. The strs in `parts` are replaced by their encoding."""
    n = 0
    strs = 0  # bit i: parts[i] was a str and takes a length prefix
    for i in range(len(parts)):
        p = parts[i]
        if isinstance(p, str):
            p = parts[i] = p.encode()
            strs |= 1 << i
            n += 2
        n += 2 if isinstance(p, int) else len(p)
    if n > 268435455:  # four 7-bit digits
        raise ValueError("packet too large")
    pkt = bytearray(n + (2 if n < 128 else 3 if n < 16384 else 4 if n < 2097152 else 5))
    pkt[0] = first
    i = 1
    while True:
        pkt[i] = n & 0x7F | (0x80 if n > 0x7F else 0)
        i += 1
        n >>= 7
        if not n:
            break
    for j in range(len(parts)):
        p = parts[j]
        if strs >> j & 1:
            pkt[i] = len(p) >> 8
            pkt[i + 1] = len(p) & 0xFF
            i += 2
        if isinstance(p, int):
            pkt[i] = p >> 8
            pkt[i + 1] = p & 0xFF
            i += 2
        else:
            pkt[i : i + len(p)] = p
            i += len(p)
    return pkt


def tls_context(cafile: str):
    """A TLS client context that trusts only the CA certificate in `cafile` (PEM) and checks
    the broker's certificate against it and against the host name it was reached by. The same
    calls work on MicroPython (mbedTLS) and CPython (OpenSSL)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=cafile)
    return ctx


def is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 address literal, which needs no lookup."""
    if ":" in host:
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def resolve(host: str, port: int) -> str:
    """The address to connect to for `host`: an IP literal as it is, else the first address
    a DNS lookup gives (socket.getaddrinfo, which blocks; OSError when it fails)."""
    if is_ip(host):
        return host
    try:
        import socket
    except ImportError:  # a port without sockets (the WebAssembly VM): its streams resolve
        return host
    # The first stream address, as MicroPython's own open_connection takes it.
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    # (ip, port) on the ESP32 and CPython; a port that answers a packed sockaddr gets the name
    return addr[0] if isinstance(addr, tuple) else host


async def _skip(r, n: int) -> None:
    while n > 0:
        await r.readexactly(min(n, _CHUNK))
        n -= _CHUNK


class MQTTClient:
    """An MQTT 3.1.1 client on asyncio streams, for MicroPython and CPython alike."""

    KEEPALIVE_S = const(60)
    # Each phase of a connect has this deadline of its own: opening the connection (the TLS
    # handshake included), writing the CONNECT, and the CONNACK. A TCP stack that hangs
    # silently must not leave the kiosk waiting for ever at any one of them.
    TIMEOUT_S = const(10)

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int = 1883,
        *,
        user=None,
        password=None,
        keepalive: int = KEEPALIVE_S,
        clean: bool = True,
        will=None,
        ssl=None,
        on_message=None,
        on_puback=None,
        max_packet: int = 16384,
    ) -> None:
        """`will` is (topic, payload bytes, qos, retain) or None. `ssl` is passed to
        asyncio.open_connection for TLS: an SSLContext (see tls_context), or None.

        `on_message(topic: str, payload: bytes, retained: bool)` is called for every PUBLISH
        received; at QoS 1 the PUBACK goes out after it returns, so a message is acknowledged
        only once handled. `on_puback(pid)` is called for every PUBACK received, never before
        publish() has returned that pid. Incoming packets larger than `max_packet` bytes are
        read and dropped without breaking the stream; a QoS 1 one is still acknowledged."""
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.clean = clean
        self.will = will
        self.ssl = ssl
        self.on_message = on_message
        self.on_puback = on_puback
        self.max_packet = max_packet
        self.connected = False
        self._r = None
        self._w = None
        self._pid = 0  # the last packet id given out
        self._out = OrderedDict()  # pid -> PUBLISH packet until its PUBACK, in the order sent
        self._lock = asyncio.Lock()  # one packet on the wire at a time, see _send
        self._busy = 0  # the pid of the PUBLISH being written
        self._idle = 0  # keepalive ticks since a packet last went out
        self._pong = 0  # 1 + ticks since an unanswered PINGREQ; 0 when none is out
        self._dead = False  # the keepalive gave up on this connection
        self.addr = None  # the broker's address from the last connect that succeeded
        self.subacks = 0  # SUBACKs owed on this connection
        self._optional = 0  # the pid of a subscription the session can do without
        self.refused = 0  # such subscriptions the broker refused on this connection

    async def connect(self) -> bool:
        """Open the connection and the session; True when the broker kept a session for us.
        Raises OSError (network, timeout, closed before the CONNACK) or MQTTError (refused, or
        not a CONNACK); a TLS verification failure raises what the runtime raises (ValueError
        from mbedTLS on MicroPython, ssl.SSLCertVerificationError on CPython)."""
        self.close()
        self._idle = self._pong = 0
        self._dead = False
        self.subacks = self.refused = 0
        t = self.TIMEOUT_S
        # getaddrinfo blocks the whole loop (open_connection would call it on every attempt):
        # the address is looked up once, kept while connects succeed, and looked up afresh
        # only after one fails. The buttons' interrupts latch the presses made meanwhile.
        addr = self.addr or resolve(self.host, self.port)
        self.addr = None
        try:
            if self.ssl:  # the certificate is checked against the name, not the address
                opening = asyncio.open_connection(
                    addr, self.port, ssl=self.ssl, server_hostname=self.host
                )
            else:
                opening = asyncio.open_connection(addr, self.port)
            self._r, self._w = await asyncio.wait_for(opening, t)
            flags = 2 if self.clean else 0
            parts = ["MQTT", b"", self.keepalive, self.client_id]
            if self.will:
                topic, msg, qos, retain = self.will
                flags |= 4 | qos << 3 | (0x20 if retain else 0)
                parts += (topic, len(msg), msg)
            if self.user is not None:
                flags |= 0x80
                parts.append(self.user)
            p = self.password
            if p is not None:
                flags |= 0x40
                parts += (p,) if isinstance(p, str) else (len(p), p)
            parts[1] = bytes((4, flags))  # protocol level 4 is MQTT 3.1.1
            await asyncio.wait_for(self._send(packet(0x10, parts)), t)
            a = await asyncio.wait_for(self._r.readexactly(4), t)
            if a[0] != 0x20 or a[1] != 2:
                raise MQTTError("no CONNACK")
            if a[3]:
                raise MQTTError(a[3])
            # The old connection is gone, so its packets may change now: DUP marks a resend.
            # A copy of the list, as a reader of the old connection may still drop an ack.
            for pkt in list(self._out.values()):
                pkt[0] |= 8
                await self._send(pkt)
        except asyncio.TimeoutError:
            self.close()
            raise OSError("MQTT connect timed out") from None
        except EOFError:
            # MicroPython's readexactly raises EOFError, CPython's IncompleteReadError (an
            # EOFError too): either way the peer hung up before its CONNACK.
            self.close()
            raise OSError("MQTT closed before CONNACK") from None
        except BaseException:
            self.close()
            raise
        self.connected = True
        self.addr = addr
        return bool(a[2] & 1)

    async def publish(self, topic: str, payload, qos: int = 0, retain: bool = False) -> int:
        """Write a PUBLISH; the packet id at QoS 1 (kept and resent until its PUBACK), else 0.
        When it raises, nothing is kept: the message is still the caller's to send."""
        if not self.connected:
            raise OSError("MQTT not connected")
        pid = 0
        parts = [topic, payload]
        if qos:
            if len(self._out) > 65534:
                raise MQTTError("no packet id free")
            pid = self._pid
            while True:
                pid = pid % 65535 + 1
                if pid not in self._out:
                    break
            self._pid = pid
            parts.insert(1, pid)
        pkt = packet(_PUBLISH | qos << 1 | (1 if retain else 0), parts)
        if qos:
            self._out[pid] = pkt
        try:
            await self._send(pkt, pid)
        except BaseException:
            self._out.pop(pid, None)
            raise
        if pid and pid not in self._out and self.on_puback:
            # Acknowledged while being written (MicroPython's drain always yields): report it
            # once the caller has the id, not before.
            asyncio.create_task(self._acked(pid))
        return pid

    async def _acked(self, pid: int) -> None:
        if self.on_puback:
            self.on_puback(pid)

    def inflight(self) -> int:
        """QoS 1 messages sent and not yet acknowledged."""
        return len(self._out)

    async def subscribe(self, topic: str, qos: int = 1, optional: bool = False) -> None:
        """Send a SUBSCRIBE; run() reads the SUBACK (counted down in `subacks`) and raises
        MQTTError if it is refused, unless the subscription is `optional`: then the refusal
        is counted in `refused` (one optional subscription per connection)."""
        self._pid = self._pid % 65535 + 1
        if optional:
            self._optional = self._pid
        self.subacks += 1
        await self._send(packet(0x82, [self._pid, topic, bytes((qos,))]))

    async def _send(self, pkt, pid: int = 0) -> None:
        # One packet at a time, drained before the next is written: MicroPython's stream
        # loses what is written while another task drains it.
        async with self._lock:
            w = self._w
            if w is None:
                raise OSError("MQTT not connected")
            self._busy = pid
            try:
                w.write(pkt)
                await w.drain()
            except BaseException:
                if self._w is w:
                    self.close()  # half a packet may have gone: the stream is unframed
                raise
            finally:
                self._busy = 0
            self._idle = 0

    async def run(self) -> None:
        """Read and dispatch packets and keep the connection alive, until it ends. Returns at
        EOF; raises OSError on a network error or when the broker stops answering PINGREQ,
        MQTTError on a refused subscription or a protocol violation, and whatever on_message
        raises (that message is not acknowledged). `connected` is then False. Once the
        connection has been closed here (close(), disconnect()), a read that fails on the
        closed socket (EBADF on MicroPython) is its echo, not news: run() returns."""
        r = self._r
        if not self.connected or r is None:
            raise OSError("MQTT not connected")
        me = asyncio.current_task()
        ka = asyncio.create_task(self._keepalive(r, me)) if self.keepalive else None
        try:
            while True:
                await self._handle(r)
        except (EOFError, asyncio.CancelledError) as e:
            if self._dead:
                # Our own keepalive cancelled us; CPython counts cancellations.
                u = getattr(me, "uncancel", None)
                if u:
                    u()
                raise OSError("MQTT keepalive: no PINGRESP") from None
            if not isinstance(e, EOFError):
                raise
        except OSError:
            if self._r is r:
                raise
        finally:
            if ka:
                ka.cancel()
            if self._r is r:  # not a newer connection made meanwhile
                self.close()

    async def _keepalive(self, r, task) -> None:
        # Counts ticks rather than reading a clock, so that it runs the same on both sides.
        # A PINGREQ goes out after 3/4 to 1 keepalive of silence; without a PINGRESP within
        # half a keepalive more, or with one packet stuck for 1.5 keepalives, the link is dead.
        tick = self.keepalive / _TICKS
        while True:
            await asyncio.sleep(tick)
            self._idle += 1
            if self._pong:
                self._pong += 1
                if self._pong > _TICKS // 2:
                    break
            elif self._idle >= _TICKS and not self._lock.locked() and self._w:
                self._w.write(_PINGREQ)  # two bytes: no drain, so no wait here
                self._idle = 0
                self._pong = 1
            elif self._idle >= _TICKS * 3 // 2:
                break
        if self._r is r:
            self._dead = True
            self.close()
            task.cancel()

    async def _handle(self, r) -> None:
        """Read one packet from `r` and act on it."""
        b = await r.readexactly(2)
        first = b[0]
        x = b[1]
        n = x & 0x7F
        s = 7
        while x & 0x80:
            if s > 21:
                raise MQTTError("remaining length")
            x = (await r.readexactly(1))[0]
            n |= (x & 0x7F) << s
            s += 7
        kind = first & 0xF0
        qos = first >> 1 & 3
        pid = 0
        if 1 + s // 7 + n > self.max_packet:
            if kind == _PUBLISH and qos:
                # Still acknowledged, or the broker would send it again at every connect.
                b = await r.readexactly(2)
                tl = b[0] << 8 | b[1]
                await _skip(r, tl)
                b = await r.readexactly(2)
                pid = b[0] << 8 | b[1]
                n -= tl + 4
            await _skip(r, n)
        else:
            body = await r.readexactly(n)
            if kind == _PUBLISH:
                if qos > 1:
                    raise MQTTError("QoS 2")
                i = 2 + (body[0] << 8 | body[1])
                topic = body[2:i].decode()
                if qos:
                    pid = body[i] << 8 | body[i + 1]
                    i += 2
                if self.on_message:
                    self.on_message(topic, body[i:], bool(first & 1))
            elif kind == _PUBACK:
                p = body[0] << 8 | body[1]
                self._out.pop(p, None)
                if p != self._busy and self.on_puback:
                    self.on_puback(p)
            elif kind == _SUBACK:
                if 0x80 in body[2:]:
                    if body[0] << 8 | body[1] != self._optional:
                        raise MQTTError(0x80)
                    self.refused += 1
                if self.subacks:
                    self.subacks -= 1
            elif kind == _PINGRESP:
                self._pong = 0
            else:
                raise MQTTError("unexpected packet 0x%02x" % first)
        if pid:
            await self._send(bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)))

    async def disconnect(self) -> None:
        """A clean goodbye: DISCONNECT, then close. The broker discards the will."""
        w = self._w
        if w:
            try:
                await self._send(_DISCONNECT)
                self._w = None  # so that close() below lets the DISCONNECT go out first
                w.close()
                await w.wait_closed()  # MicroPython closes the socket here
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        """Drop the connection at once, without DISCONNECT: the broker publishes the will."""
        self.connected = False
        w = self._w
        self._r = self._w = None
        if w:
            w.close()  # CPython: closes the transport; MicroPython: does nothing
            t = getattr(w, "transport", None)
            if t:
                t.abort()  # CPython: unsent bytes dropped too, and the reader sees EOF now
            s = getattr(w, "s", None)
            if s:
                s.close()  # MicroPython: the stream's socket
