"""`kiosk-host deploy`: flash one kiosk over its USB serial port with mpremote.

The device's files come from provisioning (`kiosk-host provision ... --out DIR` writes
`identity.json`, `config.json`, `board.json` and, for a TLS broker, `ca.pem` into DIR,
`var/devices/<store>/<device>` by default) and from `make build`. On the kiosk they are
laid out so:

| on the kiosk     | from                                                                |
| ---------------- | ------------------------------------------------------------------- |
| `/main.py`       | `DEVICE_MAIN` below: MicroPython runs only a source `main.py`, so   |
|                  | this one starts the compiled firmware in /lib (or waits, see below) |
| `/lib/*.mpy`     | `build/firmware/*.mpy`, the firmware's own `main.mpy` among them    |
| `/lib/board.mpy` | `build/boards/NAME.mpy`, NAME from `board.json`                     |
| `/config.json`   | `config.json`                                                       |
| `/identity.json` | `identity.json`, with `fw` set to this build's version              |
| `/ca.pem`        | `ca.pem`, when identity.json names it (a broker that speaks TLS)    |

Everything else on the flash (the outbox, the boot count, the commands acted on) is the
kiosk's own and is left alone, except that a new deployment starts the boot-loop count
afresh. Modules in /lib that the build no longer has are removed.

The kiosk's watchdog keeps running after mpremote interrupts it, and would restart it in
the middle of a copy. So the deployment first writes `/deploying` and resets the kiosk: with
that file present the device's `main.py` leaves the kiosk stopped and the REPL free. Then
the files on the kiosk are hashed (sha256, on the device), only those that differ are
copied, the copies are hashed again, `/deploying` goes, and the kiosk is reset into the new
firmware. When the broker is reachable from here, the deployment waits until the kiosk
says on `kiosk/v1/{store}/{device}/status` that it is online with this build's version.
The Wi-Fi key and the MQTT password never appear in what is printed.

mpremote does every copy, hash and reset on the kiosk; what it has no notion of (the kiosk's
layout, its watchdog, a whole deployment's changes and free space, a check that the kiosk
came back online) is why this module is written by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any
from urllib.parse import urlparse

from kiosk_host import __version__
from kiosk_host.shipped import ROOT

BUILD_FIRMWARE = ROOT / "build" / "firmware"
BUILD_BOARDS = ROOT / "build" / "boards"
DEVICES = Path("var") / "devices"
FLAG = "/deploying"
MARK = "KIOSK-DEPLOY "  # the line the device scripts answer with
RESERVE_BLOCKS = 4  # flash left free for the kiosk's outbox and config to keep working
PROBE_S = 5.0  # for a kiosk to answer MicroPython's raw REPL
REBOOT_S = 20.0  # for a kiosk to come back after a reset
ONLINE_S = 60.0  # for a kiosk to say it is online, when the broker is reachable

# The kiosk's /main.py.
DEVICE_MAIN = """\
# Starts the kiosk firmware, compiled in /lib (written by `kiosk-host deploy`).
# While /deploying exists a deployment is under way: the kiosk stays stopped, without its
# watchdog, and the REPL is free; the deployment removes the file and resets the kiosk.
import os
import sys


def deploying():
    try:
        os.stat("/deploying")
        return True
    except OSError:
        return False


if deploying():
    print("kiosk: a deployment is under way; the kiosk starts when it is done")
else:
    sys.path.insert(0, "/lib")  # so that `main` is the firmware's, not this file
    import main  # noqa: F401
"""

# Hashes and sizes of the given files, the firmware modules in /lib, and the free space.
_SURVEY = """\
import os, hashlib, binascii, json
def _h(p):
    try:
        d = hashlib.sha256()
        b = bytearray(512)
        m = memoryview(b)
        n = 0
        with open(p, 'rb') as f:
            while True:
                k = f.readinto(b)
                if not k:
                    break
                d.update(m[:k])
                n += k
        return [binascii.hexlify(d.digest()).decode(), n]
    except OSError:
        return None
