"""Simulated Wi-Fi sockets for the serial kiosk: `asyncio.open_connection` over host TCP.

Written for the serial kiosk's bridge (`serial_kiosk.mjs`): MicroPython's WebAssembly port
has no sockets and its asyncio no streams, so the bridge registers `kioskhost`, whose
`connect`, `recv`, `send` and `sclose` work on the host's sockets and answer with promises
that a task awaits. The streams have the calls the firmware's MQTT client makes.
"""

import asyncio
import binascii

import kioskhost  # pyright: ignore[reportMissingImports] - registered by the bridge

_ECONNREFUSED = 111
_ECONNRESET = 104
_EOPNOTSUPP = 95


class Stream:
    """Both ends of one connection, as the pair open_connection returns."""

    def __init__(self, sid: int) -> None:
        self._id = sid
        self.s = None  # MicroPython's streams keep their socket here; this one has none

    async def read(self, n: int = -1) -> bytes:
        try:
            data = await kioskhost.recv(self._id, n)
        except Exception:  # the host socket failed
            raise OSError(_ECONNRESET) from None
        return binascii.unhexlify(data)

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


async def open_connection(host: str, port: int, ssl=None):
    if ssl:
        raise OSError(_EOPNOTSUPP)
    try:
        sid = await kioskhost.connect(host, port)
    except Exception:  # refused, unreachable, or no such host
        raise OSError(_ECONNREFUSED) from None
    s = Stream(sid)
    return s, s
