"""The kiosk's screen: a panel driver paints it through a small band buffer.

A whole RGB565 frame of a 320x240 panel is 150 KB, far more than an ESP32 without PSRAM can
spare, so a screen is drawn band by band into one buffer of `band_rows` rows that is made
once, and each band is sent to its rows of the panel. Drawing code draws the whole screen
for every band, shifted up by the band's top row; framebuf clips what falls outside.
"""

import framebuf
from micropython import const

_LIGHT = const(128)  # a colour this light or lighter (luma 0..255) lights a mono pixel


class Display:
    """Base of the panel drivers: a small band buffer through which a screen is painted band
    by band.

    Every driver sets `width`, `height` (pixels, landscape as the kiosk uses it), `colour`,
    `band_rows` and `fb` (a framebuf.FrameBuffer of width x band_rows over `buf`) by calling
    `_bands()`, and implements `_send()` and `power()`.
    """

    width = 0
    height = 0
    colour = False
    band_rows = 0
    swap = True  # colour panels read RGB565 big-endian; framebuf stores it little-endian

    def _bands(self, width: int, height: int, band_rows: int, colour: bool) -> None:
        """Make the band buffer once, and a view of it for a last band shorter than the others.

        Mono panels store 8 rows per byte (MONO_VLSB): their band_rows and height are
        multiples of 8.
        """
        self.width = width
        self.height = height
        self.colour = colour
        self.band_rows = band_rows
        self.buf = bytearray(_size(width, band_rows, colour))
        fmt = framebuf.RGB565 if colour else framebuf.MONO_VLSB
        self.fb = framebuf.FrameBuffer(self.buf, width, band_rows, fmt)
        last = height % band_rows
        self._last = memoryview(self.buf)[: _size(width, last, colour)] if last else self.buf

    def rgb(self, r: int, g: int, b: int) -> int:
        """The value to draw with on self.fb for this colour.

        On mono panels 1 when the colour is light (luma >= 128) else 0; on colour panels
        RGB565, byte-swapped if the panel needs it so that framebuf's little-endian storage
        goes out big-endian.
        """
        if not self.colour:
            return 1 if (r * 77 + g * 150 + b * 29) >> 8 >= _LIGHT else 0
        c = (r & 0xF8) << 8 | (g & 0xFC) << 3 | b >> 3
        if self.swap:
            return (c & 0xFF) << 8 | c >> 8
        return c

    def paint(self, draw) -> None:
        """Paint one whole screen, band by band, without allocating.

        For each band top row y0 = 0, band_rows, ...: fill the band with the background (0),
        call draw(self.fb, y0) (the callable draws the WHOLE screen with every y coordinate
        shifted by -y0; framebuf clips what falls outside the band), then send the band's rows
        to the panel window (0, y0, width, rows).
        """
        fb = self.fb
        step = self.band_rows
        height = self.height
        y0 = 0
        while y0 < height:
            fb.fill(0)
            draw(fb, y0)
            if height - y0 >= step:
                self._send(y0, step, self.buf)
            else:
                self._send(y0, height - y0, self._last)
            y0 += step

    def clear(self) -> None:
        """Paint the whole screen with the background."""
        self.paint(_nothing)

    def power(self, on: bool) -> None:
        """Display on, or off and asleep (its picture is kept); for the idle timeout."""
        raise NotImplementedError

    def _send(self, y0: int, rows: int, data) -> None:
        """Send `rows` rows of the band in `data` to the panel rows from y0, full width."""
        raise NotImplementedError


def _size(width: int, rows: int, colour: bool) -> int:
    return width * rows * 2 if colour else width * rows // 8


def _nothing(fb, y0: int) -> None:
    pass
