"""The kiosk's screens, laid out for the display's size and painted band by band.

Each screen is laid out once when it is shown, as a short list of items; painting a band
only walks that list, so a colour screen costs no allocation per band.
"""

from micropython import const

from paint import FONT, Painter

_TEXT = const(0)
_FACE = const(1)


def wrap(s: str, per_line: int) -> list:
    """Words of `s` in lines of at most `per_line` characters (longer words are cut)."""
    lines = []
    line = ""
    for word in s.split():
        while len(word) > per_line:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:per_line])
            word = word[per_line:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= per_line:
            line = line + " " + word
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def _white(r: int, g: int, b: int) -> int:
    return 1


def mood(i: int, n: int) -> int:
    """-2 (very unhappy) .. 2 (very happy) for button i of n, left to right."""
    return (8 * i + n - 1) // (2 * (n - 1)) - 2


class Ui:
    """Shows the kiosk's screens; `name` and `text` say what is on the screen now."""

    # Each item: (kind, text, x, y, scale or radius, colour, mood of a face).

    def __init__(self, display, texts, on_change=None) -> None:
        self.d = display
        self.t = texts
        self.w = display.width
        self.h = display.height
        self.unit = max(1, self.h // 64)  # 1 on 128x64, 2 on 240x135, 3 on 320x240
        self.p = Painter(display.fb, display.band_rows)
        rgb = display.rgb if display.colour else _white  # on mono everything is lit
        self.fg = rgb(255, 255, 255)
        self.accent = rgb(255, 200, 0)
        # very unhappy .. very happy
        self.moods = (
            rgb(230, 40, 40),
            rgb(245, 140, 30),
            rgb(240, 220, 60),
            rgb(140, 210, 60),
            rgb(40, 190, 80),
        )
        self.alarm = self.moods[0]
        self.on_change = on_change
        self.name = ""
        self.text = ""
        self._items = []
        self._words = []

    # -- layout helpers ---------------------------------------------------------------------

    def _start(self, name: str) -> None:
        self.name = name
        self._items = []
        self._words = []

    def _lines(self, s: str, y: int, k: int, c=None) -> int:
        """Centred, wrapped lines from row y at scale k; returns the row below them."""
        for line in wrap(s, self.w // (FONT * k)):
            x = (self.w - len(line) * FONT * k) // 2
            self._items.append((_TEXT, line, x, y, k, self.fg if c is None else c, 0))
            y += FONT * k + self.unit * 2
        self._words.append(s)
        return y

    def _labels(self, n: int, labels) -> None:
        """Words above buttons: `labels` is a tuple of (button index, word)."""
        u = self.unit
        spots = []
        for i, word in labels:
            width = len(word) * FONT * u
            x = (2 * i + 1) * self.w // (2 * n) - width // 2
            spots.append((max(0, min(self.w - width, x)), width, i, word))
        crowded = False
        for a in range(len(spots) - 1):
            if spots[a][0] + spots[a][1] + FONT * u > spots[a + 1][0]:
                crowded = True
        base = self.h - FONT * u - 2 * u
        for j, (x, _, _, word) in enumerate(spots):
            # when neighbours would touch, every other word moves up a line
            y = base - (FONT * u + 3 * u) * (j % 2 if crowded else 0)
            self._items.append((_TEXT, word, x, y, u, self.accent, 0))
            self._words.append("[" + word + "]")

    def _show(self) -> None:
        self.text = " | ".join(self._words)
        self.d.paint(self._draw)
        if self.on_change:
            self.on_change(self.name, self.text)

    def _draw(self, fb, y0: int) -> None:
        p = self.p
        for kind, s, x, y, k, c, m in self._items:
            if kind == _TEXT:
                p.text(s, x, y, k, c, y0)
            else:
                p.smiley(x, y, k, m, c, y0)

    # -- screens ----------------------------------------------------------------------------

    def idle(self, prompt: str, n: int, note=None) -> None:
        """The prompt over one smiley per button; `note`, when given, on the bottom line in
        the smallest letters (for a technician: why the kiosk is offline)."""
        self._start("idle")
        top = self._lines(prompt, self.unit * 2, self.unit)
        h = self.h
        if note:
            h -= FONT + 2
            fit = self.w // FONT
            self._items.append((_TEXT, note[:fit], 0, h + 1, 1, self.alarm, 0))
            self._words.append("(" + note + ")")
        slot = self.w // n
        r = min(slot // 2 - 2 * self.unit, (h - top) // 2 - 2 * self.unit)
        cy = top + (h - top) // 2
        for i in range(n):
            m = mood(i, n)
            self._items.append((_FACE, "", (2 * i + 1) * slot // 2, cy, r, self.moods[m + 2], m))
        self._show()

    def thanks(self) -> None:
        self._start("thanks")
        k = self.unit * 2
        lines = len(wrap(self.t.THANK_YOU, self.w // (FONT * k)))
        self._lines(self.t.THANK_YOU, (self.h - lines * (FONT * k + 2 * self.unit)) // 2, k)
        self._show()

    def sorry(self, n: int) -> None:
        """Thanks, and "Let us make it right?": No on the leftmost button, Yes on the rightmost."""
        self._start("sorry")
        y = self._lines(self.t.SORRY, self.unit * 2, self.unit)
        self._lines(self.t.MAKE_IT_RIGHT, y, self.unit)
        self._labels(n, ((0, self.t.NO), (n - 1, self.t.YES)))
        self._show()

    def code(self, code: str) -> None:
        """The recovery code, large enough to copy down."""
        self._start("code")
        u = self.unit
        y = self._lines(self.t.YOUR_CODE, u * 2, u)
        y = self._lines(code, y + u * 2, u * 3, self.accent)
        self._lines(self.t.SHOW_STAFF, y + u * 2, u)
        self._show()

    def confirm(self, code: str, n: int) -> None:
        """The customer's verdict: Wow! rightmost, Fixed beside it, Not yet leftmost."""
        self._start("confirm")
        self._lines(self.t.CONFIRM % code, self.unit * 2, self.unit)
        self._labels(n, ((0, self.t.NOT_YET), (n - 2, self.t.FIXED), (n - 1, self.t.WOW)))
        self._show()

    def menu(self, title: str, items, cursor: int, n: int) -> None:
        """A staff list: Back on the leftmost button, Next and OK on the two rightmost."""
        self._start("staff")
        u = self.unit
        k = max(1, u - 1)  # list lines a size smaller than the title, to fit a name and a time
        y = self._lines(title, u * 2, u, self.accent)
        rows = max(1, (self.h - y - 2 * (FONT + 3) * u) // ((FONT + 2) * k))
        first = max(0, min(cursor - rows // 2, len(items) - rows))
        fit = (self.w - 2 * u) // (FONT * k)
        for i in range(first, min(len(items), first + rows)):
            line = (">" if i == cursor else " ") + items[i]
            self._items.append((_TEXT, line[:fit], 2 * u, y, k, self.fg, 0))
            y += (FONT + 2) * k
            self._words.append(line)
        self._labels(n, ((0, self.t.BACK), (n - 2, self.t.NEXT), (n - 1, self.t.OK)))
        self._show()

    def identify(self, name: str) -> None:
        """The kiosk's device name, large, for a technician looking for it."""
        self._start("identify")
        self._lines(name, (self.h - FONT * 2 * self.unit) // 2, 2 * self.unit, self.accent)
        self._show()

    def problem(self, title: str, detail: str) -> None:
        """What is wrong, in words a technician can act on."""
        self._start("problem")
        y = self._lines(title, self.unit * 2, self.unit, self.alarm)
        self._lines(detail, y + self.unit * 2, 1 if self.unit < 3 else 2)
        self._show()
