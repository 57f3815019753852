"""`kiosk-host deploy`: flash one kiosk over its USB serial port with mpremote.

The device's files come from provisioning (`kiosk-host provision ... --out DIR` writes
`identity.json`, `config.json`, `board.json` and, for a TLS broker, `ca.pem` into DIR,
`var/devices/<store>/<device>` by default) and from the build (`make build` in a checkout;
see firmware_image.py). On the kiosk they are laid out so:

| on the kiosk     | from                                                                |
| ---------------- | ------------------------------------------------------------------- |
| `/main.py`       | `device/main.py`: MicroPython runs only a source `main.py`, so this |
|                  | one starts the compiled firmware (or waits, see below)              |
| ROMFS, at `/rom` | the ROMFS image of `build/firmware/*.mpy`, on a kiosk that has a    |
|                  | ROMFS partition (see below)                                         |
| `/lib/*.mpy`     | `build/firmware/*.mpy`, the firmware's own `main.mpy` among them,   |
|                  | on a kiosk without one                                              |
| `/lib/board.mpy` | `build/boards/NAME.mpy`, NAME from `board.json`                     |
| `/config.json`   | `config.json`                                                       |
| `/identity.json` | `identity.json`, with `fw` set to this build's version              |
| `/ca.pem`        | `ca.pem`, when identity.json names it (a broker that speaks TLS)    |

A module imported from the file system keeps its bytecode in the heap, about as much as the
firmware's .mpy files; one in a ROMFS partition (MicroPython 1.25 or later, built with it)
runs from flash. So when the kiosk's MicroPython has a ROMFS partition, the firmware goes
there as one image (`mpremote romfs deploy`), written only when the partition does not hold
it already and hashed again on the device afterwards; /lib then holds board.mpy alone, and
device/main.py starts the firmware from /rom. Without one, the firmware goes to /lib and the
deployment says how much of the heap it takes.

Everything else on the flash (the outbox, the boot count, the commands acted on) is the
kiosk's own and is left alone, except that a new deployment starts the boot-loop count
afresh. Modules in /lib that the build no longer has are removed.

The kiosk's watchdog keeps running after mpremote interrupts it, and would restart it in
the middle of a copy. So the deployment first writes `/deploying` and resets the kiosk: with
that file present the device's `main.py` leaves the kiosk stopped and the REPL free. Then
the files on the kiosk are hashed (sha256, on the device), only those that differ are
copied, the copies are hashed again, `/deploying` goes, and the kiosk is reset into the new
firmware. When the broker is reachable from here, the deployment waits until the kiosk
says on its status topic (the contract's `status` channel) that it is online with this
build's version; it watches with the fleet tools' account from the broker folder
(`fleet.json`, which provisioning writes) unless told another broker URL, since a kiosk's
account may not read status. The Wi-Fi key and the MQTT password never appear in what is
printed.

A board keeps its identity.json across deployments. Before anything is copied, the one on the
board is read: a board that holds another kiosk is refused (and restarted as it was) unless the
deployment is told to replace it, so that a mistaken port or device name cannot silently turn
one kiosk into another.

mpremote does every copy, hash and reset on the kiosk; what it has no notion of (the kiosk's
layout, its watchdog, a whole deployment's changes and free space, a check that the kiosk
came back online) is why this deployment is written by hand. Its parts: serial_port.py (does
MicroPython answer), firmware_image.py (what the kiosk must hold), mpremote.py (each step on
the kiosk, with the MicroPython scripts of device/), status_watch.py (is it back online);
this module puts them in order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from kiosk_host.fleet.commands import check_tool_account
from kiosk_host.fleet.deploy_errors import DeployError, FlashFull
from kiosk_host.fleet.device_scripts import FLAG
from kiosk_host.fleet.firmware_image import (
    Provisioned,
    build_dirs,
    build_firmware,
    device_dir,
    device_files,
    firmware_romfs,
    firmware_version,
    load_provisioning,
)
from kiosk_host.fleet.mpremote import (
    Mpremote,
    Romfs,
    check_copies,
    check_space,
    copy_files,
    kb,
    query_romfs,
    resume_kiosk,
    stop_kiosk,
    survey,
    write_romfs,
)
from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR, FLEET, credentials_file
from kiosk_host.fleet.serial_port import probe, wait_for_reboot
from kiosk_host.fleet.status_watch import StatusWatch
from kiosk_host.wire.broker_url import public_url
from kiosk_host.wire.topics import topic

ONLINE_S = 60.0  # for a kiosk to say it is online, when the broker is reachable


@dataclass(frozen=True)
class Options:
    """What `kiosk-host deploy` is asked to do."""

    port: str
    device: str
    store: str | None = None  # only needed when two stores have a kiosk of this name
    directory: Path | None = None  # what provisioning wrote; see device_dir()
    broker: str | None = None  # mqtt://[USER:PASSWORD@]HOST:PORT; the kiosk's own by default
    build: bool = True
    online_s: float = ONLINE_S
    mpremote: str | None = None
    broker_dir: Path = DEFAULT_BROKER_DIR  # the fleet account's file, for the kiosk's own broker
    replace: bool = False  # flash over a board that holds another kiosk


@dataclass
class Report:
    """What a deployment did (device paths), and what the kiosk said afterwards."""

    device: str
    version: str
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    romfs: str | None = None  # "written" or "unchanged": the firmware is in ROMFS; None: in /lib
    online: bool | None = None  # None: no broker reachable to ask
    status: dict[str, Any] | None = None
    verdict: str = ""


def _broker(opts: Options, prov: Provisioned) -> tuple[str, str | None]:
    """The broker to watch the kiosk's status on (--broker, else the kiosk's own with the
    fleet tools' account from the broker folder), and the CA certificate to trust when it
    speaks TLS."""
    ident = prov.identity
    if opts.broker:
        url = opts.broker
        parts = urlparse(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise DeployError(
                f"--broker {public_url(url)!r} is not a broker address: use "
                "mqtt://USER@HOST:PORT (or mqtts://), the password in --password-file or "
                "$KIOSK_BROKER_PASSWORD"
            )
        check_tool_account(url)  # the status watch must not take the aggregator's session
    else:
        host = str(ident["host"])
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        account = _fleet_account(opts.broker_dir)
        login = (
            "" if account is None else f"{quote(account[0], safe='')}:{quote(account[1], safe='')}@"
        )
        url = f"{'mqtts' if prov.ca is not None else 'mqtt'}://{login}{host}:{ident['port']}"
    tls = urlparse(url).scheme == "mqtts"
    return url, str(prov.ca) if tls and prov.ca is not None else None


def _fleet_account(broker_dir: Path) -> tuple[str, str] | None:
    """The fleet tools' user name and password, as provisioning keeps them; None when this
    broker folder has none (the watch then tries without, and says if it is refused)."""
    try:
        creds = json.loads(credentials_file(broker_dir, FLEET).read_text())
        return str(creds["user"]), str(creds["password"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _other_kiosk(held: tuple[str, str] | None, store: str, device: str) -> str | None:
    """The refusal for a board that holds another kiosk than (store, device), if it does."""
    if held is None or held == (store, device):
        return None
    wanted = device if held[0] == store else f"{store}/{device}"
    return f"the board holds {held[0]}/{held[1]}; pass --replace to flash {wanted} over it"


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
    broker, ca = _broker(opts, prov)  # checked before the kiosk is touched
    secrets.append(urlparse(broker).password or "")
    status_topic = topic("status", store=str(ident["store"]), device=str(ident["device"]))
    if opts.build:
        out(f"{name}: compiling the firmware ({build_dirs().tool})")
        build_firmware()
    version = firmware_version()
    image = firmware_romfs()
    code = sum(p.stat().st_size for p in build_dirs().firmware.glob("*.mpy"))
    report = Report(ident["device"], version)
    with _stage() as stage:
        files = device_files(prov, version, stage)
        probe(opts.port)
        mp = Mpremote(opts.port, opts.mpremote, secrets)
        out(f"{name}: MicroPython answers on {opts.port}; stopping the kiosk for the deployment")
        stop_kiosk(mp)
        wait_for_reboot(opts.port)
        held = survey(mp, files)
        if not held.stopped:
            raise (FlashFull if held.free_blocks <= 0 else DeployError)(
                f"the kiosk could not be stopped for the deployment: {FLAG} could not be "
                f"written ({kb(held.free_blocks * held.bsize)} free). Remove files the kiosk "
                f"does not need (`mpremote connect {opts.port} fs ls :` lists them), or erase "
                "the flash and install MicroPython afresh, then deploy again"
            )
        other = _other_kiosk(held.owner, str(ident["store"]), str(ident["device"]))
        if other is not None and not opts.replace:
            resume_kiosk(mp)  # it goes back to being the kiosk it was
            raise DeployError(other)
        if other is not None and held.owner is not None:
            out(f"{name}: replacing {held.owner[0]}/{held.owner[1]} on this board (--replace)")
        rom = query_romfs(mp, len(image))
        if rom is None:
            out(
                f"{name}: this kiosk's MicroPython has no ROMFS partition, so the firmware "
                f"goes to /lib and is loaded into RAM when it runs ({kb(code)} of .mpy code "
                "in the heap); a MicroPython built with ROMFS keeps it in flash (see "
                '"Firmware in ROMFS" in docs/operating.md)'
            )
        else:
            files = device_files(prov, version, stage, in_romfs=True)
            report.romfs = _romfs_plan(mp, rom, image, name, out)
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
            f"{name}: {len(copy)} of {len(files)} files to copy ({kb(report.bytes_copied)}), "
            f"{len(report.unchanged)} unchanged, {len(stale)} to remove; "
            f"{kb(held.free_blocks * held.bsize)} free on the kiosk"
        )
        check_space(opts.port, held, copy, stale)
        if rom is not None and report.romfs == "written":
            _write_romfs(mp, rom, image, stage, opts.port, out)
        copy_files(mp, copy, stale, held.lib is None, out)
        watch = StatusWatch(broker, status_topic, ca)
        try:
            bad = check_copies(mp, copy)
            if bad:
                mp.run(["reset"], "resetting the kiosk", 30)
                raise DeployError(
                    f"the copies of {', '.join(bad)} on the kiosk differ from the "
                    "build (a loose cable?): deploy again; the kiosk stays stopped until then"
                )
            out(f"{name}: files in place; restarting the kiosk with firmware {version}")
            mp.run(["reset"], "restarting the kiosk", 30)
            report.verdict = _verdict(report, watch, opts.online_s, name)
        finally:
            watch.close()
    out(report.verdict)
    return report


def _romfs_plan(
    mp: Mpremote, rom: Romfs, image: bytes, name: str, out: Callable[[str], None]
) -> str:
    """ "unchanged" when the kiosk's partition holds the image already, else "written" (to
    be); an image larger than the partition is refused while the kiosk is as it was."""
    if rom.sha256 == hashlib.sha256(image).hexdigest():
        out(f"{name}: its ROMFS partition holds this firmware already ({kb(len(image))})")
        return "unchanged"
    if len(image) > rom.size:
        resume_kiosk(mp)  # it goes back to being the kiosk it was
        raise DeployError(
            f"the firmware's ROMFS image ({len(image)} bytes) is larger than the kiosk's "
            f"ROMFS partition 0 ({rom.size} bytes): install a MicroPython whose ROMFS "
            'partition holds it (see "Firmware in ROMFS" in docs/operating.md), then deploy '
            "again; the kiosk runs as before"
        )
    out(
        f"{name}: its ROMFS partition 0 ({kb(rom.size)}) holds another image: "
        f"this firmware's ({kb(len(image))}) goes there"
    )
    return "written"


def _write_romfs(
    mp: Mpremote, rom: Romfs, image: bytes, stage: Path, port: str, out: Callable[[str], None]
) -> None:
    """The image into the kiosk's partition 0, hashed again there; DeployError when the
    partition does not hold it afterwards."""
    staged = stage / "firmware.romfs"  # mpremote writes a file named *.romfs as it is
    staged.write_bytes(image)
    write_romfs(mp, staged, out)
    after = query_romfs(mp, len(image))
    if after is not None and after.sha256 == hashlib.sha256(image).hexdigest():
        return
    what = (
        f"the kiosk's ROMFS partition 0 could not be written: it does not hold the firmware's "
        f"image after `mpremote romfs deploy` (`mpremote connect {port} romfs query` shows it)"
    )
    if after is not None and after.sha256 == rom.sha256:
        # Nothing was written: the kiosk's files are untouched, so it can run as it was.
        resume_kiosk(mp)
        raise DeployError(
            f"{what}. Its MicroPython keeps the partition read-only: install one whose ROMFS "
            'partition can be written (see "Firmware in ROMFS" in docs/operating.md), then '
            "deploy again; the kiosk runs as before"
        )
    mp.run(["reset"], "resetting the kiosk", 30)
    raise DeployError(
        f"{what}. Deploy again; the kiosk stays stopped until then, as its partition may "
        "hold part of the image"
    )


def _verdict(report: Report, watch: StatusWatch, online_s: float, name: str) -> str:
    copied = (
        f"{len(report.copied)} files copied ({kb(report.bytes_copied)}), "
        f"{len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + (f", the firmware in ROMFS ({report.romfs})" if report.romfs else "")
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
