"""Emulators of the kiosk's panel controllers: a recorded bus trace in, the glass's picture out.

The simulated `machine` records every pin level the firmware sets and every SPI or I2C write,
in order (`machine.trace`). `TRACE_DUMP` defines `dump_trace(label)` on the VM, which prints
that trace; `parse_traces` reads it back here. A controller emulator is fed the events:

* `Ssd1306`: the 128x64 mono OLED on I2C (control byte 0x00 commands, 0x40 data; page,
  horizontal and vertical addressing), as the common modules mount it.
* `Dcs`: a MIPI DCS colour controller on SPI with the D/C line telling command from data
  (ILI9341, ILI9342C, ST7789): CASET, RASET, RAMWR, MADCTL, COLMOD, INVON/INVOFF, sleep and
  display on/off, RGB565 big-endian, and a `Glass` that says which part of the controller's
  memory the panel shows, how it is turned, its subpixel order and whether it is IPS.

`picture()` is what a person sees on the kiosk, in the kiosk's orientation, as RGB. Memory
starts as noise, as after power-up, so whatever the firmware fails to paint shows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RGB = tuple[int, int, int]
BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)

# MicroPython, run on the VM after the code under test: prints the trace and starts a new one.
TRACE_DUMP = """
def dump_trace(label):
    import machine
    print('~=', label)
    for e in machine.trace or ():
        if e[0] == 'pin':
            print('~P', e[1], e[2])
        elif e[0] == 'spi':
            print('~S', e[1], e[2].hex())
        else:
            print('~I', e[1], e[2], e[3].hex())
    machine.trace = []
"""


@dataclass(frozen=True)
class PinLevel:
    pin: int
    level: int


@dataclass(frozen=True)
class SpiWrite:
    bus: int
    data: bytes


@dataclass(frozen=True)
class I2cWrite:
    bus: int
    addr: int
    data: bytes


Event = PinLevel | SpiWrite | I2cWrite


def parse_traces(stdout: str) -> dict[str, list[Event]]:
    """The traces that `dump_trace(label)` printed, by label; other output is left out."""
    traces: dict[str, list[Event]] = {}
    events: list[Event] = []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "~=":
            events = traces.setdefault(rest, [])
        elif kind == "~P":
            pin, level = rest.split()
            events.append(PinLevel(int(pin), int(level)))
        elif kind == "~S":
            bus, data = rest.split()
            events.append(SpiWrite(int(bus), bytes.fromhex(data)))
        elif kind == "~I":
            bus, addr, data = rest.split()
            events.append(I2cWrite(int(bus), int(addr), bytes.fromhex(data)))
    return traces


def shown(r: int, g: int, b: int) -> RGB:
    """The colour a panel shows for (r, g, b) drawn in RGB565."""
    return _rgb565((r & 0xF8) << 8 | (g & 0xFC) << 3 | b >> 3)


def _rgb565(v: int) -> RGB:
    r, g, b = v >> 11, (v >> 5) & 0x3F, v & 0x1F
    return (r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2)


@dataclass
class Picture:
    """An RGB picture, row by row."""

    width: int
    height: int
    data: bytearray = field(repr=False)

    @classmethod
    def blank(cls, width: int, height: int) -> Picture:
        return cls(width, height, bytearray(width * height * 3))

    def __getitem__(self, xy: tuple[int, int]) -> RGB:
        x, y = xy
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise IndexError(f"({x}, {y}) is outside {self.width}x{self.height}")
        i = (y * self.width + x) * 3
        return (self.data[i], self.data[i + 1], self.data[i + 2])

    def __setitem__(self, xy: tuple[int, int], colour: RGB) -> None:
        i = (xy[1] * self.width + xy[0]) * 3
        self.data[i : i + 3] = bytes(colour)

    def rows(self) -> list[list[RGB]]:
        return [[self[x, y] for x in range(self.width)] for y in range(self.height)]

    def colours(self) -> Counter[RGB]:
        d = self.data
        return Counter(zip(d[0::3], d[1::3], d[2::3], strict=True))

    def bbox(self, colour: RGB) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the pixels of `colour`, right and bottom exclusive."""
        xs: list[int] = []
        ys: list[int] = []
        for y in range(self.height):
            for x in range(self.width):
                if self[x, y] == colour:
                    xs.append(x)
                    ys.append(y)
        if not xs:
            return None
        return (min(xs), min(ys), max(xs) + 1, max(ys) + 1)

    def diff(self, other: Picture) -> list[tuple[int, int]]:
        """The pixels where the two pictures differ."""
        assert (self.width, self.height) == (other.width, other.height)
        return [
            (x, y)
            for y in range(self.height)
            for x in range(self.width)
            if self[x, y] != other[x, y]
        ]

    def save_png(self, path: Path) -> None:
        from PIL import Image

        Image.frombytes("RGB", (self.width, self.height), bytes(self.data)).save(path)


