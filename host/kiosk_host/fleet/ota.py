"""Firmware updates over the air: a release built, and sent to kiosks one chunk at a time.

A release is the firmware's modules (compiled `.mpy` for MicroPython kiosks, one ROMFS image
of them for kiosks with ROMFS partitions, `.py` sources for the virtual kiosk) under one
version: the host's release and a digest of the sources. Each kiosk gets the release's
manifest signed with its own key (`ota_key` in its provisioned identity.json), then each
chunk its status asks for (`ota.want`), one at a time: the kiosk's status is the flow
control. When nothing moves for `RESEND_S` the manifest goes again, and the kiosk, which
resumes a release it holds part of, asks again for what it lacks. A kiosk has the release
when it is online and says it runs the version (`fw`).

With canaries, the first kiosks (by device name) get the release first; the others only
when every canary runs it and is online. `push()` is the whole of `kiosk-host ota push`
without its printing; `Rollout` is one kiosk's exchange, driven by its statuses and a clock.
docs/ota.md describes the exchange and the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kiosk_host import __version__
from kiosk_host.errors import UserError
from kiosk_host.fleet.commands import Broker
from kiosk_host.fleet.provision import DEFAULT_BROKER_DIR, FLEET, credentials_file
from kiosk_host.fleet.provisioned import check
from kiosk_host.shipped import FIRMWARE
from kiosk_host.wire import topics
from kiosk_host.wire.ota import (
    CHUNK,
    KINDS,
    ROMFS_FILE,
    File,
    OtaError,
    check_release,
    chunk_message,
    key_from_hex,
    manifest_message,
)

RESEND_S = 5.0  # nothing moved for this long: the manifest again, and the kiosk asks again
ANSWER_S = 60.0  # nothing moved for this long while receiving: the kiosk is given up on
# Staged to running: the kiosk switches when idle, reboots, and has 300 s to come online on
# the new version before it rolls back by itself.
SWITCH_S = 420.0
TICK_S = 0.02  # how often the driver looks for statuses when none came

# A rollout's states, as `ota status` shows them too.
WAITING, RECEIVING, STAGED, DONE, FAILED = "waiting", "receiving", "staged", "done", "failed"


class OtaPushError(UserError, ValueError):
    """A push that cannot start; the message says what to fix."""


# -- the release ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """The files of one kind under one version, and the id of this push."""

    rid: str
    version: str
    kind: str
    files: tuple[File, ...]

    @property
    def chunks(self) -> tuple[int, ...]:
        """Each file's number of chunks."""
        return tuple(f.chunks(CHUNK) for f in self.files)


def sources(folder: Path) -> list[Path]:
    """The firmware's modules in `folder` (not its sub-folders: a slot has none), sorted."""
    found = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not found:
        raise OtaPushError(f"{folder} holds no .py modules: give --firmware the firmware folder")
    return found


def version(folder: Path = FIRMWARE) -> str:
    """The release's version: the host's, + the first 8 hex of the sha256 over each module's
    name, a NUL and its source, in name order. Both kinds of a release share it."""
    digest = hashlib.sha256()
    for p in sources(folder):
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:8]}"


def release_id(now: float | None = None) -> str:
    """One id per push: r and the time in milliseconds, in hex."""
    return f"r{int((time.time() if now is None else now) * 1000):x}"


def build_release(kind: str, firmware: Path | None = None, rid: str | None = None) -> Release:
    """The release of `kind` from `firmware` (default: the checkout's or installed firmware).
    mpy: the firmware's build (`make build`) or, for another folder, its modules compiled
    with mpy-cross; romfs: one file, the ROMFS image of those compiled modules (the build's
    build/firmware.romfs); py: the sources as they are."""
    if kind not in KINDS:
        raise OtaPushError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    folder = firmware or FIRMWARE
    ver = version(folder)
    if kind == "py":
        files = [File(p.name, p.read_bytes()) for p in sources(folder)]
    elif kind == "romfs":
        image = _built_romfs() if firmware is None else _compiled_romfs(folder)
        files = [File(ROMFS_FILE, image)]
    elif firmware is None:
        files = _built()
    else:
        files = _compiled(folder)
    return _checked(Release(rid or release_id(), ver, kind, tuple(files)))