try:
    _lib = [e[0] for e in os.ilistdir('/lib') if e[1] == 0x8000]
except OSError:
    _lib = None
_s = os.statvfs('/')
print(%r + json.dumps({'files': dict((p, _h(p)) for p in %r), 'lib': _lib,
    'bsize': _s[0], 'free': _s[3], 'stopped': _h(%r) is not None}))
"""

# The copies hashed again; when they are right the deployment is over: the flag goes, and
# with it the boot count, so that the new firmware starts with a clean slate.
_FINISH = """\
import os, hashlib, binascii, json
def _h(p):
    d = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            d.update(b)
    return binascii.hexlify(d.digest()).decode()
_bad = []
for p, x in %r.items():
    try:
        if _h(p) != x:
            _bad.append(p)
    except OSError:
        _bad.append(p)
if not _bad:
    for p in (%r, '/boots', '/boots.err'):
        try:
            os.remove(p)
        except OSError:
            pass
print(%r + json.dumps({'bad': _bad}))
"""

# Reset even when the flag cannot be written (a full flash): the survey then says so.
_ENTER_MAINTENANCE = f"""\
try:
    with open({FLAG!r}, 'w') as f:
        f.write('deploy')
except OSError:
    pass
import machine
machine.reset()
"""


class DeployError(Exception):
    """The deployment cannot go on; the message says what to do."""


class PortMissing(DeployError):
    """No serial port where the kiosk should be."""


class NotMicroPython(DeployError):
    """Something is on the port, but MicroPython's raw REPL does not answer."""


class FlashFull(DeployError):
    """The kiosk's flash has no room for the deployment."""


@dataclass(frozen=True)
class Options:
    port: str
    device: str
    store: str | None = None  # only needed when two stores have a kiosk of this name
    directory: Path | None = None  # what provisioning wrote; see device_dir()
    broker: str | None = None  # mqtt://[USER:PASSWORD@]HOST:PORT; the kiosk's own by default
    build: bool = True
    online_s: float = ONLINE_S
    mpremote: str | None = None


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


@dataclass
class Report:
    """What a deployment did (device paths), and what the kiosk said afterwards."""

    device: str
    version: str
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    online: bool | None = None  # None: no broker reachable to ask
    status: dict[str, Any] | None = None
    verdict: str = ""


@dataclass(frozen=True)
class Survey:
    """What the kiosk holds: {path: (sha256, size)} of the files asked about, the modules
    in /lib (None when there is no /lib), and its free space."""

    files: dict[str, tuple[str, int] | None]
    lib: list[str] | None
    bsize: int
    free_blocks: int
    stopped: bool  # the deployment's flag is on the flash: the kiosk stays stopped


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} kB"


# -- provisioning and the build -------------------------------------------------------------


@dataclass(frozen=True)
class Provisioned:
    """A kiosk's files from provisioning, checked."""

    identity: dict[str, Any]
    config: bytes
    board: str  # a file name in build/boards, without .mpy
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
    if not (ROOT / "boards" / f"{name}.py").is_file():
        known = ", ".join(sorted(p.stem for p in (ROOT / "boards").glob("*.py")))
        raise DeployError(f"{source}/board.json names board {name!r}; the boards are: {known}")
    ca = None
    if identity.get("ca"):
        ca = source / str(identity["ca"])
        if not ca.is_file() or "/" in str(identity["ca"]):
            raise DeployError(f"{source} lacks {identity['ca']}, the broker's CA: provision again")
    return Provisioned(identity, config, name, ca)