def framebuf_picture(data: bytes, width: int, height: int, colour: bool) -> Picture:
    """What a panel shows for a whole-screen framebuf: RGB565 as the kiosk stores it (bytes
    big-endian on the wire), or MONO_VLSB lit white."""
    pic = Picture.blank(width, height)
    for y in range(height):
        for x in range(width):
            if colour:
                i = (y * width + x) * 2
                pic[x, y] = _rgb565(data[i] << 8 | data[i + 1])
            elif data[(y >> 3) * width + x] >> (y & 7) & 1:
                pic[x, y] = WHITE
    return pic


class _Controller:
    """Pin roles and their levels; a subclass takes the bus writes."""

    def __init__(
        self,
        dc: int | None = None,
        cs: int | None = None,
        rst: int | None = None,
        backlight: int | None = None,
    ) -> None:
        self.dc, self.cs, self.rst, self.backlight = dc, cs, rst, backlight
        self.levels: dict[int, int] = {}

    def feed(self, events: Iterable[Event]) -> None:
        for e in events:
            if isinstance(e, PinLevel):
                old = self.levels.get(e.pin)
                self.levels[e.pin] = e.level
                if e.pin == self.rst and e.level == 0 and old != 0:
                    self.reset()
                elif e.pin == self.cs and e.level == 1:
                    self.deselected()
            elif isinstance(e, SpiWrite):
                if self.cs is None or self.levels.get(self.cs, 1) == 0:
                    self.spi(e.data, self.levels.get(self.dc, 0) if self.dc is not None else 1)
            else:
                self.i2c(e.addr, e.data)

    def lit(self) -> bool:
        """The backlight is on (or the panel has none under the firmware's control)."""
        return self.backlight is None or self.levels.get(self.backlight, 0) == 1

    def reset(self) -> None:
        raise NotImplementedError

    def deselected(self) -> None:
        pass

    def spi(self, data: bytes, dc: int) -> None:
        raise AssertionError(f"{type(self).__name__} got an SPI write")

    def i2c(self, addr: int, data: bytes) -> None:
        raise AssertionError(f"{type(self).__name__} got an I2C write")


# SSD1306 commands and how many argument bytes follow each (datasheet, section 9).
_SSD1306_ARGS = {
    0x20: 1,  # memory addressing mode
    0x21: 2,  # column address window
    0x22: 2,  # page address window
    0x26: 6,  # right horizontal scroll set-up
    0x27: 6,  # left horizontal scroll set-up
    0x29: 5,  # vertical and right scroll set-up
    0x2A: 5,  # vertical and left scroll set-up
    0x2E: 0,  # deactivate scroll
    0x2F: 0,  # activate scroll
    0x81: 1,  # contrast
    0x8D: 1,  # charge pump
    0xA0: 0,  # segment remap off
    0xA1: 0,  # segment remap on
    0xA3: 2,  # vertical scroll area
    0xA4: 0,  # output follows memory
    0xA5: 0,  # entire display on
    0xA6: 0,  # normal
    0xA7: 0,  # inverse
    0xA8: 1,  # multiplex ratio
    0xAE: 0,  # display off
    0xAF: 0,  # display on
    0xC0: 0,  # COM scan COM0 -> COM[N-1]
    0xC8: 0,  # COM scan COM[N-1] -> COM0
    0xD3: 1,  # display offset
    0xD5: 1,  # clock divide ratio, oscillator frequency
    0xD9: 1,  # pre-charge period
    0xDA: 1,  # COM pins configuration
    0xDB: 1,  # VCOMH deselect level
    0xE3: 0,  # no operation
}
DATA = -1  # the command of a memory data stream in `Ssd1306.log`


