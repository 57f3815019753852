"""Runs firmware on MicroPython's WebAssembly VM and returns what it printed or raised."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = ROOT / "firmware"
BUILD_DIR = ROOT / "build" / "firmware"
ROMFS_IMAGE = ROOT / "build" / "firmware.romfs"  # every module of BUILD_DIR, one image
SIMHW_DIR = ROOT / "host" / "kiosk_host" / "sim" / "hardware"
RUNNER = Path(__file__).with_name("mpvm.mjs")
LIB = "/lib"  # on MicroPython's default sys.path, as on a device


BOARDS_DIR = ROOT / "boards"


def board_stems() -> list[str]:
    """Every board file's name without `.py`: the boards the firmware supports."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.py"))


def board_buttons(stem: str) -> int:
    """How many buttons the board `stem` has: the length of its file's BUTTONS tuple."""
    tree = ast.parse((BOARDS_DIR / f"{stem}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "BUTTONS" for t in node.targets
        ):
            return len(ast.literal_eval(node.value))
    raise ValueError(f"boards/{stem}.py has no BUTTONS")


def firmware_modules() -> list[str]:
    """Every firmware module but `main`, which starts the device."""
    return sorted(p.stem for p in FIRMWARE_DIR.glob("*.py") if p.stem != "main")


def firmware_romfs() -> bytes:
    """The firmware's ROMFS image, as `make build` wrote it (build/firmware.romfs)."""
    return ROMFS_IMAGE.read_bytes()


def vm_files(*paths: Path) -> dict[str, bytes | str]:
    """Files of the repository to put in the VM's /lib under their own names."""
    return {f"{LIB}/{p.name}": p.read_text() for p in paths}


class MicroPythonError(AssertionError):
    """The program raised on the VM; the message is MicroPython's traceback."""


@dataclass(frozen=True)
class VmResult:
    stdout: str
    error_type: str | None
    traceback: str | None

    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def ok(self) -> str:
        """The program's output, or MicroPythonError if it raised."""
        if self.error_type is not None:
            raise MicroPythonError(
                f"{self.error_type} on MicroPython:\n{self.traceback}\n{self.stdout}"
            )
        return self.stdout


class MicroPythonVM:
    """One fresh interpreter per run, with firmware modules and the simulated hardware in /lib."""

    def __init__(self, node: str = "node", heapsize: int = 1024 * 1024) -> None:
        self.node = node
        self.heapsize = heapsize

    def run(
        self,
        code: str | Sequence[str],
        modules: Iterable[str] = (),
        *,
        compiled: bool = False,
        simhw: bool = True,
        files: Mapping[str, bytes | str] | None = None,
        run_async: bool = False,
        net: bool = False,
        romfs: bytes | None = None,
        timeout: float = 120,
    ) -> VmResult:
        """Run `code` as __main__ with firmware `modules` (names without suffix) in /lib.

        `code` may be a list of steps, run one after another in the same interpreter. The
        port's gc.collect() frees only what earlier steps left, never the garbage of the
        step that calls it (and each `await` keeps a few bytes), so a heap measurement is
        a step of its own: `gc.collect(); print(gc.mem_alloc())`, and so is the base it is
        taken from: read in the step that imported the simulation, it would count that
        step's garbage as freed later, and every figure after it would be too low.

        `compiled` loads the `.mpy` files that `make build` wrote instead of the sources.
        `romfs` is an image (as `firmware_romfs()`) mounted at /rom, ahead of /lib on
        sys.path: its modules run in place, their code out of the GC heap.
        `files` adds more files by absolute VM path. `run_async` allows top-level await.
        `net` gives the program the host's TCP sockets as `kioskhost` (sockets.mjs), which
        the simulated `hostnet.open_connection` uses; `kioskhost.hold(True)` keeps what the
        peers send from the program until `kioskhost.hold(False)`.
        """
        request_files: dict[str, dict[str, str]] = {}
        if simhw:
            for path in sorted(SIMHW_DIR.glob("*.py")):
                if path.name != "__init__.py":
                    request_files[f"{LIB}/{path.name}"] = {"text": path.read_text()}
        for name in modules:
            rel = name.replace(".", "/")
            if compiled:
                request_files[f"{LIB}/{rel}.mpy"] = _b64(
                    BUILD_DIR.joinpath(rel + ".mpy").read_bytes()
                )
            else:
                request_files[f"{LIB}/{rel}.py"] = {
                    "text": FIRMWARE_DIR.joinpath(rel + ".py").read_text()
                }
        for vm_path, data in (files or {}).items():
            request_files[vm_path] = {"text": data} if isinstance(data, str) else _b64(data)
        request = {
            "files": request_files,
            "code": code,
            "async": run_async,
            "heapsize": self.heapsize,
            "net": net,
        }
        if romfs is not None:
            request["romfs"] = base64.b64encode(romfs).decode()
        proc = subprocess.run(
            [self.node, "--expose-gc", str(RUNNER)],
            input=json.dumps(request).encode(),
            capture_output=True,
            cwd=ROOT,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"the MicroPython VM runner failed: {proc.stderr.decode(errors='replace')}"
            )
        reply = json.loads(proc.stdout)
        error = reply["error"]
        return VmResult(
            stdout=reply["stdout"],
            error_type=error["type"] if error else None,
            traceback=error["traceback"] if error else None,
        )


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}
