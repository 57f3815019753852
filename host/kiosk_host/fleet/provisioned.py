"""The provisioned fleet: the kiosks whose folders provisioning wrote (`var/devices/S/D`).

A kiosk is provisioned when its folder holds `identity.json`. The fleet commands check the
kiosk they are given against these folders before they send anything, so that a mistyped
name is refused with the names it may have meant, not sent to a kiosk that does not exist;
`devices` lists the provisioned kiosks that never connected.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from kiosk_host.errors import UserError

NEVER_SEEN = "never seen"  # the state of a provisioned kiosk the aggregator never heard from


class UnknownKiosk(UserError):
    """A kiosk or store that was never provisioned; the message names the close ones."""


def kiosks(devices_dir: Path, store: str | None = None) -> list[tuple[str, str]]:
    """(store, device) of every kiosk provisioned in `devices_dir` (of `store` only when
    given), sorted."""
    pattern = f"{store}/*/identity.json" if store else "*/*/identity.json"
    return sorted((p.parent.parent.name, p.parent.name) for p in devices_dir.glob(pattern))


def board_name(devices_dir: Path, store: str, device: str) -> str | None:
    """The board a kiosk was provisioned for, as it reports itself (board.json's name)."""
    try:
        name = json.loads((devices_dir / store / device / "board.json").read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(name)


def _close(word: str, names: list[str]) -> str:
    close = sorted(difflib.get_close_matches(word, names, n=3, cutoff=0.6))
    if not close:
        return ""
    listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f"; did you mean {listed}?"


def check(devices_dir: Path, store: str, device: str | None = None) -> str | None:
    """Refuse (UnknownKiosk) a kiosk, or a store when `device` is None, that was not
    provisioned in `devices_dir`. When `devices_dir` holds no kiosk at all, nothing can be
    checked here: the answer is then a note saying so, else None."""
    fleet = kiosks(devices_dir)
    if not fleet:
        what = f"{store}/{device}" if device else f"store {store}"
        return (
            f"no provisioned kiosks in {devices_dir} to check {what} against: give "
            f"--devices-dir where provisioning wrote them"
        )
    stores = sorted({s for s, _ in fleet})
    if store not in stores:
        raise UnknownKiosk(
            f"no store {store} was provisioned in {devices_dir} (its stores: "
            f"{', '.join(stores)}){_close(store, stores)}"
        )
    if device is None:
        return None
    names = [d for s, d in fleet if s == store]
    if device not in names:
        raise UnknownKiosk(
            f"no kiosk {device} was provisioned in store {store} (in {devices_dir / store}: "
            f"{', '.join(names)}){_close(device, names)}"
        )
    return None