class Ssd1306(_Controller):
    """An SSD1306 with its 128x64 glass mounted as the common modules do: upright with
    segment remap (A1) and COM scan remap (C8); pixels are white on black."""

    def __init__(self, width: int = 128, height: int = 64, addr: int = 0x3C) -> None:
        super().__init__()
        self.width, self.height, self.addr = width, height, addr
        rnd = random.Random(1306)
        self.ram = [bytearray(rnd.randbytes(128)) for _ in range(8)]
        self.log: list[tuple[int, bytes]] = []
        self._pending: list[int] = []
        self.reset()

    def reset(self) -> None:
        self.mode = 2  # page addressing
        self.columns = (0, 127)
        self.pages = (0, 7)
        self.col = self.page = 0
        self.seg_remap = self.com_remap = False
        self.mux = 63
        self.offset = self.start_line = 0
        self.com_pins = 0x12
        self.inverse = self.entire = self.on = self.charge_pump = False

    def i2c(self, addr: int, data: bytes) -> None:
        if addr != self.addr:
            return
        i = 0
        while i < len(data):
            control = data[i]
            i += 1
            if control & 0x3F:
                raise ValueError(f"0x{control:02x} is not an SSD1306 control byte")
            stream = data[i : i + 1] if control & 0x80 else data[i:]
            i += len(stream)
            if control & 0x40:
                self.log.append((DATA, bytes(stream)))
                for b in stream:
                    self._write(b)
            else:
                for b in stream:
                    self._command_byte(b)

    def _command_byte(self, b: int) -> None:
        self._pending.append(b)
        c = self._pending[0]
        if 0x00 <= c <= 0x1F or 0x40 <= c <= 0x7F or 0xB0 <= c <= 0xB7:
            need = 0
        elif c in _SSD1306_ARGS:
            need = _SSD1306_ARGS[c]
        else:
            raise ValueError(f"0x{c:02x} is not an SSD1306 command")
        if len(self._pending) == 1 + need:
            args = bytes(self._pending[1:])
            self._pending = []
            self.log.append((c, args))
            self._apply(c, args)

    def _apply(self, c: int, a: bytes) -> None:
        if c <= 0x0F:
            self.col = (self.col & 0xF0) | c
        elif c <= 0x1F:
            self.col = (self.col & 0x0F) | (c & 0x0F) << 4
        elif c == 0x20:
            self.mode = a[0] & 3
        elif c == 0x21:
            self.columns = (a[0] & 0x7F, a[1] & 0x7F)
            self.col = self.columns[0]
        elif c == 0x22:
            self.pages = (a[0] & 7, a[1] & 7)
            self.page = self.pages[0]
        elif 0x40 <= c <= 0x7F:
            self.start_line = c & 0x3F
        elif c == 0x8D:
            self.charge_pump = bool(a[0] & 0x04)
        elif c in (0xA0, 0xA1):
            self.seg_remap = c == 0xA1
        elif c in (0xA4, 0xA5):
            self.entire = c == 0xA5
        elif c in (0xA6, 0xA7):
            self.inverse = c == 0xA7
        elif c == 0xA8:
            self.mux = a[0] & 0x3F
        elif c in (0xAE, 0xAF):
            self.on = c == 0xAF
        elif 0xB0 <= c <= 0xB7:
            self.page = c & 7
        elif c in (0xC0, 0xC8):
            self.com_remap = c == 0xC8
        elif c == 0xD3:
            self.offset = a[0] & 0x3F
        elif c == 0xDA:
            self.com_pins = a[0]

    def _write(self, b: int) -> None:
        self.ram[self.page][self.col] = b
        c0, c1 = self.columns
        p0, p1 = self.pages
        if self.mode == 0:  # horizontal: column, then page
            if self.col >= c1:
                self.col = c0
                self.page = p0 if self.page >= p1 else self.page + 1
            else:
                self.col += 1
        elif self.mode == 1:  # vertical: page, then column
            if self.page >= p1:
                self.page = p0
                self.col = c0 if self.col >= c1 else self.col + 1
            else:
                self.page += 1
        else:  # page addressing: the column wraps within the page
            self.col = (self.col + 1) & 0x7F

    def picture(self) -> Picture:
        w, h = self.width, self.height
        pic = Picture.blank(w, h)
        if not (self.on and self.charge_pump):
            return pic
        if h == 64 and self.com_pins != 0x12:
            raise AssertionError("a 128x64 glass needs the alternative COM pins (DA 12)")
        for y in range(h):
            com = h - 1 - y  # the glass's COM lines run bottom to top on these modules
            row = (h - 1 - com) if self.com_remap else com
            if row > self.mux:
                continue
            ram_row = (row + self.start_line + self.offset) & 63
            bits = self.ram[ram_row >> 3]
            shift = ram_row & 7
            for x in range(w):
                seg = w - 1 - x
                col = (127 - seg) if self.seg_remap else seg
                on = (bits[col] >> shift) & 1
                if self.inverse:
                    on ^= 1
                if on or self.entire:
                    pic[x, y] = WHITE
        return pic