def _built() -> list[File]:
    from kiosk_host.fleet.firmware_image import build_dirs, build_firmware

    build_firmware()
    modules = sorted(build_dirs().firmware.glob("*.mpy"))
    return [File(p.name, p.read_bytes()) for p in modules]


def _built_romfs() -> bytes:
    from kiosk_host.fleet.firmware_image import build_firmware, firmware_romfs

    build_firmware()
    return firmware_romfs()


def _compiled(folder: Path) -> list[File]:
    """Each module of `folder` compiled with mpy-cross, under its source's name for
    tracebacks, as `make build` compiles the firmware."""
    with tempfile.TemporaryDirectory(prefix="kiosk-ota-") as tmp:
        return [File(p.name, p.read_bytes()) for p in _compile_into(folder, Path(tmp))]


def _compiled_romfs(folder: Path) -> bytes:
    """The ROMFS image of `folder`'s modules compiled as `_compiled` does, made as the
    build makes build/firmware.romfs."""
    from kiosk_host.fleet.firmware_image import romfs_image

    with tempfile.TemporaryDirectory(prefix="kiosk-ota-") as tmp:
        modules = _compile_into(folder, Path(tmp))
        return romfs_image(modules, f"the modules compiled from {folder} could not be read")


def _compile_into(folder: Path, out_dir: Path) -> list[Path]:
    """Each module of `folder` compiled with mpy-cross into `out_dir`, NAME.mpy, in order."""
    from kiosk_host.fleet.firmware_image import _mpy_cross

    program = _mpy_cross()
    compiled = []
    for src in sources(folder):
        out = out_dir / (src.stem + ".mpy")
        done = subprocess.run(
            [str(program), "-s", src.name, "-o", str(out), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise OtaPushError(f"{src} does not compile (mpy-cross): {' '.join(tail)}")
        compiled.append(out)
    return compiled


def _checked(release: Release) -> Release:
    try:
        check_release(release.rid, release.version, release.kind, CHUNK, release.files)
    except OtaError as why:
        raise OtaPushError(f"the {release.kind} release cannot be sent: {why}") from None
    return release


# -- the kiosks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kiosk:
    """A kiosk to update, with its key from its provisioned identity."""

    store: str
    device: str
    key: bytes
    identity: dict[str, Any] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.store}/{self.device}"


def load_kiosks(devices_dir: Path, store: str, devices: Sequence[str] | None) -> list[Kiosk]:
    """The kiosks named (every one of the store when `devices` is None) with their keys,
    sorted by device; refused, before anything is sent, when one is not provisioned in
    `devices_dir` or has no update key."""
    note = check(devices_dir, store, devices[0] if devices else None)
    if note is not None:
        raise OtaPushError(note.replace("to check", "to take keys from"))
    for d in devices or ():
        check(devices_dir, store, d)
    names = sorted(set(devices)) if devices else sorted(
        p.parent.name for p in (devices_dir / store).glob("*/identity.json")
    )  # fmt: skip
    out = []
    for d in names:
        path = devices_dir / store / d / "identity.json"
        try:
            ident = json.loads(path.read_text())
        except (OSError, ValueError) as why:
            raise OtaPushError(f"{path}: not readable ({why}): provision the kiosk again") from None
        if not isinstance(ident, dict) or not ident.get("ota_key"):
            raise OtaPushError(
                f"{store}/{d} has no ota_key in {path}: it was provisioned before updates over "
                f"the air; provision it again and deploy it"
            )
        try:
            key = key_from_hex(str(ident["ota_key"]))
        except OtaError as why:
            raise OtaPushError(f"{store}/{d}: {why}") from None
        out.append(Kiosk(store, d, key, ident))
    return out


def _kiosk_ca(devices_dir: Path, kiosk: Kiosk) -> str | None:
    """The CA certificate the kiosk trusts, for its own broker over TLS."""
    name = kiosk.identity.get("ca")
    return str(devices_dir / kiosk.store / kiosk.device / str(name)) if name else None


def store_broker(devices_dir: Path, store: str, broker_dir: Path) -> tuple[str, str | None]:
    """The broker of the store's first provisioned kiosk (as `default_broker`), and the CA
    certificate it trusts, if it speaks TLS."""
    note = check(devices_dir, store)
    if note is not None:
        raise OtaPushError(f"{note}, or give --broker")
    first = sorted((devices_dir / store).glob("*/identity.json"))[0]
    try:
        ident = json.loads(first.read_text())
    except (OSError, ValueError) as why:
        raise OtaPushError(f"{first}: not readable ({why}): give --broker") from None
    kiosk = Kiosk(store, first.parent.name, b"", ident if isinstance(ident, dict) else {})
    return default_broker(kiosk, broker_dir), _kiosk_ca(devices_dir, kiosk)


def default_broker(kiosk: Kiosk, broker_dir: Path) -> str:
    """The kiosk's own broker, as its identity names it, logged in with the fleet tools'
    account from the broker folder (as deploy watches a kiosk)."""
    host = str(kiosk.identity.get("host") or "")
    if not host or not kiosk.identity.get("port"):
        raise OtaPushError(f"{kiosk.name}: its identity names no broker: give --broker")
    try:
        creds = json.loads(credentials_file(broker_dir, FLEET).read_text())
        login = f"{quote(str(creds['user']), safe='')}:{quote(str(creds['password']), safe='')}@"
    except (OSError, ValueError, KeyError, TypeError):
        raise OtaPushError(
            f"no fleet account in {credentials_file(broker_dir, FLEET)}: give --broker-dir where "
            f"provisioning wrote it, or --broker mqtt://{FLEET}@HOST:PORT"
        ) from None
    host = f"[{host}]" if ":" in host else host
    scheme = "mqtts" if kiosk.identity.get("ca") else "mqtt"
    return f"{scheme}://{login}{host}:{kiosk.identity['port']}"


# -- one kiosk's rollout --------------------------------------------------------------------


@dataclass
class Outcome:
    """Where one kiosk is: its state, version, progress and, when it failed, why."""

    store: str
    device: str
    state: str = WAITING
    version: str | None = None  # what it is being given
    fw: str | None = None  # what it runs, from its last status
    online: bool = False
    done: int = 0  # chunks the kiosk has
    total: int = 0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == DONE

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store, "device": self.device, "state": self.state,
            "version": self.version, "fw": self.fw, "online": self.online,
            "chunks": self.done, "total": self.total, "reason": self.reason,
        }  # fmt: skip


