"""`make screens`: every screen on every board, painted by the firmware and seen on the glass."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import PIL.Image
import pytest

from tests.vm.mpvm import (
    BOARDS_DIR,
    FIRMWARE_DIR,
    MicroPythonVM,
    board_buttons,
    firmware_modules,
    vm_files,
)
from tests.vm.panels import BOARDS, shown
from tests.vm.screenshots import RIG, SCENARIO, capture

# the screens the scenario pictures, in its order
SCREENS = re.findall(r"dump_trace\('([\w-]+)'\)", SCENARIO)


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_every_screen_is_pictured_whole(mpvm: MicroPythonVM, tmp_path: Path, stem: str) -> None:
    board = BOARDS[stem]
    paths = capture(mpvm, stem, tmp_path)
    assert [p.name for p in paths] == [f"{stem}-{s}.png" for s in SCREENS]
    pictures = {}
    for path, screen in zip(paths, SCREENS, strict=True):
        with PIL.Image.open(path) as png:
            assert png.size == (board.width, board.height)
            pictures[screen] = png.convert("RGB")
    for screen, picture in pictures.items():
        colours = picture.getcolors(maxcolors=1 << 16) or []
        # Painted whole: the panel's memory starts as noise, and a screen has few colours.
        assert len(colours) <= 8, screen
        assert (0, 0, 0) in {c for _, c in colours}, screen
    assert len({p.tobytes() for p in pictures.values()}) == len(SCREENS)  # all different
    if board.colour:
        idle = {c for _, c in pictures["idle"].getcolors(maxcolors=1 << 16) or []}
        assert shown(230, 40, 40) in idle  # the very unhappy face is red
        assert shown(40, 190, 80) in idle  # the very happy one green


LANGUAGES = ("de", "en", "es", "fr", "nl")
CODE = "A7K36"  # a valid recovery code (its check character is 6)

# Every customer and staff screen, in one language: the prompt, thanks, "make it right?" and
# the code, the verdict, and staff mode's pages (signed out and in, cases and none).
EVERY_SCREEN = """
rig.sleep(6000, 100)
rig.press({n})
rig.sleep(6000, 100)
rig.press(1)
rig.press({n})
rig.sleep(61000, 1000)
rig.kiosk.confirm_recovery('{code}')
rig.press(1)
rig.sleep(4000, 100)
now = 1763900000
cases = [('{code}', now + 20 * 60 + 30), ('B2XZ9', now + 5 * 3600), ('C9QRW', now - 60)]
rig.kiosk.set_cases(cases)
rig.chord(1, {n}, 3100)
rig.press({n})
rig.press({n})
rig.chord(1, {n}, 3100)
rig.press(2)
rig.press({n})
rig.press(1)
rig.press({n})
rig.kiosk.set_cases([])
rig.chord(1, {n}, 3100)
rig.press(2)
rig.press({n})
rig.press(1)
rig.press(1)
rig.sleep(6000, 100)
"""


def every_screen_in_every_language(mpvm: MicroPythonVM, stem: str) -> list[tuple[str, str, bool]]:
    """(language, screen text, whether its words were crowded) of every screen shown."""
    n = board_buttons(stem)
    conf = "dict(CONFIG, scale=3, low_threshold=1)" if n == 3 else "CONFIG"
    script = (
        "import json\n"
        f"rig = Rig(board, conf={conf}, echo=False)\n"
        "def seen(name, text):\n"
        "    print('SHOWN', lang, rig.kiosk.ui.crowded, name + ': ' + text)\n"
        "rig._changed = seen\n"
        f"for lang in {LANGUAGES!r}:\n"
        f"    rig.kiosk.apply_config(json.dumps(dict({conf}, language=lang)).encode())\n"
        + "".join(
            "    " + line + "\n"
            for line in EVERY_SCREEN.format(n=n, code=CODE).strip().splitlines()
        )
    )
    code = f"import {stem} as board\nfrom kiosk_rig import Rig, CONFIG\n" + script
    files = vm_files(RIG, BOARDS_DIR / f"{stem}.py")
    out = mpvm.run(code, firmware_modules(), files=files).ok()
    shown = []
    for line in out.splitlines():
        if line.startswith("SHOWN "):
            _, lang, crowded, text = line.split(" ", 3)
            shown.append((lang, text, crowded == "True"))
    return shown


def texts(language: str) -> dict[str, str]:
    """The words of one language, as the kiosk has them (firmware/texts_<language>.py)."""
    words = runpy.run_path(str(FIRMWARE_DIR / f"texts_{language}.py"))
    return {k: v for k, v in words.items() if k.isupper() and isinstance(v, str)}


def english_left(language: str) -> list[str]:
    """Pieces of the English texts that must not show on a kiosk in `language`: every piece
    between the %s and %d of an English text that the language's own text does not share."""
    english, own = texts("en"), texts(language)
    pieces = set()
    for key, text in english.items():
        for piece in re.split(r"%[sd]", text):
            piece = piece.strip(" :")
            if len(piece) > 2 and piece not in own[key]:
                pieces.add(piece)
    return sorted(pieces)


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_every_screen_speaks_the_kiosks_language_and_fits(mpvm: MicroPythonVM, stem: str) -> None:
    shown = every_screen_in_every_language(mpvm, stem)
    names = {(lang, text.split(":")[0]) for lang, text, _ in shown}
    screens = {"idle", "thanks", "sorry", "code", "confirm", "staff"}
    assert names == {(lang, s) for lang in LANGUAGES for s in screens}
    for lang in LANGUAGES:
        own = texts(lang)
        lines = [text for language, text, _ in shown if language == lang]
        assert f"idle: {own['PROMPT']}" in lines  # the default prompt in the kiosk's language
        assert any(own["NO_CASES"] in line for line in lines)
        assert any(own["SIGN_OUT"] % "Ana" in line for line in lines)
        if lang == "en":
            continue
        for piece in english_left(lang):
            said = [line for line in lines if piece in line.replace(CODE, "")]
            assert not said, f"English {piece!r} on a kiosk in {lang}: {said}"
    crowded = [(lang, text) for lang, text, crowded in shown if crowded]
    assert not crowded, crowded  # every word sits over its own buttons, clear of its neighbours


