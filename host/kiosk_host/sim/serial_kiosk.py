"""`kiosk-host serial-kiosk`: a kiosk on a pseudo-terminal, for mpremote and `deploy` to flash.

socat makes the pseudo-terminal; behind it `serial_kiosk.mjs` runs MicroPython's WebAssembly
VM as the ESP32 would run it (REPL, raw REPL, soft and hard resets, watchdog), with a host
folder as its flash, so that what mpremote copies lands in that folder and survives restarts.
A reset boots boot.py and main.py from that folder on the simulated hardware of `hardware/`.
The bridge reports every screen the firmware shows (`SCREEN <name>: <text>`) and every reset
(`RESET <kind>`) on its standard error; this module collects those lines. A board whose
MicroPython has a ROMFS partition is a flash folder with the partition's bytes in `.romfs0`
(`romfs_partition()` writes it), which the VM mounts at /rom and cannot write.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kiosk_host.sim.screen_lines import parse_screen
from kiosk_host.sim.virtual_kiosk import KioskSetupError

BRIDGE = Path(__file__).resolve().with_name("serial_kiosk.mjs")
START_TIMEOUT_S = 10.0
DEFAULT_FLASH_KB = 2048  # the MicroPython file system on a 4 MB ESP32
ROMFS_FILE = ".romfs0"  # in the flash folder: ROMFS partition 0, as serial_kiosk.mjs reads it


def romfs_partition(flash: Path, image: bytes, size: int | None = None) -> Path:
    """Give the kiosk whose flash is `flash` a ROMFS partition 0 of `size` bytes (the
    image's own by default) holding `image`, the rest erased (0xff) as flash is; read at
    each boot. The file it is written to."""
    size = len(image) if size is None else size
    if size < len(image):
        raise ValueError(f"a {len(image)}-byte image does not fit a {size}-byte partition")
    flash.mkdir(parents=True, exist_ok=True)
    partition = flash / ROMFS_FILE
    partition.write_bytes(image + b"\xff" * (size - len(image)))
    return partition


class SerialKiosk:
    """socat and the bridge as one process group; `port` is the pseudo-terminal's path."""

    def __init__(
        self,
        flash: Path,
        link: Path | None = None,
        flash_kb: int = DEFAULT_FLASH_KB,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.flash = flash.resolve()
        self._own_dir = tempfile.mkdtemp(prefix="serial-kiosk-") if link is None else None
        self.link = link if link is not None else Path(str(self._own_dir), "tty")
        self.flash_kb = flash_kb
        self.on_line = on_line
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def port(self) -> str:
        return str(self.link)

    def start(self) -> SerialKiosk:
        for tool in ("socat", "node"):
            if shutil.which(tool) is None:
                raise KioskSetupError(f"{tool} is not installed: `make system` installs it")
        if self.link.exists() or self.link.is_symlink():
            raise KioskSetupError(
                f"{self.link} exists already: another serial kiosk may be using it"
            )
        self.flash.mkdir(parents=True, exist_ok=True)
        # The bridge's options go through the environment: socat's address syntax gives
        # ',', ':' and '!' in a path a meaning of their own.
        env = {
            **os.environ,
            "SERIAL_KIOSK_FS": str(self.flash),
            "SERIAL_KIOSK_FLASH_KB": str(self.flash_kb),
        }
        self.proc = subprocess.Popen(
            [
                "socat",
                f"PTY,link={self.link},raw,echo=0",
                f"EXEC:node {BRIDGE}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.link.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise OSError("the serial kiosk did not start: " + " / ".join(self.lines[-3:]))
            time.sleep(0.02)
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
            if self.on_line is not None:
                self.on_line(line)

    def screens(self) -> list[tuple[str, str]]:
        """Every screen shown since the start, oldest first, as (name, text)."""
        with self._cond:
            lines = list(self.lines)
        return [shown for shown in map(parse_screen, lines) if shown is not None]

    def wait_line(self, check: Callable[[str], bool], timeout: float, after: int = 0) -> str:
        """The first line from index `after` on that passes `check`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if check(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = " / ".join(self.lines[-5:]) or "nothing"
                    raise TimeoutError(f"the serial kiosk did not get there in {timeout} s: {tail}")
                self._cond.wait(left)

    def mark(self) -> int:
        """The number of lines so far: pass it as `after` to wait only for what comes next."""
        with self._cond:
            return len(self.lines)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> SerialKiosk:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(flash: Path, link: Path | None, flash_kb: int) -> int:
    """Run until interrupted, printing the port and then the kiosk's screens and resets."""
    kiosk = SerialKiosk(flash, link, flash_kb, on_line=lambda line: print(line, flush=True))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    kiosk.start()
    print(f"serial kiosk on {kiosk.port} (flash: {kiosk.flash}, {flash_kb} kB)", flush=True)
    try:
        while not stop.wait(0.2):
            if kiosk.proc is None or kiosk.proc.poll() is not None:
                print("serial-kiosk: the bridge stopped", file=sys.stderr)
                return 1
    finally:
        kiosk.close()
    return 0