class Rollout:
    """One kiosk's update: the manifest, then the chunk each status asks for. Every method
    takes the time (`now`, seconds) and returns the payloads to publish on its ota topic."""

    def __init__(self, kiosk: Kiosk, releases: dict[str, Release]) -> None:
        self.kiosk = kiosk
        self.releases = releases  # by kind: the kiosk's is chosen from its status
        self.release: Release | None = None
        self.out = Outcome(kiosk.store, kiosk.device)
        self._moved = 0.0  # when the kiosk last showed progress (or the manifest first went)
        self._sent_at = 0.0  # when the manifest last went
        self._sent_want: tuple[int, int] | None = None  # the chunk last sent
        self._last: tuple[str, Any] | None = None  # the kiosk's last (state, want) of ours
        self._staged_at: float | None = None

    @property
    def topic(self) -> str:
        return topics.topic("ota", store=self.kiosk.store, device=self.kiosk.device)

    def start(self, status: dict[str, Any] | None, now: float) -> list[bytes]:
        """From the kiosk's retained status: its kind and version; the manifest, unless it
        runs the version already or cannot take an update. An offline kiosk is waited for
        (its status tells its kind only when online), up to `ANSWER_S`."""
        out = self.out
        self._moved = now
        if status is None:
            return self._fail("never seen on the broker (no status): is it deployed?")
        self._note(status)
        if not out.online:
            return []  # WAITING: its next status online starts it
        kind = status.get("takes")
        if kind is None:
            return self._fail("its firmware takes no updates over the air: deploy it once")
        try:
            self.release = self.releases[str(kind)]
        except KeyError:
            return self._fail(f"it takes {kind} updates, and none was built")
        out.version, out.total = self.release.version, sum(self.release.chunks)
        if out.fw == self.release.version:
            out.state, out.done = DONE, out.total
            return []
        out.state = RECEIVING
        return [self._manifest(now)]

    def on_status(self, status: dict[str, Any], now: float) -> list[bytes]:
        """A status from the kiosk: progress, a chunk to send, or the end."""
        if self.out.state == WAITING and status.get("state") == "online":
            return self.start(status, now)
        if self.out.finished or self.release is None:
            return []
        self._note(status)
        out, rel = self.out, self.release
        if out.online and out.fw == rel.version:
            out.state, out.done, out.reason = DONE, out.total, None
            return []
        ota = status.get("ota")
        if not isinstance(ota, dict) or ota.get("id") != rel.rid:
            return []  # offline, or a status from before our manifest
        state, want = ota.get("state"), ota.get("want")
        seen = (str(state), tuple(want) if isinstance(want, list) else None)
        news = seen != self._last
        if news:
            self._last, self._moved = seen, now
        if state == "ota_failed":
            return self._fail(f"ota_failed: {ota.get('reason') or 'rolled back'}")
        if state == "refused" and not isinstance(want, list):
            return self._fail(f"refused: {ota.get('reason') or 'no reason given'}")
        if state in ("staged", "done"):
            out.state, out.done = STAGED, out.total
            self._staged_at = self._staged_at or now
            return []
        if not (
            isinstance(want, list) and len(want) == 2 and all(isinstance(x, int) for x in want)
        ):
            return []
        f, n = want
        if not (0 <= f < len(rel.files) and 0 <= n < max(rel.chunks[f], 1)):
            return self._fail(f"asked for chunk {f}/{n}, which the release does not have")
        out.state, out.done = RECEIVING, sum(rel.chunks[:f]) + n
        if (f, n) == self._sent_want and not news:
            return []  # sent already: a status repeated, not a new request
        self._sent_want = (f, n)
        return [chunk_message(self.kiosk.key, rel.rid, rel.files, f, n)]

    def tick(self, now: float) -> list[bytes]:
        """The time's effects: the manifest again after `RESEND_S` without progress, and the
        kiosk given up on after `ANSWER_S` (receiving) or `SWITCH_S` (staged)."""
        out = self.out
        if out.state == WAITING and now - self._moved >= ANSWER_S:
            return self._fail("offline")
        if out.finished or self.release is None:
            return []
        if out.state == STAGED and self._staged_at is not None:
            if now - self._staged_at >= SWITCH_S:
                where = "offline" if not out.online else f"still runs {out.fw}"
                return self._fail(
                    f"staged, but not running {self.release.version} after {SWITCH_S:.0f} s "
                    f"({where}): it switches when idle; see `kiosk-host ota status`"
                )
            return []
        if now - self._moved >= ANSWER_S:
            return self._fail("offline" if not out.online else f"no answer in {ANSWER_S:.0f} s")
        if now - max(self._moved, self._sent_at) >= RESEND_S:
            self._sent_want = None  # the kiosk answers with its want again: send it again
            return [self._manifest(now)]
        return []

    def _manifest(self, now: float) -> bytes:
        assert self.release is not None
        r, k = self.release, self.kiosk
        self._sent_at = now
        return manifest_message(k.key, k.store, k.device, r.rid, r.version, r.kind, r.files)

    def _note(self, status: dict[str, Any]) -> None:
        self.out.online = status.get("state") == "online"
        if self.out.online and isinstance(status.get("fw"), str):
            self.out.fw = status["fw"]

    def _fail(self, reason: str) -> list[bytes]:
        self.out.state, self.out.reason = FAILED, reason
        return []