@dataclass(frozen=True)
class Glass:
    """The panel behind a DCS controller.

    It shows memory columns `col0`.. and rows `row0`.. (`cols` x `rows`), upright when
    MADCTL is 0 (`mirror`: when MADCTL mirrors the columns, MX), and the kiosk holds it
    turned `turns` quarter turns (the picture turns anticlockwise). `bgr`: blue-green-red
    subpixels (needs MADCTL BGR). `ips`: needs INVON.
    """

    cols: int
    rows: int
    col0: int = 0
    row0: int = 0
    turns: int = 0
    mirror: bool = False
    bgr: bool = False
    ips: bool = False


# The controllers' memory (columns x rows at MADCTL 0) and the glass of each kiosk's panel.
ILI9341_MEMORY = (240, 320)
ILI9342C_MEMORY = (320, 240)
ST7789_MEMORY = (240, 320)
M5STACK_GLASS = Glass(320, 240, bgr=True, ips=True)
TDISPLAY_GLASS = Glass(135, 240, col0=52, row0=40, turns=1, ips=True)
# The common 2.4"-2.8" ILI9341 module (upright portrait at MX|BGR), held in landscape.
ILI9341_GLASS = Glass(240, 320, turns=1, mirror=True, bgr=True)

_SWRESET, _SLPIN, _SLPOUT = 0x01, 0x10, 0x11
_INVOFF, _INVON, _DISPOFF, _DISPON = 0x20, 0x21, 0x28, 0x29
_CASET, _RASET, _RAMWR, _MADCTL, _COLMOD = 0x2A, 0x2B, 0x2C, 0x36, 0x3A


