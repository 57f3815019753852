"""Boot-loop guard: a kiosk that keeps crashing at start stops retrying and shows why.

Each start is counted in a small file before anything that can crash; the count is cleared
once the kiosk has run for a while. After LIMIT failed starts in a row the kiosk stays in
safe mode: the error on its screen, the REPL free for a new deployment, no watchdog.
"""

import os


class BootGuard:
    LIMIT = 3  # failed starts in a row before safe mode
    STABLE_MS = 30000  # running this long counts as a good start

    def __init__(self, path: str) -> None:
        self.path = path

    def _count(self) -> int:
        try:
            with open(self.path) as f:
                return int(f.read() or 0)
        except (OSError, ValueError):
            return 0

    def _write(self, n: int) -> None:
        with open(self.path, "w") as f:
            f.write(str(n))

    def enter(self) -> bool:
        """Count this start: True to run normally, False for safe mode."""
        n = self._count()
        if n >= self.LIMIT:
            return False
        self._write(n + 1)
        return True

    def running(self) -> None:
        """The kiosk has run for STABLE_MS: the next start begins a fresh count."""
        self._write(0)

    def record(self, error: str) -> None:
        """Keep the last crash's message for the safe-mode screen."""
        with open(self.path + ".err", "w") as f:
            f.write(error[:200])

    def last_error(self) -> str:
        try:
            with open(self.path + ".err") as f:
                return f.read()
        except OSError:
            return "repeated crashes at start"

    def reset(self) -> None:
        """After a new deployment: start counting afresh."""
        for p in (self.path, self.path + ".err"):
            try:
                os.remove(p)
            except OSError:
                pass