def build_firmware() -> None:
    """`make build`: mpy-cross compiles what changed."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "build"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DeployError("the firmware does not compile (`make build`): " + " / ".join(tail))


def firmware_version() -> str:
    """This build's version: the host's release and a digest of the compiled firmware."""
    modules = sorted(BUILD_FIRMWARE.glob("*.mpy"))
    if not modules:
        raise DeployError("build/firmware is empty: run `make build`")
    digest = hashlib.sha256()
    for p in modules:
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:8]}"


def device_files(prov: Provisioned, version: str, stage: Path) -> list[DeviceFile]:
    """What the kiosk must hold, in the order it is copied: the firmware first, the start
    last. Generated files are written into `stage` (private to this user)."""
    identity = dict(prov.identity, fw=version)
    (stage / "identity.json").write_text(json.dumps(identity, separators=(",", ":")))
    (stage / "identity.json").chmod(0o600)
    (stage / "config.json").write_bytes(prov.config)
    (stage / "main.py").write_text(DEVICE_MAIN)
    sources = [(f"/lib/{p.name}", p) for p in sorted(BUILD_FIRMWARE.glob("*.mpy"))]
    board = BUILD_BOARDS / f"{prov.board}.mpy"
    if not board.is_file():
        raise DeployError(f"{board} is missing: run `make build`")
    sources += [
        ("/lib/board.mpy", board),
        ("/config.json", stage / "config.json"),
        ("/identity.json", stage / "identity.json"),
        ("/main.py", stage / "main.py"),
    ]
    if prov.ca is not None:  # beside identity.json, under the name it gives
        sources.insert(-3, (f"/{prov.ca.name}", prov.ca))
    out = []
    for path, local in sources:
        data = local.read_bytes()
        out.append(DeviceFile(path, local, hashlib.sha256(data).hexdigest(), len(data)))
    return out


# -- the serial line ------------------------------------------------------------------------


def probe(port: str, timeout: float = PROBE_S) -> None:
    """Check that MicroPython answers on `port`: Ctrl-C, then Ctrl-A for its raw REPL."""
    if not os.path.exists(port):
        raise PortMissing(
            f"there is no serial port {port}: plug the kiosk in by USB and find its port "
            "(`ls /dev/ttyUSB* /dev/ttyACM*`, or `.venv/bin/mpremote connect list`), "
            "then pass it as PORT"
        )
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        raise DeployError(
            f"no permission to open {port}: add yourself to its group "
            f"(`sudo usermod -aG dialout $USER`, then log in again)"
        ) from None
    except OSError as why:
        raise PortMissing(f"cannot open {port} ({why.strerror}): plug the kiosk in again") from None
    got = b""
    try:
        if os.isatty(fd):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = termios.B115200
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        _drain(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.write(fd, b"\r\x03\x03\r\x01")  # interrupt whatever runs, then the raw REPL
            got += _read_for(fd, min(1.0, max(0.0, deadline - time.monotonic())))
            if b"raw REPL; CTRL-B to exit" in got:
                os.write(fd, b"\r\x02")  # back to the friendly REPL, as it was found
                return
    finally:
        os.close(fd)
    what = (
        "nothing came back"
        if not got
        else f"what came back is not MicroPython's raw REPL ({got[:40]!r})"
    )
    raise NotMicroPython(
        f"{port} does not answer as MicroPython ({what}). Check that it is the kiosk's port "
        "and that no serial monitor (screen, minicom, another mpremote) has it open; a board "
        "without MicroPython needs it installed first: `esptool.py --port PORT erase_flash`, "
        "then `esptool.py --port PORT write_flash -z 0x1000 ESP32_GENERIC-<version>.bin` "
        "(from https://micropython.org/download/ESP32_GENERIC/)"
    )


def _drain(fd: int) -> None:
    with suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


def _read_for(fd: int, seconds: float) -> bytes:
    got = b""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0 or b"raw REPL; CTRL-B to exit" in got:
            return got
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, OSError):
                chunk = b""
            if not chunk:
                time.sleep(0.05)  # a pty with nobody on the other end reads empty
            got += chunk


def wait_for_reboot(port: str, timeout: float = REBOOT_S) -> None:
    """Wait until the kiosk answers again after a reset (its port may vanish meanwhile)."""
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while True:
        try:
            probe(port, min(3.0, max(0.5, deadline - time.monotonic())))
            return
        except DeployError:
            if time.monotonic() > deadline:
                raise DeployError(
                    f"the kiosk on {port} did not come back within {timeout:.0f} s of its "
                    "reset: unplug it, plug it in again, and deploy again"
                ) from None
            time.sleep(0.5)


# -- mpremote -------------------------------------------------------------------------------


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
        raise DeployError("mpremote is not installed: `make setup` installs it in .venv")
    return found


# -- the steps ------------------------------------------------------------------------------


def survey(mp: Mpremote, files: Sequence[DeviceFile]) -> Survey:
    paths = [f.path for f in files]
    answer = mp.answer(_SURVEY % (MARK, paths, FLAG), "reading what the kiosk holds")
    hashes: dict[str, tuple[str, int] | None] = {}
    for path in paths:
        entry = answer["files"].get(path)
        hashes[path] = (str(entry[0]), int(entry[1])) if entry else None
    lib = answer["lib"]
    return Survey(hashes, None if lib is None else [str(n) for n in lib],
                  int(answer["bsize"]), int(answer["free"]), bool(answer["stopped"]))  # fmt: skip


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
            f"the kiosk's flash is full: this deployment needs {_kb(short * b)} more than "
            f"the {_kb(max(0, held.free_blocks) * b)} free (and {_kb(RESERVE_BLOCKS * b)} "
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
            out(f"  copying [{i}/{len(copy)}] {f.path.lstrip('/')} ({_kb(f.size)}), "
                f"{_kb(sent[0])} of {_kb(total)} done")  # fmt: skip
            sent[0] += f.size
        m = re.match(r"rm :(\S+)$", line)
        if m:
            out(f"  removing {m.group(1).lstrip('/')} (no longer in the firmware)")

    # A serial line carries about 4 kB/s of mpremote's copies; allow four times as long.
    mp.run(args[:-1], "copying files", timeout=60 + total / 1000, on_line=progress)


# -- the broker -----------------------------------------------------------------------------


class StatusWatch:
    """Subscribed to the kiosk's status before its reset, so that the next one is live."""

    def __init__(self, url: str, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        from kiosk_host.wire.broker_url import client_options

        self.messages: Queue[tuple[dict[str, Any], bool]] = Queue()
        self.problem: str | None = None
        connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"kiosk-host-deploy-{uuid.uuid4()}"
        )
        host, port = client_options(self.client, url)
        self.where = f"{host}:{port}"

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                self.problem = (
                    f"the broker at {self.where} refused us ({reason}): pass --broker "
                    "mqtt://USER:PASSWORD@HOST:PORT (or set KIOSK_BROKER) with an account "
                    "that may read kiosk/v1/#"
                )
            else:
                client.subscribe(topic, qos=1)
            connected.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with suppress(ValueError):
                payload = json.loads(msg.payload)
                if isinstance(payload, dict):
                    self.messages.put((payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        try:
            socket.create_connection((host, port), 3).close()
            self.client.connect(host, port, keepalive=30)
        except OSError as why:
            self.problem = f"no broker reachable at {self.where} from here ({why.strerror or why})"
            return
        self.client.loop_start()
        if not connected.wait(5):
            self.problem = f"the broker at {self.where} did not answer"

    def wait_online(self, version: str, timeout: float) -> dict[str, Any] | None:
        """The first live status after now that says online with `version`, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                payload, retained = self.messages.get(timeout=left)
            except Empty:
                break
            if not retained and payload.get("state") == "online" and payload.get("fw") == version:
                return payload
        return None

    def close(self) -> None:
        with suppress(Exception):
            self.client.loop_stop()
            self.client.disconnect()


def _broker_url(opts: Options, identity: dict[str, Any]) -> str:
    if opts.broker:
        return opts.broker
    return f"mqtt://{identity['host']}:{identity['port']}"


# -- the whole deployment -------------------------------------------------------------------


@contextmanager
def _stage() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="kiosk-deploy-"))
    directory.chmod(0o700)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def deploy(opts: Options, out: Callable[[str], None] = print) -> Report:
    """Flash one kiosk; the report says what was copied and whether it came back online."""
    source = opts.directory or device_dir(opts.device, opts.store)
    prov = load_provisioning(source, opts.device)
    if opts.store is not None and prov.identity["store"] != opts.store:
        raise DeployError(
            f"{source}/identity.json is for store {prov.identity['store']!r}, not {opts.store!r}"
        )
    ident = prov.identity
    name = f"{ident['device']} ({ident['store']})"
    secrets = [str(ident.get(k) or "") for k in ("key", "password")]
    if opts.broker:
        secrets.append(urlparse(opts.broker).password or "")
    if opts.build:
        out(f"{name}: compiling the firmware (make build)")
        build_firmware()
    version = firmware_version()
    report = Report(ident["device"], version)
    with _stage() as stage:
        files = device_files(prov, version, stage)
        probe(opts.port)
        mp = Mpremote(opts.port, opts.mpremote, secrets)
        out(f"{name}: MicroPython answers on {opts.port}; stopping the kiosk for the deployment")
        mp.run(["exec", "--no-follow", _ENTER_MAINTENANCE], "stopping the kiosk", 30)
        wait_for_reboot(opts.port)
        held = survey(mp, files)
        if not held.stopped:
            raise (FlashFull if held.free_blocks <= 0 else DeployError)(
                f"the kiosk could not be stopped for the deployment: {FLAG} could not be "
                f"written ({_kb(held.free_blocks * held.bsize)} free). Remove files the kiosk "
                f"does not need (`mpremote connect {opts.port} fs ls :` lists them), or erase "
                "the flash and install MicroPython afresh, then deploy again"
            )
        copy = [f for f in files if (h := held.files.get(f.path)) is None or h[0] != f.sha256]
        wanted = {f.path for f in files}
        stale = sorted(
            f"/lib/{n}" for n in held.lib or [] if n.endswith(".mpy") and f"/lib/{n}" not in wanted
        )
        report.copied = [f.path for f in copy]
        report.unchanged = [f.path for f in files if f not in copy]
        report.removed = stale
        report.bytes_copied = sum(f.size for f in copy)
        out(
            f"{name}: {len(copy)} of {len(files)} files to copy ({_kb(report.bytes_copied)}), "
            f"{len(report.unchanged)} unchanged, {len(stale)} to remove; "
            f"{_kb(held.free_blocks * held.bsize)} free on the kiosk"
        )
        check_space(opts.port, held, copy, stale)
        copy_files(mp, copy, stale, held.lib is None, out)
        watch = StatusWatch(
            _broker_url(opts, ident), f"kiosk/v1/{ident['store']}/{ident['device']}/status"
        )
        try:
            finish = _FINISH % ({f.path: f.sha256 for f in copy}, FLAG, MARK)
            answer = mp.answer(finish, "checking the copies")
            if answer["bad"]:
                mp.run(["reset"], "resetting the kiosk", 30)
                raise DeployError(
                    f"the copies of {', '.join(answer['bad'])} on the kiosk differ from the "
                    "build (a loose cable?): deploy again; the kiosk stays stopped until then"
                )
            out(f"{name}: files in place; restarting the kiosk with firmware {version}")
            mp.run(["reset"], "restarting the kiosk", 30)
            report.verdict = _verdict(report, watch, opts.online_s, name)
        finally:
            watch.close()
    out(report.verdict)
    return report


def _verdict(report: Report, watch: StatusWatch, online_s: float, name: str) -> str:
    copied = (
        f"{len(report.copied)} files copied ({_kb(report.bytes_copied)}), "
        f"{len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
    )
    if watch.problem is not None:
        report.online = None
        return f"deployed {name}: {copied}; not confirmed online: {watch.problem}"
    status = watch.wait_online(report.version, online_s)
    report.status = status
    report.online = status is not None
    if status is None:
        return (
            f"deployed {name}: {copied}; but it did not say it is online with firmware "
            f"{report.version} within {online_s:.0f} s: look at its screen, and "
            f"`mpremote connect PORT repl` shows what it prints"
        )
    problem = status.get("config_error")
    tail = f"; its config was refused: {problem}" if problem else ""
    return (
        f"deployed {name}: online with firmware {report.version} on {status.get('board')}, "
        f"{copied}{tail}"
    )
