"""SSD1306 monochrome OLED controller on I2C (128x64 modules with the internal charge pump).

Its memory is 8 pages of 8 rows; a byte is one column of a page, lowest bit on top, which is
framebuf's MONO_VLSB. The whole 1 KB frame is the one band. Every I2C write starts with a
control byte: 0x00 for a stream of commands, 0x40 for a stream of memory data.
"""

from display import Display


class SSD1306(Display):
    """A 128x64 (or 128x32) SSD1306 at `addr` on an I2C bus, painted as one 1-bit band."""

    def __init__(self, i2c, addr: int = 0x3C, width: int = 128, height: int = 64) -> None:
        self.i2c = i2c
        self.addr = addr
        self._bands(width, height, height, False)
        # Column window 0..width-1 (0x21) and page window (0x22), set for each band.
        self._window = bytearray((0x00, 0x21, 0, width - 1, 0x22, 0, 0))
        self._data = [b"\x40", self.buf]  # one write: the data control byte, then the band
        self._one = bytearray(2)  # control byte 0x00, one command
        init = bytearray(
            b"\x00"  # control byte: commands follow
            b"\xae"  # display off
            b"\xd5\x80"  # clock: divide ratio 1, oscillator frequency 8 (the reset values)
            b"\xa8\x3f"  # multiplex ratio: height - 1
            b"\xd3\x00"  # display offset 0
            b"\x40"  # display start line 0
            b"\x8d\x14"  # charge pump on: the module makes its own panel voltage
            b"\x20\x00"  # horizontal addressing: column, then page, within the window
            b"\xa1"  # segment remap: column 127 drives SEG0
            b"\xc8"  # COM scan from COM[N-1] to COM0: with A1, upright on the module
            b"\xda\x12"  # COM pins: alternative configuration, no left/right remap
            b"\x81\xcf"  # contrast
            b"\xd9\xf1"  # pre-charge: 1 clock discharge, 15 clocks charge (charge pump)
            b"\xdb\x30"  # VCOMH deselect level: 0.83 x VCC
            b"\xa4"  # output follows the memory
            b"\xa6"  # normal: a 1 bit lights the pixel
            b"\x2e"  # scrolling off
        )
        init[5] = height - 1
        if height != 64:
            init[16] = 0x02  # sequential COM pins on 128x32 modules
        i2c.writeto(addr, init)
        self.clear()  # memory holds noise after power-up
        self.power(True)

    def power(self, on: bool) -> None:
        """Display on, or off (the controller's sleep mode; the memory is kept)."""
        c = self._one
        c[1] = 0xAF if on else 0xAE
        self.i2c.writeto(self.addr, c)

    def _send(self, y0: int, rows: int, data) -> None:
        w = self._window
        w[5] = y0 >> 3
        w[6] = (y0 + rows - 1) >> 3
        self.i2c.writeto(self.addr, w)
        v = self._data
        v[1] = data
        self.i2c.writevto(self.addr, v)
