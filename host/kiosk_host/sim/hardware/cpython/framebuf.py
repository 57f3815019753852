"""CPython stand-in for MicroPython's `framebuf`: the same API, drawing nothing.

A virtual kiosk reports its screens as text (`SCREEN <name>: <text>`); the pictures come
from the real framebuf on the MicroPython VM (`make screens`), so this needs no pixels.
"""

MONO_VLSB = 0
MONO_HLSB = 3
MONO_HMSB = 4
RGB565 = 1
GS2_HMSB = 5
GS4_HMSB = 2
GS8 = 6


class FrameBuffer:
    def __init__(self, buffer, width: int, height: int, format: int, stride: int = 0) -> None:
        self.buffer = buffer
        self.width = width
        self.height = height
        self.format = format

    def _draw(self, *args) -> None:
        return None

    fill = pixel = hline = vline = line = rect = fill_rect = text = _draw
    ellipse = poly = blit = scroll = _draw