class Dcs(_Controller):
    """A MIPI DCS controller on SPI (ILI9341, ILI9342C, ST7789) in 16-bit colour."""

    def __init__(
        self,
        memory: tuple[int, int],
        glass: Glass,
        *,
        dc: int,
        cs: int | None = None,
        rst: int | None = None,
        backlight: int | None = None,
    ) -> None:
        super().__init__(dc=dc, cs=cs, rst=rst, backlight=backlight)
        self.mem_w, self.mem_h = memory
        self.glass = glass
        rnd = random.Random(9341)
        self.mem = [rnd.getrandbits(16) for _ in range(self.mem_w * self.mem_h)]
        self.log: list[tuple[int, bytes]] = []
        self.stray = 0  # pixels written outside the memory
        self.overrun = 0  # pixels written past the end of the window (they wrap)
        self.reset()

    def reset(self) -> None:
        self.madctl = 0
        self.colmod = 0x66  # 18 bits a pixel after reset
        self.inverted = False
        self.asleep = True
        self.on = False
        self.caset = (0, self.mem_w - 1)
        self.raset = (0, self.mem_h - 1)
        self._cmd: int | None = None
        self._args = bytearray()
        self._half: int | None = None
        self._full = False  # the window is full: a further pixel wraps to its start

    def spi(self, data: bytes, dc: int) -> None:
        if dc == 0:
            for c in data:
                self._command(c)
        elif self._cmd == _RAMWR:
            self.log[-1] = (_RAMWR, self.log[-1][1] + data)
            self._pixels(data)
        elif self._cmd is not None:
            self._args += data
            self.log[-1] = (self._cmd, bytes(self._args))
            self._apply(self._cmd, self._args)

    def _command(self, c: int) -> None:
        self._cmd = c
        self._args = bytearray()
        self.log.append((c, b""))
        if c == _SWRESET:
            self.reset()
        elif c == _SLPIN:
            self.asleep = True
        elif c == _SLPOUT:
            self.asleep = False
        elif c in (_INVOFF, _INVON):
            self.inverted = c == _INVON
        elif c in (_DISPOFF, _DISPON):
            self.on = c == _DISPON
        elif c == _RAMWR:
            if self.colmod & 0x07 != 0x05:
                raise AssertionError(f"RAMWR with COLMOD 0x{self.colmod:02x}, not 16 bits")
            self._x, self._y = self.caset[0], self.raset[0]
            self._half = None
            self._full = False

    def _apply(self, c: int, a: bytearray) -> None:
        if c in (_CASET, _RASET) and len(a) == 4:
            start, end = a[0] << 8 | a[1], a[2] << 8 | a[3]
            if start > end:
                raise AssertionError(f"window 0x{c:02x} from {start} to {end}")
            if c == _CASET:
                self.caset = (start, end)
            else:
                self.raset = (start, end)
        elif c == _MADCTL and len(a) == 1:
            self.madctl = a[0]
        elif c == _COLMOD and len(a) == 1:
            self.colmod = a[0]

    def _pixels(self, data: bytes) -> None:
        i = 0
        if self._half is not None and data:
            self._put(self._half << 8 | data[0])
            self._half = None
            i = 1
        n = len(data)
        while i + 1 < n:
            self._put(data[i] << 8 | data[i + 1])
            i += 2
        if i < n:
            self._half = data[i]

    def _put(self, v: int) -> None:
        if self._full:
            self.overrun += 1
            self._full = False
        x, y = self._x, self._y
        # MV exchanges the column and row addresses; then MX mirrors the memory's columns
        # and MY its rows.
        m = self.madctl
        col, row = (y, x) if m & 0x20 else (x, y)
        if m & 0x40:
            col = self.mem_w - 1 - col
        if m & 0x80:
            row = self.mem_h - 1 - row
        if 0 <= col < self.mem_w and 0 <= row < self.mem_h:
            self.mem[row * self.mem_w + col] = v
        else:
            self.stray += 1
        x0, x1 = self.caset
        y0, y1 = self.raset
        if x < x1:
            self._x = x + 1
        else:
            self._x = x0
            if y < y1:
                self._y = y + 1
            else:
                self._y = y0
                self._full = True

    def picture(self) -> Picture:
        g = self.glass
        w, h = (g.rows, g.cols) if g.turns & 1 else (g.cols, g.rows)
        pic = Picture.blank(w, h)
        if self.asleep or not self.on or not self.lit():
            return pic
        swap = bool(self.madctl & 0x08) != g.bgr
        invert = self.inverted != g.ips
        for y in range(h):
            for x in range(w):
                gx, gy = _unturn(x, y, g.turns, g.cols, g.rows)
                if g.mirror:
                    gx = g.cols - 1 - gx
                r, gr, b = _rgb565(self.mem[(g.row0 + gy) * self.mem_w + g.col0 + gx])
                if swap:
                    r, b = b, r
                if invert:
                    r, gr, b = 255 - r, 255 - gr, 255 - b
                pic[x, y] = (r, gr, b)
        return pic


def _unturn(x: int, y: int, turns: int, cols: int, rows: int) -> tuple[int, int]:
    """The glass pixel (upright at MADCTL 0) seen at (x, y) of the turned picture."""
    turns &= 3
    if turns == 0:
        return x, y
    if turns == 1:
        return cols - 1 - y, x
    if turns == 2:
        return cols - 1 - x, rows - 1 - y
    return y, rows - 1 - x


# MicroPython: the buses keep no log of their own; `machine.trace` has every write in order.
TRACE_ON = """
import machine
machine.SPI.recording = False
machine.I2C.recording = False
machine.trace = []
"""


@dataclass(frozen=True)
class Board:
    stem: str
    modules: tuple[str, ...]  # firmware modules the board's display needs
    width: int
    height: int
    band_rows: int
    colour: bool

    def panel(self) -> Ssd1306 | Dcs:
        """The emulated controller and glass, on the pins of the board's schematic."""
        if self.stem == "esp32_devkitc_ssd1306":
            return Ssd1306()
        if self.stem == "m5stack_core":
            return Dcs(ILI9342C_MEMORY, M5STACK_GLASS, dc=27, cs=14, rst=33, backlight=32)
        return Dcs(ST7789_MEMORY, TDISPLAY_GLASS, dc=16, cs=5, rst=23, backlight=4)


BOARDS = {
    b.stem: b
    for b in (
        Board("esp32_devkitc_ssd1306", ("display", "ssd1306"), 128, 64, 64, False),
        Board("m5stack_core", ("display", "ili9341"), 320, 240, 12, True),
        Board("lilygo_tdisplay", ("display", "ili9341", "st7789"), 240, 135, 15, True),
    )
}