# The choices of each screen with words over the buttons: (first button, last button) each,
# left to right, for a board of n buttons.
CHOICES = {
    "sorry": lambda n: [(0, n // 2 - 1), (n // 2, n - 1)],
    "confirm": lambda n: [(0, 0), (1, n - 2), (n - 1, n - 1)],
    "staff": lambda n: [(0, 0), (1, n - 2), (n - 1, n - 1)],
}


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_each_word_sits_over_its_own_buttons_on_the_glass(
    mpvm: MicroPythonVM, tmp_path: Path, stem: str
) -> None:
    """Seen in the pictures: a bar under the buttons of each choice, and a word right over
    the middle of every bar, all on one baseline (none floats a line above its buttons)."""
    board = BOARDS[stem]
    n = board_buttons(stem)
    unit = max(1, board.height // 64)
    accent = shown(255, 200, 0) if board.colour else (255, 255, 255)
    capture(mpvm, stem, tmp_path)
    for screen, choices in CHOICES.items():
        with PIL.Image.open(tmp_path / f"{stem}-{screen}.png") as png:
            picture = png.convert("RGB")
        w, h = picture.size
        lit = {(x, y) for x in range(w) for y in range(h) if picture.getpixel((x, y)) == accent}
        bar_row = h - 1
        bars, start = [], None
        for x in range(w + 1):
            on = (x, bar_row) in lit
            if on and start is None:
                start = x
            elif not on and start is not None:
                bars.append((start, x))
                start = None
        spans = [(a * w // n, (b + 1) * w // n) for a, b in choices(n)]
        assert len(bars) == len(spans), (screen, bars)
        bottoms = []
        for (left, right), (x0, x1) in zip(bars, spans, strict=True):
            assert x0 <= left < right <= x1, (screen, (left, right), (x0, x1))
            middle = range(left + (right - left) // 3, right - (right - left) // 3)
            above = [y for x in middle for y in range(h // 2, h - unit - 1) if (x, y) in lit]
            assert above, (screen, "no word over the bar", (left, right))
            bottoms.append(max(above))
        assert len(set(bottoms)) == 1, (screen, bottoms)  # one baseline
