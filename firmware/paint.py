"""Drawing primitives for band-by-band painting: scaled text and smiley faces on a framebuf.

Every function takes `y0`, the top row of the band being painted, and skips work that
falls outside the band, since a colour screen is painted once per band.
"""

import framebuf
from micropython import const

FONT = const(8)  # framebuf's built-in font is 8x8 pixels


class Painter:
    """Scaled text and smileys on one display's band buffer, allocation-free per band."""

    def __init__(self, fb, band_rows: int) -> None:
        self.fb = fb
        self.rows = band_rows
        self._glyph_buf = bytearray(FONT)  # one 8x8 character, one byte per row
        self._glyph = framebuf.FrameBuffer(self._glyph_buf, FONT, FONT, framebuf.MONO_HLSB)

    def visible(self, y: int, h: int, y0: int) -> bool:
        return y + h > y0 and y < y0 + self.rows

    def text(self, s: str, x: int, y: int, k: int, c: int, y0: int) -> None:
        """`s` with its top-left corner at (x, y), each font pixel a k x k square."""
        if not self.visible(y, FONT * k, y0):
            return
        if k == 1:
            self.fb.text(s, x, y - y0, c)
            return
        fb = self.fb
        g = self._glyph_buf
        for ch in s:
            self._glyph.fill(0)
            self._glyph.text(ch, 0, 0, 1)
            for row in range(FONT):
                top = y + row * k - y0
                if top + k <= 0 or top >= self.rows:
                    continue
                bits = g[row]
                col = 0
                while bits:  # one rectangle per run of lit pixels in the row
                    if bits & 0x80:
                        run = 0
                        while bits & 0x80:
                            run += 1
                            bits = (bits << 1) & 0xFF
                        fb.fill_rect(x + (col) * k, top, run * k, k, c)
                        col += run
                    else:
                        bits = (bits << 1) & 0xFF
                        col += 1
            x += FONT * k

    def centred(self, s: str, cx: int, y: int, k: int, c: int, y0: int) -> None:
        self.text(s, cx - len(s) * FONT * k // 2, y, k, c, y0)

    def smiley(self, cx: int, cy: int, r: int, mood: int, c: int, y0: int) -> None:
        """A face of radius r; mood from -2 (very unhappy) through 0 (neutral) to 2 (very happy)."""
        if not self.visible(cy - r, 2 * r + 1, y0):
            return
        fb = self.fb
        y = cy - y0
        t = r // 10 + 1  # line thickness grows with the face so it reads from a step away
        for i in range(t):
            fb.ellipse(cx, y, r - i, r - i, c)
        e = r // 6 + 1
        fb.ellipse(cx - r // 3, y - r // 3, e, e + e // 4, c, True)
        fb.ellipse(cx + r // 3, y - r // 3, e, e + e // 4, c, True)
        w = r // 2
        my = y + r // 3
        if mood == 0:
            for i in range(t):
                fb.hline(cx - w, my + i, 2 * w + 1, c)
            return
        # A plain curve for the middle moods, an open (filled) mouth for the outer ones, so
        # that even on a 128x64 panel, where a mouth is a few pixels tall, no two look alike.
        if mood > 1:  # a wide-open smile, its top edge clear of the eyes
            fb.ellipse(cx, my, w, r // 3, c, True, 0b1100)
        elif mood < -1:  # a wide-open frown, its top clear of the eyes
            fb.ellipse(cx, y + r // 2 + 1, w, r // 3, c, True, 0b0011)
        else:
            h = r // 4 + 1  # how far the mouth bends; both bends span the same rows
            for i in range(t):
                if mood > 0:
                    fb.ellipse(cx, my - h // 2 + i, w, h, c, False, 0b1100)  # lower half: a smile
                else:
                    fb.ellipse(cx, my + h // 2 - i, w, h, c, False, 0b0011)  # upper: a frown
