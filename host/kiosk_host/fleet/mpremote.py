"""mpremote on the kiosk: one run per step, the survey of what it holds, the copies, and the
firmware's ROMFS image."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk_host.fleet.deploy_errors import (
    DeployError,
    FlashFull,
    NotMicroPython,
    fleet_tools_missing,
)
from kiosk_host.fleet.device_scripts import FLAG, MARK, call
from kiosk_host.fleet.firmware_image import DeviceFile

RESERVE_BLOCKS = 4  # flash left free for the kiosk's outbox and config to keep working
IDENTITY = "/identity.json"  # where the kiosk's identity lives on its flash


def kb(n: int) -> str:
    return f"{n / 1024:.1f} kB"


@dataclass(frozen=True)
class Survey:
    """What the kiosk holds: {path: (sha256, size)} of the files asked about, the modules
    in /lib (None when there is no /lib), its free space, and the kiosk it is."""

    files: dict[str, tuple[str, int] | None]
    lib: list[str] | None
    bsize: int
    free_blocks: int
    stopped: bool  # the deployment's flag is on the flash: the kiosk stays stopped
    owner: tuple[str, str] | None = None  # (store, device) of its identity.json, if it has one


class Mpremote:
    """The real mpremote, one run per step, on a kiosk whose secrets it must not print."""

    def __init__(self, port: str, program: str | None, secrets: Sequence[str]) -> None:
        self.port = port
        self.program = program or _mpremote_path()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def run(
        self,
        args: Sequence[str],
        what: str,
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> str:
        """`mpremote connect PORT resume ARGS`; its standard output, or DeployError."""
        cmd = [self.program, "connect", self.port, "resume", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
        reader.start()
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        out: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
            reader.join(5)
        stderr = "".join(err)
        if proc.returncode != 0:
            if killed.is_set():
                raise DeployError(
                    f"the kiosk on {self.port} stopped answering while {what}: unplug it, plug "
                    "it in again, and deploy again (the kiosk stays stopped until a deployment "
                    "finishes)"
                )
            raise self._error(stderr + "".join(out), what)
        return "".join(out)

    def _error(self, text: str, what: str) -> DeployError:
        text = self.redact(text)
        if "No space left on device" in text or "ENOSPC" in text or "Errno 28" in text:
            return FlashFull(
                f"the kiosk's flash is full (while {what}): remove files the kiosk does not "
                f"need (`mpremote connect {self.port} fs ls :` lists them), or erase the "
                "flash and install MicroPython afresh, then deploy again; the kiosk stays "
                "stopped until a deployment finishes"
            )
        if "failed to access" in text:
            return DeployError(
                f"{self.port} is in use by another program (a serial monitor, another "
                "mpremote?): close it and deploy again"
            )
        if "could not enter raw repl" in text:
            return NotMicroPython(
                f"the kiosk on {self.port} stopped answering MicroPython's raw REPL while "
                f"{what}: unplug it, plug it in again, and deploy again"
            )
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no message"]
        return DeployError(f"mpremote failed while {what}: {last[0]}")

    def answer(self, script: str, what: str, timeout: float = 60) -> dict[str, Any]:
        """Run a device script that prints one MARK line of JSON; that JSON."""
        out = self.run(["exec", script], what, timeout)
        for line in out.splitlines():
            if line.startswith(MARK):
                answer: dict[str, Any] = json.loads(line[len(MARK) :])
                return answer
        raise DeployError(f"the kiosk gave no answer while {what}: {self.redact(out)[-200:]}")


def _mpremote_path() -> str:
    beside = Path(sys.executable).with_name("mpremote")
    if beside.exists():
        return str(beside)
    found = shutil.which("mpremote")
    if found is None:
        raise fleet_tools_missing("mpremote")
    return found


# -- the steps ------------------------------------------------------------------------------


def stop_kiosk(mp: Mpremote) -> None:
    """Write the deployment's flag and reset the kiosk: it comes back stopped, its REPL free."""
    mp.run(["exec", "--no-follow", call("stop_kiosk", FLAG)], "stopping the kiosk", 30)


def survey(mp: Mpremote, files: Sequence[DeviceFile]) -> Survey:
    paths = [f.path for f in files]
    answer = mp.answer(call("survey", MARK, paths, FLAG, IDENTITY), "reading what the kiosk holds")
    hashes: dict[str, tuple[str, int] | None] = {}
    for path in paths:
        entry = answer["files"].get(path)
        hashes[path] = (str(entry[0]), int(entry[1])) if entry else None
    lib, owner = answer["lib"], answer.get("owner")
    return Survey(hashes, None if lib is None else [str(n) for n in lib],
                  int(answer["bsize"]), int(answer["free"]), bool(answer["stopped"]),
                  None if not owner else (str(owner[0]), str(owner[1])))  # fmt: skip


