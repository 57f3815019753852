"""`make screens`: every screen on every board, painted by the firmware and seen on the glass."""

from __future__ import annotations

import re
from pathlib import Path

import PIL.Image
import pytest

from tests.vm.mpvm import MicroPythonVM
from tests.vm.panels import BOARDS, shown
from tests.vm.screenshots import SCENARIO, capture

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
