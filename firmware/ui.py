"""The kiosk's screens, laid out for the display's size and painted band by band.

Each screen is laid out once when it is shown, as a short list of items; painting a band
only walks that list, so a colour screen costs no allocation per band.
"""

from micropython import const

from paint import FONT, Painter

_TEXT = const(0)
_FACE = const(1)
_BAR = const(2)


def words(s: str) -> list:
    """The words of `s`, a mark standing alone (French "cela ?") kept with the word before it,
    so that no line starts with it."""
    out = []
    for word in s.split():
        if out and word in "?!:;":
            out[-1] = out[-1] + " " + word
        else:
            out.append(word)
    return out


def wrap(s: str, per_line: int) -> list:
    """Words of `s` in lines of at most `per_line` characters (longer words are cut)."""
    lines = []
    line = ""
    for word in words(s):
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

    # Each item: (kind, text, x, y, scale or radius or width, colour, mood of a face or
    # height of a bar).

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
        self.crowded = False  # the last choices shown did not fit over their buttons
        self._items = []
        self._words = []

    # -- layout helpers ---------------------------------------------------------------------

    def _start(self, name: str) -> None:
        self.name = name
        self.crowded = False
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

    def _labels(self, n: int, choices, place: bool = True) -> int:
        """Each choice's word over the buttons that choose it, and a bar under those buttons.

        `choices` is a tuple of (first button, last button, word), left to right. The words
        take the largest size at which each, wrapped to two lines at most, is centred over
        its own buttons, clear of its neighbours by a letter's width, or by half of one where
        a whole one does not fit. Returns the top row of the words; with `place` False only
        that, and nothing is added to the screen.
        """
        k = self.unit
        gap = FONT * k
        while self._fit(n, choices, k, gap, False) < 0:
            if gap > FONT * k // 2:
                gap = FONT * k // 2
            elif k > 1:
                k -= 1
                gap = FONT * k
            else:
                break
        if place:
            self.crowded = self._fit(n, choices, k, gap, False) < 0
        return self._fit(n, choices, k, gap, place)

    def _fit(self, n: int, choices, k: int, gap: int, place: bool) -> int:
        """The top row of the words at scale k, `gap` apart, or -1 if they do not fit;
        `place` adds them to the screen."""
        u = self.unit
        w = self.w
        bar = self.h - u  # the bars take the bottom rows
        line_h = FONT * k + 2 * u
        top = bar
        fits = True
        right = -gap  # right edge of the word on the left
        for first, last, word in choices:
            x0 = first * w // n
            x1 = (last + 1) * w // n
            # Lines a little wider than the buttons, never cutting a word: whether the words
            # still sit over their buttons, clear of each other, is checked below.
            per_line = (x1 - x0) // (FONT * k) + 1
            for part in words(word):
                per_line = max(per_line, len(part))
            lines = wrap(word, per_line)
            wide = 0
            for line in lines:
                wide = max(wide, len(line) * FONT * k)
            x = max(right + gap, max(0, min(w - wide, (x0 + x1 - wide) // 2)))
            if len(lines) > 2 or x + wide > w or not x0 <= x + wide // 2 < x1:
                fits = False
            y = bar - u - len(lines) * line_h + 2 * u
            top = min(top, y)
            if place:
                for line in lines:
                    lx = x + (wide - len(line) * FONT * k) // 2
                    self._items.append((_TEXT, line, lx, y, k, self.accent, 0))
                    y += line_h
                self._items.append((_BAR, "", x0 + 2 * u, bar, x1 - x0 - 4 * u, self.accent, u))
                self._words.append("[" + word + "]")
            right = x + wide
        return top if fits or place else -1

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
            elif kind == _FACE:
                p.smiley(x, y, k, m, c, y0)
            elif p.visible(y, m, y0):
                fb.fill_rect(x, y - y0, k, m, c)

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
        """Thanks, and "Let us make it right?": No on the left half of the buttons, Yes on the
        right half (and the middle one of an odd number)."""
        self._start("sorry")
        half = n // 2
        y = self._lines(self.t.SORRY, self.unit * 2, self.unit)
        self._lines(self.t.MAKE_IT_RIGHT, y, self.unit)
        self._labels(n, ((0, half - 1, self.t.NO), (half, n - 1, self.t.YES)))
        self._show()

    def code(self, code: str) -> None:
        """The recovery code, large enough to copy down."""
        self._start("code")
        u = self.unit
        y = self._lines(self.t.YOUR_CODE, u * 2, u)
        k = min(u * 3, self.w // (len(code) * FONT))  # large, but whole on one line
        y = self._lines(code, y + u * 2, k, self.accent)
        self._lines(self.t.SHOW_STAFF, y + u * 2, u)
        self._show()

    def confirm(self, code: str, n: int) -> None:
        """The customer's verdict: Not yet leftmost, Wow rightmost, Fixed on every button
        between them."""
        self._start("confirm")
        t = self.t
        self._lines(t.CONFIRM % code, self.unit * 2, self.unit)
        self._labels(n, ((0, 0, t.NOT_YET), (1, n - 2, t.FIXED), (n - 1, n - 1, t.WOW)))
        self._show()

    def menu(self, title: str, items, cursor: int, n: int) -> None:
        """A staff list: Back leftmost, OK rightmost, Next on every button between them."""
        self._start("staff")
        u = self.unit
        k = max(1, u - 1)  # list lines a size smaller than the title, to fit a name and a time
        t = self.t
        choices = ((0, 0, t.BACK), (1, n - 2, t.NEXT), (n - 1, n - 1, t.OK))
        labels = self._labels(n, choices, False)
        y = self._lines(title, u * 2, u, self.accent)
        rows = max(1, (labels - 2 * u - y) // ((FONT + 2) * k))
        first = max(0, min(cursor - rows // 2, len(items) - rows))
        fit = (self.w - 2 * u) // (FONT * k)
        for i in range(first, min(len(items), first + rows)):
            line = (">" if i == cursor else " ") + items[i]
            self._items.append((_TEXT, line[:fit], 2 * u, y, k, self.fg, 0))
            y += (FONT + 2) * k
            self._words.append(line)
        self._labels(n, choices)
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
