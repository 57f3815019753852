"""The host's TCP sockets for the heap measurement: `asyncio.open_connection` over polled calls.

Loaded into the VM as /lib/pollnet.py. The simulated Wi-Fi of the serial kiosk (`hostnet`)
awaits a JS promise for every read, and this port keeps about 90 bytes of its heap for each
such await, for good: in a measurement of thousands of customers that would pass for a leak
of the firmware. These streams poll instead (`kioskhost.take`, from tests/vm/sockets.mjs) and
wait between polls with asyncio.sleep_ms, which keeps nothing. The Stream has the calls the
firmware's MQTT client makes, as MicroPython's own stream does.
"""

import asyncio
import binascii

import kioskhost  # pyright: ignore[reportMissingImports] - registered by mpvm.mjs

_ECONNREFUSED = 111
_ECONNRESET = 104
_POLL_MS = 1
_CONNECTING, _OPEN, _ENDED, _FAILED = 0, 1, 2, 3


class Stream:
    def __init__(self, sid: int) -> None:
        self._id = sid
        self.s = None

    async def read(self, n: int = -1) -> bytes:
        while True:
            data = kioskhost.take(self._id, n)
            if data:
                return binascii.unhexlify(data)
            state = kioskhost.status(self._id)
            if state == _ENDED:
                return b""
            if state == _FAILED:
                raise OSError(_ECONNRESET)
            await asyncio.sleep_ms(_POLL_MS)

    async def readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def write(self, buf) -> None:
        if kioskhost.send(self._id, binascii.hexlify(buf).decode()) < 0:
            raise OSError(_ECONNRESET)

    async def drain(self) -> None:
        await asyncio.sleep_ms(0)  # MicroPython's drain yields, and code relies on it

    def close(self) -> None:
        kioskhost.sclose(self._id)

    async def wait_closed(self) -> None:
        pass


async def open_connection(host: str, port: int, ssl=None, server_hostname=None):
    if ssl:
        raise OSError(95)  # EOPNOTSUPP: the measurement runs without TLS
    sid = kioskhost.open(host, port)
    while True:
        state = kioskhost.status(sid)
        if state == _OPEN:
            s = Stream(sid)
            return s, s
        if state != _CONNECTING:
            kioskhost.sclose(sid)
            raise OSError(_ECONNREFUSED)
        await asyncio.sleep_ms(_POLL_MS)