def resume_kiosk(mp: Mpremote) -> None:
    """Undo `stop_kiosk` without deploying: the flag goes, and the kiosk restarts as it was."""
    mp.run(["fs", "rm", f":{FLAG}", "+", "reset"], "restarting the kiosk as it was", 30)


def blocks(size: int, bsize: int) -> int:
    return max(1, math.ceil(size / bsize))


def check_space(port: str, held: Survey, copy: Sequence[DeviceFile], stale: Sequence[str]) -> None:
    """Refuse before copying anything when the new files cannot fit."""
    b = held.bsize
    need = sum(blocks(f.size, b) for f in copy) + (1 if held.lib is None else 0)
    freed = sum(blocks(old[1], b) for f in copy if (old := held.files.get(f.path)) is not None)
    freed += len(stale)  # a stale module takes a block at least
    short = need - freed - (held.free_blocks - RESERVE_BLOCKS)
    if short > 0:
        raise FlashFull(
            f"the kiosk's flash is full: this deployment needs {kb(short * b)} more than "
            f"the {kb(max(0, held.free_blocks) * b)} free (and {kb(RESERVE_BLOCKS * b)} "
            "kept for the kiosk's outbox). Remove files the kiosk does not need "
            f"(`mpremote connect {port} fs ls :` lists them), or erase the flash and "
            "install MicroPython afresh, then deploy again"
        )


def copy_files(
    mp: Mpremote,
    copy: Sequence[DeviceFile],
    stale: Sequence[str],
    make_lib: bool,
    out: Callable[[str], None],
) -> None:
    """One mpremote run: every copy and removal, with a line of progress per file."""
    args: list[str] = []
    if make_lib:
        args += ["fs", "mkdir", ":/lib", "+"]
    for f in copy:
        args += ["fs", "cp", "-f", str(f.local), f":{f.path}", "+"]
    for path in stale:
        args += ["fs", "rm", f":{path}", "+"]
    if not args:
        return
    total = sum(f.size for f in copy)
    index = {f.path: (i, f) for i, f in enumerate(copy, 1)}
    sent = [0]

    def progress(line: str) -> None:
        m = re.match(r"cp .* :(\S+)$", line)
        if m and m.group(1) in index:
            i, f = index[m.group(1)]
            out(f"  copying [{i}/{len(copy)}] {f.path.lstrip('/')} ({kb(f.size)}), "
                f"{kb(sent[0])} of {kb(total)} done")  # fmt: skip
            sent[0] += f.size
        m = re.match(r"rm :(\S+)$", line)
        if m:
            out(f"  removing {m.group(1).lstrip('/')} (no longer in the firmware)")

    # A serial line carries about 4 kB/s of mpremote's copies; allow four times as long.
    mp.run(args[:-1], "copying files", timeout=60 + total / 1000, on_line=progress)


@dataclass(frozen=True)
class Romfs:
    """The kiosk's ROMFS partition 0: its size, and the sha256 of its first bytes (as many
    as the image has; None when the image does not fit)."""

    size: int
    sha256: str | None


def query_romfs(mp: Mpremote, length: int) -> Romfs | None:
    """The kiosk's ROMFS partition 0, hashed on the device; None when its MicroPython has
    no ROMFS (no rom_ioctl, no partition, or one of no size)."""
    answer = mp.answer(call("romfs", MARK, length), "asking the kiosk for its ROMFS partition")
    size = int(answer["size"])
    if size <= 0:
        return None
    digest = answer["sha256"]
    return Romfs(size, None if digest is None else str(digest))


def write_romfs(mp: Mpremote, image: Path, out: Callable[[str], None]) -> None:
    """`mpremote romfs -p 0 deploy IMAGE`: mpremote takes a file named *.romfs as it is."""
    size = image.stat().st_size
    out(f"  writing the ROMFS image into partition 0 ({kb(size)})")
    # As for the copies: about 4 kB/s on a serial line, four times as long allowed.
    mp.run(
        ["romfs", "-p", "0", "deploy", str(image)],
        "writing the firmware's ROMFS image",
        timeout=60 + size / 1000,
    )


def check_copies(mp: Mpremote, copied: Sequence[DeviceFile]) -> list[str]:
    """The copies hashed again on the kiosk; those that differ from the build. When none
    does, the deployment is over there: the flag goes, and with it the boot count."""
    expected = {f.path: f.sha256 for f in copied}
    answer = mp.answer(call("finish", MARK, expected, FLAG), "checking the copies")
    return [str(p) for p in answer["bad"]]
