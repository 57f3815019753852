"""The host's TCP sockets for the heap measurement: `asyncio.open_connection` over polled calls.

Loaded into the VM as /lib/pollnet.py. The simulated Wi-Fi of the serial kiosk (`hostnet`)
awaits a JS promise for every read, and this port keeps about 90 bytes of its heap for each
such await, for good: in a measurement of thousands of customers that would pass for a leak
of the firmware. These streams poll instead (`kioskhost.take`, from tests/vm/sockets.mjs) and
wait between polls with asyncio.sleep_ms, which keeps nothing; every other call of the
stream is hostnet's.
"""

import asyncio
import binascii

import kioskhost  # pyright: ignore[reportMissingImports] - registered by mpvm.mjs

import hostnet  # the simulated Wi-Fi's streams, beside this file in /lib

_ECONNREFUSED = 111
_ECONNRESET = 104
_POLL_MS = 1
_CONNECTING, _OPEN, _ENDED, _FAILED = 0, 1, 2, 3


class Stream(hostnet.Stream):
    """hostnet's stream, whose reads poll instead of awaiting a promise."""

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
