"""The line a simulated kiosk prints when its screen changes, `SCREEN <name>: <text>`, both ways.

The virtual kiosk, the serial kiosk's bridge and the test rig on the MicroPython VM print it;
the demo, `deploy`'s tests and every kiosk test read it back with `parse_screen`.
"""

from __future__ import annotations

SCREEN = "SCREEN "


def screen_line(name: str, text: str) -> str:
    """The line for a screen named `name` showing `text` (its lines joined by " / ")."""
    return f"{SCREEN}{name}: {text}"


def parse_screen(line: str) -> tuple[str, str] | None:
    """(name, text) of a screen line a kiosk printed, or None for any other line."""
    if not line.startswith(SCREEN):
        return None
    name, _, text = line[len(SCREEN) :].rstrip("\n").partition(": ")
    return name, text
