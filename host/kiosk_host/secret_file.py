"""The first line of a file that holds a secret (a broker password, a Wi-Fi key)."""

from __future__ import annotations

from pathlib import Path

from kiosk_host.errors import UserError


def first_line(path: str, option: str) -> str:
    """The secret in `path`, given as `option` (named in the one-line refusal): its first
    line, which must not be empty. Secrets come from files, never from a command line, where
    `ps` shows them to everyone."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as why:
        text = why.strerror if isinstance(why, OSError) else "not UTF-8 text"
        raise UserError(f"{option} {path}: {text or why}") from None
    if not lines or not lines[0]:
        raise UserError(f"{option} {path}: its first line is empty")
    return lines[0]