# -- a push ---------------------------------------------------------------------------------


@dataclass
class Pushed:
    """What a push did: each kiosk's outcome, and why the rollout stopped, if it did."""

    kiosks: list[Outcome]
    stopped: str | None = None  # set when the canaries failed and the rest were not sent

    @property
    def ok(self) -> bool:
        return self.stopped is None and all(o.ok for o in self.kiosks)

    def failures(self) -> list[str]:
        """One line per kiosk that does not run the version, saying why."""
        return [f"{o.store}/{o.device}: {o.reason or o.state}" for o in self.kiosks if not o.ok]


def parse_status(raw: bytes | None) -> dict[str, Any] | None:
    try:
        status = json.loads(raw) if raw else None
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


Progress = Callable[[Outcome], None]


def run(
    broker: Broker,
    rollouts: Sequence[Rollout],
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Drive `rollouts` at once, over one connection, until each is done or failed."""
    by_topic = {
        topics.topic("status", store=r.kiosk.store, device=r.kiosk.device): r for r in rollouts
    }
    # The retained statuses first: taking them ends that subscription. Listening then gets
    # each again, and everything after it.
    retained = broker.retained(list(by_topic))
    seen = len(broker.heard())
    broker.listen(list(by_topic))
    for t, r in by_topic.items():
        _send(broker, r, r.start(parse_status(retained.get(t)), clock()), progress)
    while not all(r.out.finished for r in rollouts):
        heard = broker.heard(seen)
        seen += len(heard)
        for t, raw in heard:
            status = parse_status(raw)
            if t in by_topic and status is not None:
                _send(broker, by_topic[t], by_topic[t].on_status(status, clock()), progress)
        for r in rollouts:
            _send(broker, r, r.tick(clock()), progress)
        broker.check_connected()
        if not heard:
            sleep(TICK_S)


def _send(broker: Broker, r: Rollout, payloads: Iterable[bytes], progress: Progress | None) -> None:
    for p in payloads:
        broker.publish(r.topic, p)
    if progress is not None:
        progress(r.out)


def rollout(
    broker: Broker,
    kiosks: Sequence[Kiosk],
    releases: dict[str, Release],
    canary: int = 0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Pushed:
    """The release to `kiosks`: the first `canary` of them (by device) first, the others
    only when every canary runs it and is online."""
    ordered = sorted(kiosks, key=lambda k: (k.store, k.device))
    rollouts = [Rollout(k, releases) for k in ordered]
    waves = [rollouts[:canary], rollouts[canary:]] if 0 < canary < len(rollouts) else [rollouts]
    for i, wave in enumerate(waves):
        run(broker, wave, progress, clock, sleep)
        failed = [r.out for r in wave if not r.out.ok]
        if i + 1 < len(waves) and failed:
            why = "; ".join(f"{o.device}: {o.reason or o.state}" for o in failed)
            stopped = f"rollout stopped after the canaries: {why}"
            for r in waves[i + 1]:
                r.out.state, r.out.reason = FAILED, "not sent: " + stopped
            return Pushed([r.out for r in rollouts], stopped)
    return Pushed([r.out for r in rollouts])


def kinds_wanted(broker: Broker, kiosks: Sequence[Kiosk]) -> set[str]:
    """The kinds of update the kiosks take, from their retained statuses."""
    statuses = broker.retained(
        [topics.topic("status", store=k.store, device=k.device) for k in kiosks]
    )
    found = {s.get("takes") for raw in statuses.values() if (s := parse_status(raw))}
    return {k for k in found if k in KINDS}


def push(
    broker_url: str | None,
    store: str,
    devices: Sequence[str] | None,
    devices_dir: Path,
    ca: str | None = None,
    canary: int = 0,
    firmware: Path | None = None,
    progress: Progress | None = None,
    broker_dir: Path = DEFAULT_BROKER_DIR,
    build: Callable[[str, Path | None, str], Release] = build_release,
) -> Pushed:
    """`kiosk-host ota push` without its printing: the release (of each kind the kiosks
    take) to the kiosks named (every one of the store when `devices` is None), through
    `broker_url` (default: the first kiosk's broker, with the fleet account of
    `broker_dir`)."""
    kiosks = load_kiosks(devices_dir, store, devices)
    if broker_url is None:
        broker_url = default_broker(kiosks[0], broker_dir)
        ca = ca or _kiosk_ca(devices_dir, kiosks[0])
    with Broker(broker_url, ca) as broker:
        releases = Releases(lambda kind: build(kind, firmware, rid), devices_dir, kiosks)
        rid = release_id()
        for kind in sorted(kinds_wanted(broker, kiosks)):
            _ = releases[kind]  # built before anything is sent: a build's failure first
        return rollout(broker, kiosks, releases, canary, progress)


class Releases(dict[str, Release]):
    """The release of each kind, built when first asked for (a kiosk offline at the start
    tells its kind when it comes online), and recorded for `ota status`."""

    def __init__(
        self, build: Callable[[str], Release], devices_dir: Path, kiosks: Sequence[Kiosk]
    ) -> None:
        super().__init__()
        self.build, self.devices_dir, self.kiosks = build, devices_dir, kiosks

    def __missing__(self, kind: str) -> Release:
        if kind not in KINDS:
            raise KeyError(kind)
        self[kind] = made = self.build(kind)
        for k in self.kiosks:
            _record(self.devices_dir, k, self)
        return made


# -- what `ota status` shows ----------------------------------------------------------------

RECORD = "ota.json"  # beside identity.json: the last release pushed to the kiosk


def _record(devices_dir: Path, k: Kiosk, releases: dict[str, Release]) -> None:
    """What `ota status` needs to show a kiosk's progress: each release's chunks per file."""
    record = {
        kind: {"id": r.rid, "version": r.version, "chunks": list(r.chunks)}
        for kind, r in releases.items()
    }
    path = devices_dir / k.store / k.device / RECORD
    tmp = path.with_name(RECORD + ".new")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, path)


def status_of(devices_dir: Path, store: str, device: str, raw: bytes | None) -> Outcome:
    """A kiosk's update as its retained status and the last push's record tell it."""
    out = Outcome(store, device)
    status = parse_status(raw)
    if status is None:
        out.state, out.reason = "never seen", "no status on the broker"
        return out
    out.online = status.get("state") == "online"
    out.fw = status.get("fw") if isinstance(status.get("fw"), str) else None
    ota = status.get("ota")
    if not isinstance(ota, dict):
        out.state = "no update" if out.online else "offline"
        return out
    out.version, out.state, out.reason = (
        ota.get("version"),
        str(ota.get("state")),
        ota.get("reason"),
    )
    said = ota.get("progress")
    if isinstance(said, list) and len(said) == 2 and all(isinstance(x, int) for x in said):
        out.done, out.total = said  # the kiosk's own count
        return out
    try:  # a kiosk saying from its flash how an update ended gives no count: the push's record
        record = json.loads((devices_dir / store / device / RECORD).read_text())
    except (OSError, ValueError):
        record = {}
    pushed = [r for r in record.values() if isinstance(r, dict) and r.get("id") == ota.get("id")]
    chunks = pushed[0].get("chunks") if pushed else None
    if isinstance(chunks, list):
        out.total = sum(chunks)
        want = ota.get("want")
        if out.state in ("staged", "done", "ota_failed"):  # tried: every chunk had come
            out.done = out.total
        elif isinstance(want, list) and len(want) == 2:
            out.done = sum(chunks[: want[0]]) + want[1]
    return out


def fleet_status(broker: Broker, store: str, devices_dir: Path) -> list[Outcome]:
    """Every kiosk of `store`, provisioned or on the broker: its update as `status_of`."""
    retained = broker.retained([topics.topic_filter("status", store=store)])
    found: dict[str, bytes | None] = {}
    for t, raw in retained.items():
        parsed = topics.parse(t)
        if parsed is not None:
            found[parsed[1]["device"]] = raw
    for p in (devices_dir / store).glob("*/identity.json"):
        found.setdefault(p.parent.name, None)
    return [status_of(devices_dir, store, d, found[d]) for d in sorted(found)]
