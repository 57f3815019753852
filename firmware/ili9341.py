"""ILI9341 and ILI9342C colour TFT controllers on SPI, painted in RGB565 bands.

Both speak the MIPI DCS command set: a window is set with CASET (columns) and RASET (rows),
then RAMWR streams its pixels, RGB565 big-endian, with the D/C line low for the command byte
and high for its data.
"""

import time

from micropython import const

from display import Display

_SWRESET = const(0x01)
_SLPIN = const(0x10)
_SLPOUT = const(0x11)
_INVOFF = const(0x20)
_INVON = const(0x21)
_DISPOFF = const(0x28)
_DISPON = const(0x29)
_CASET = const(0x2A)
_RASET = const(0x2B)
_RAMWR = const(0x2C)
_MADCTL = const(0x36)
_COLMOD = const(0x3A)
_SETTLE_MS = const(120)  # after a reset or sleep in, before sleep out: the supplies settle
_READY_MS = const(5)  # after a reset or sleep out, before the next command


class ILI9341(Display):
    """An ILI9341 (memory 240x320, portrait) and the base of the other MIPI DCS controllers.

    `madctl` is the memory access order: MY 0x80 and MX 0x40 mirror rows and columns, MV 0x20
    exchanges them (landscape on a portrait controller), BGR 0x08 for glass with blue-green-red
    subpixels; 0x28 turns the common 2.4"-2.8" ILI9341 module to landscape. `invert` sends
    INVON, which IPS glass needs. `x_offset` and `y_offset` place the picture in the
    controller's memory where the glass is smaller than it. `backlight` is an output Pin
    (active high) or None. The band buffer is width x band_rows x 2 bytes, made once.
    """

    # Tuning of the panel sent after reset: command, number of data bytes, data; ...
    TUNING = (
        b"\xc0\x01\x23"  # PWCTR1: GVDD 4.60 V
        b"\xc1\x01\x10"  # PWCTR2: step-up factor of the gate driver supplies
        b"\xc5\x02\x3e\x28"  # VMCTR1: VCOMH 4.25 V, VCOML -1.5 V
        b"\xc7\x01\x86"  # VMCTR2: VCOM offset -58
        b"\xb1\x02\x00\x18"  # FRMCTR1: oscillator undivided, 79 Hz frames
        b"\xb6\x03\x08\x82\x27"  # DFUNCTR: interval scan, normally white, 320 lines
        b"\x26\x01\x01"  # GAMSET: gamma curve 1
        b"\xe0\x0f\x0f\x31\x2b\x0c\x0e\x08\x4e\xf1\x37\x07\x10\x03\x0e\x09\x00"  # PGAMCTRL
        b"\xe1\x0f\x00\x0e\x14\x03\x11\x07\x31\xc1\x48\x08\x0f\x0c\x31\x36\x0f"  # NGAMCTRL
    )

    def __init__(
        self,
        spi,
        cs,
        dc,
        rst=None,
        width: int = 320,
        height: int = 240,
        madctl: int = 0x28,
        invert: bool = False,
        band_rows: int = 12,
        backlight=None,
        x_offset: int = 0,
        y_offset: int = 0,
    ) -> None:
        self.spi = spi
        self.cs = cs
        self.dc = dc
        self.backlight = backlight
        self._c = bytearray(1)
        self._raset = bytearray(4)
        x1 = x_offset + width - 1
        self._caset = bytes((x_offset >> 8, x_offset & 0xFF, x1 >> 8, x1 & 0xFF))
        self._y_offset = y_offset
        self._bands(width, height, band_rows, True)
        if backlight is not None:
            backlight.off()
        if rst is None:
            self._cmd(_SWRESET)
        else:
            rst.off()
            time.sleep_ms(1)
            rst.on()
        self._asleep = time.ticks_ms()  # a reset leaves the controller asleep
        time.sleep_ms(_READY_MS)
        t = self.TUNING
        i = 0
        while i < len(t):
            n = t[i + 1]
            self._cmd(t[i], t[i + 2 : i + 2 + n])
            i += 2 + n
        self._cmd(_COLMOD, b"\x55")  # 16 bits a pixel: RGB565
        self._cmd(_MADCTL, bytes((madctl,)))
        self._cmd(_INVON if invert else _INVOFF)
        self.clear()  # memory holds noise after power-up; the interface works while asleep
        self.power(True)

    def power(self, on: bool) -> None:
        """Sleep out and display on with the backlight, or backlight off, display off, sleep in."""
        bl = self.backlight
        if on:
            wait = _SETTLE_MS - time.ticks_diff(time.ticks_ms(), self._asleep)
            if wait > 0:
                time.sleep_ms(wait)
            self._cmd(_SLPOUT)
            time.sleep_ms(_READY_MS)
            self._cmd(_DISPON)
            if bl is not None:
                bl.on()
        else:
            if bl is not None:
                bl.off()
            self._cmd(_DISPOFF)
            self._cmd(_SLPIN)
            self._asleep = time.ticks_ms()

    def _send(self, y0: int, rows: int, data) -> None:
        r = self._raset
        y = y0 + self._y_offset
        r[0] = y >> 8
        r[1] = y & 0xFF
        y += rows - 1
        r[2] = y >> 8
        r[3] = y & 0xFF
        self._cmd(_CASET, self._caset)
        self._cmd(_RASET, r)
        self._cmd(_RAMWR, data)

    def _cmd(self, command: int, data=None) -> None:
        c = self._c
        c[0] = command
        self.cs.off()
        self.dc.off()
        self.spi.write(c)
        if data is not None:
            self.dc.on()
            self.spi.write(data)
        self.cs.on()


class ILI9342C(ILI9341):
    """An ILI9342C (memory 320x240, landscape), as in the M5Stack Core.

    Its IPS glass needs `invert=True`; M5Stack's own mounting is upright with madctl 0x08.
    """

    TUNING = (
        b"\xc8\x03\xff\x93\x42"  # SETEXTC: enable the extended commands that follow
        b"\xc0\x02\x12\x12"  # PWCTR1: VRH1, VRH2 (GVDD, GVCL)
        b"\xc1\x01\x03"  # PWCTR2: step-up factor
        b"\xc5\x01\xf2"  # VMCTR1: VCOM
        b"\xb0\x01\xe0"  # IFMODE: interface signal polarities
        b"\xf6\x03\x01\x00\x00"  # IFCTL: memory writes wrap around the window
        b"\xe0\x0f\x00\x0c\x11\x04\x11\x08\x37\x89\x4c\x06\x0c\x0a\x2e\x34\x0f"  # PGAMCTRL
        b"\xe1\x0f\x00\x0b\x11\x05\x13\x09\x33\x67\x48\x07\x0e\x0b\x2e\x33\x0f"  # NGAMCTRL
        b"\xb6\x04\x08\x82\x1d\x04"  # DFUNCTR: interval scan, 240 lines
    )
