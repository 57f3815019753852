"""Firmware slots on flash: which version runs, its trial boots, confirm and rollback.

ROOT/a and ROOT/b hold an update each; ROOT/current (the pointer) names the one that runs,
and without it the factory firmware runs. An update received as a ROMFS image runs from the
ROMFS partition it was written into (the pointer's `rom`); its slot keeps the image. The
pointer is only ever replaced whole (written as current.new, then renamed over current, which
littlefs does atomically), so a power cut leaves either the old pointer or the new one, and so
the whole old or the whole new version.
"""

import json
import os


class Slots:
    """The two slots under `root`, the pointer and the record of the last rollback."""

    TRIAL_BOOTS = 2  # boots a trial version gets to come online before it is rolled back
    TRIAL_MS = 300000  # time from boot a trial version gets to come online

    def __init__(self, root: str) -> None:
        self.root = root
        self._cur = root + "/current"
        self._failed = root + "/failed"

    def _read(self, path: str):
        try:
            with open(path, "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def _put(self, path: str, obj) -> None:
        """Replace `path` whole: a power cut leaves the old file or the new, never a mix."""
        try:
            os.mkdir(self.root)
        except OSError:
            pass  # already there
        with open(path + ".new", "wb") as f:
            f.write(json.dumps(obj).encode())
        os.rename(path + ".new", path)

    def _drop(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass  # already gone

    def pointer(self):
        """The pointer as a dict, or None: the factory firmware runs."""
        p = self._read(self._cur)
        if isinstance(p, dict) and p.get("slot") in ("a", "b"):
            return p
        return None

    def version(self, factory: str) -> str:
        """The version running: the pointer's, else the factory's."""
        p = self.pointer()
        return p.get("version", factory) if p else factory

    def _staging(self, p) -> str:
        return "b" if p and p["slot"] == "a" else "a"

    def staging(self) -> str:
        """The folder of the slot not running, where an update is received (made if need be)."""
        folder = self.root + "/" + self._staging(self.pointer())
        for d in (self.root, folder):
            try:
                os.mkdir(d)
            except OSError:
                pass  # already there
        return folder

    def rom(self):
        """The ROMFS partition the running version runs from, or None: a slot's files, or the
        factory firmware."""
        p = self.pointer()
        return p.get("rom") if p else None

    def switch(self, version: str, rid: str, rom=None) -> None:
        """Point at the staging slot, on trial: the next boot runs it (from ROMFS partition
        `rom`, where it was written, when not None)."""
        p = self.pointer()
        self._put(
            self._cur,
            {
                "slot": self._staging(p),
                "version": version,
                "id": rid,
                "trial": True,
                "boots": 0,
                "up_ms": 0,
                "prev": p["slot"] if p else None,
                "rom": rom,
                "prev_rom": p.get("rom") if p else None,
            },
        )

    def boot(self, last_error):
        """Count a trial boot, rolling back past TRIAL_BOOTS; the folder to run, or None."""
        p = self.pointer()
        if p is None:
            return None
        if p.get("trial"):
            p["boots"] = p.get("boots", 0) + 1
            if p["boots"] > self.TRIAL_BOOTS:
                if last_error:
                    self.rollback("crashed: " + last_error)
                else:
                    self.rollback("not online after %d boots" % self.TRIAL_BOOTS)
                p = self.pointer()
                if p is None:
                    return None
            else:
                self._put(self._cur, p)
        return self.root + "/" + p["slot"]

    def trying(self) -> bool:
        """Whether a trial version runs."""
        p = self.pointer()
        return bool(p and p.get("trial"))

    def confirm(self) -> None:
        """Keep the trial version: no more trial, the other slot emptied, no failure kept."""
        p = self.pointer()
        if not (p and p.get("trial")):
            return
        p["trial"] = False
        p["boots"] = 0
        p["prev"] = None
        p["prev_rom"] = None
        self._put(self._cur, p)
        # From here on the new version runs whatever else a power cut interrupts: what is
        # left in the other slot is emptied by the next update received there.
        self._empty(self.root + "/" + self._staging(p))
        self._drop(self._failed)

    def _empty(self, folder: str) -> None:
        # The manifest first: a slot half emptied no longer looks like a whole update.
        self._drop(folder + "/manifest.json")
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            self._drop(folder + "/" + name)

    def rollback(self, reason: str) -> None:
        """Give up the running version: the failure recorded, then back to the previous one."""
        p = self.pointer()
        if p is None:
            return
        self._put(
            self._failed,
            {"id": p.get("id"), "version": p.get("version"), "reason": reason[:160]},
        )
        prev = p.get("prev")
        if prev in ("a", "b"):
            # The previous slot's own manifest says which update it holds.
            m = self._read(self.root + "/" + prev + "/manifest.json") or {}
            self._put(
                self._cur,
                {
                    "slot": prev,
                    "version": m.get("version", "?"),
                    "id": m.get("id", "?"),
                    "trial": False,
                    "boots": 0,
                    "up_ms": 0,
                    "prev": None,
                    "rom": p.get("prev_rom"),
                    "prev_rom": None,
                },
            )
        else:
            self._drop(self._cur)

    def failed(self):
        """{"id", "version", "reason"} of the last rollback, or None."""
        f = self._read(self._failed)
        return f if isinstance(f, dict) else None
