"""The host's side of updates over the air: the release, its signatures, each kiosk's rollout
driven by its statuses, canaries, `kiosk-host ota push`'s refusals, the keys provisioning
makes, and who may use the ota topic on a broker with the shipped ACL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host import __version__
from kiosk_host.aggregator.writer import classify
from kiosk_host.cli.ota import Bars
from kiosk_host.fleet import ota
from kiosk_host.fleet.commands import Broker
from kiosk_host.fleet.firmware_image import firmware_romfs, romfs_image
from kiosk_host.fleet.ota import (
    DONE,
    FAILED,
    RECEIVING,
    STAGED,
    Kiosk,
    OtaPushError,
    Outcome,
    Release,
    Rollout,
    build_release,
)
from kiosk_host.storage.sqlite import DeadLetter, DeviceStatus
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.ota import ROMFS_FILE, File, OtaError, check_release, manifest_message
from tests.broker import free_port
from tests.cli_run import run_cli
from tests.fleet_rig import Client, identity, provision
from tests.test_security import STORE, Fleet, fleet
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import FIRMWARE_DIR, ROMFS_IMAGE, MicroPythonVM

__all__ = ["fleet"]  # the module-scoped broker with provisioned kiosks, from test_security

KEY = bytes(range(32))
OLD = "0.0.9"


def manifest_mac(key: bytes, store: str, device: str, m: dict[str, Any]) -> str:
    """The manifest's signature, as the kiosk computes it (written out from docs/ota.md)."""
    text = (
        "kiosk-ota-manifest\n" + store + "\n" + device + "\n" + m["id"] + "\n" + m["version"]
        + "\n" + m["kind"] + "\n" + str(m["chunk"]) + "\n"
        + "".join(f["path"] + " " + str(f["size"]) + " " + f["sha256"] + "\n" for f in m["files"])
    )  # fmt: skip
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def chunk_mac(key: bytes, c: dict[str, Any], raw: bytes) -> str:
    head = "kiosk-ota-chunk\n" + c["id"] + "\n" + str(c["file"]) + "\n" + str(c["n"]) + "\n"
    return hmac.new(key, head.encode() + raw, hashlib.sha256).hexdigest()


def release(sizes: tuple[int, ...] = (5000, 0, 10), kind: str = "py") -> Release:
    files = tuple(File(f"m{i}.{kind}", bytes([i + 1]) * s) for i, s in enumerate(sizes))
    return Release("r1", "0.1.0+abcdef12", kind, files)


def online(fw: str = OLD, takes: str | None = "py", **more: Any) -> dict[str, Any]:
    status = {"v": 1, "state": "online", "fw": fw, "board": "esp32-devkitc", "ts": None,
              "up_ms": 1000, "config_error": None, **more}  # fmt: skip
    if takes is not None:
        status["takes"] = takes
    return status


def ota_state(state: str, want: list[int] | None = None, reason: str | None = None,
              rid: str = "r1") -> dict[str, Any]:  # fmt: skip
    return {"id": rid, "version": "0.1.0+abcdef12", "state": state, "want": want,
            "reason": reason}  # fmt: skip


def rollout(rel: Release | None = None) -> Rollout:
    rel = rel or release()
    return Rollout(Kiosk(STORE, "till-1", KEY, {}), {rel.kind: rel})


# -- the release ----------------------------------------------------------------------------


def firmware_folder(root: Path) -> Path:
    root.mkdir()
    (root / "main.py").write_text("import app\n")
    (root / "app.py").write_text("def run():\n    return 42\n")
    (root / "notes.txt").write_text("not a module\n")
    return root


def test_the_version_is_the_hosts_and_a_digest_of_the_sources_by_name(tmp_path: Path) -> None:
    folder = firmware_folder(tmp_path / "fw")
    digest = hashlib.sha256(b"app.py\0def run():\n    return 42\nmain.py\0import app\n")
    assert ota.version(folder) == f"{__version__}+{digest.hexdigest()[:8]}"
    (folder / "notes.txt").write_text("changed, but not a module\n")
    assert ota.version(folder) == f"{__version__}+{digest.hexdigest()[:8]}"
    (folder / "app.py").write_text("def run():\n    return 43\n")
    assert ota.version(folder) != f"{__version__}+{digest.hexdigest()[:8]}"


def test_a_py_release_is_the_sources_and_an_mpy_release_their_compiled_modules(
    tmp_path: Path,
) -> None:
    folder = firmware_folder(tmp_path / "fw")
    py = build_release("py", folder, "r1")
    assert [(f.path, f.data) for f in py.files] == [
        ("app.py", b"def run():\n    return 42\n"),
        ("main.py", b"import app\n"),
    ]
    assert (py.rid, py.kind, py.version) == ("r1", "py", ota.version(folder))
    mpy = build_release("mpy", folder, "r1")
    assert [f.path for f in mpy.files] == ["app.mpy", "main.mpy"]
    assert all(f.data[:1] == b"M" for f in mpy.files)  # MicroPython's .mpy header
    assert mpy.version == py.version


def test_a_release_the_kiosk_would_refuse_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    folder = firmware_folder(tmp_path / "fw")
    (folder / "a-module-name-far-too-long-for-a-slot.py").write_text("x = 1\n")
    with pytest.raises(OtaPushError, match=r"cannot be sent: .*not a module name"):
        build_release("py", folder)
    (folder / "a-module-name-far-too-long-for-a-slot.py").unlink()
    (folder / "broken.py").write_text("def (:\n")
    with pytest.raises(OtaPushError, match=r"broken\.py does not compile"):
        build_release("mpy", folder)
    with pytest.raises(OtaPushError, match=r"holds no \.py modules"):
        build_release("py", tmp_path)


def test_a_romfs_release_of_the_checkout_is_one_file_the_builds_image(built_firmware: None) -> None:
    rel = build_release("romfs", None, "r1")
    assert (rel.rid, rel.kind, rel.version) == ("r1", "romfs", ota.version())
    assert [f.path for f in rel.files] == [ROMFS_FILE]
    assert rel.files[0].data == firmware_romfs()
    assert rel.files[0].data == ROMFS_IMAGE.read_bytes()  # what `make build` wrote


def test_a_romfs_release_of_a_firmware_folder_runs_its_change_from_rom(
    tmp_path: Path, mpvm: MicroPythonVM
) -> None:
    folder = tmp_path / "fw"
    folder.mkdir()
    for src in FIRMWARE_DIR.glob("*.py"):
        (folder / src.name).write_bytes(src.read_bytes())
    texts = folder / "texts_en.py"
    texts.write_text(texts.read_text().replace('THANK_YOU = "Thank you!"', 'THANK_YOU = "Cheers!"'))
    rel = build_release("romfs", folder, "r1")
    mpy = build_release("mpy", folder, "r1")
    assert [f.path for f in rel.files] == [ROMFS_FILE] and rel.version == mpy.version
    code = (
        "import os, hashlib, binascii, texts_en\n"
        "print(texts_en.__file__, texts_en.THANK_YOU)\n"
        "for n in sorted(os.listdir('/rom')):\n"
        "    h = hashlib.sha256(open('/rom/' + n, 'rb').read()).digest()\n"
        "    print(n, binascii.hexlify(h).decode())\n"
    )
    out = mpvm.run(code, romfs=rel.files[0].data).ok().splitlines()
    assert out[0] == "/rom/texts_en.mpy Cheers!"
    # the image holds the folder's modules, each compiled as the mpy release compiles it
    assert out[1:] == [f"{f.path} {f.sha256}" for f in mpy.files]


def small_image(tmp_path: Path) -> bytes:
    module = tmp_path / "app.mpy"
    module.write_bytes(b"M\x06\x00\x1f not really compiled")
    return romfs_image([module], "unreadable")


@pytest.mark.parametrize(
    ("files", "why"),
    [
        (lambda img: [File(ROMFS_FILE, img), File("app.mpy", b"M")],
         "a romfs release is one file, firmware.romfs"),
        (lambda img: [File("kiosk.romfs", img)], "a romfs release is one file, firmware.romfs"),
        (lambda img: [File(ROMFS_FILE, b"M\x06" + img)], "firmware.romfs is not a ROMFS image"),
        (lambda img: [File(ROMFS_FILE, img[:-2])], "its header says"),
        (lambda img: [File(ROMFS_FILE, img[:3])], "its length is cut off"),
    ],
)  # fmt: skip
def test_a_romfs_release_is_one_whole_image_named_firmware_romfs(
    tmp_path: Path, files: Callable[[bytes], list[File]], why: str
) -> None:
    image = small_image(tmp_path)
    check_release("r1", "0.1.0", "romfs", 2048, [File(ROMFS_FILE, image)])
    with pytest.raises(OtaError, match=why):
        check_release("r1", "0.1.0", "romfs", 2048, files(image))
    with pytest.raises(OtaError, match="not a module name of kind mpy"):
        check_release("r1", "0.1.0", "mpy", 2048, [File(ROMFS_FILE, image)])


def test_a_romfs_manifest_is_one_the_contract_accepts(tmp_path: Path, contract: Contract) -> None:
    image = small_image(tmp_path)
    raw = manifest_message(KEY, STORE, "till-1", "r1", "0.1.0+abcdef12", "romfs",
                           [File(ROMFS_FILE, image)])  # fmt: skip
    result = contract.validate(f"kiosk/v1/{STORE}/till-1/ota", raw)
    assert isinstance(result, Message) and result.shape == "ota_manifest", str(result)
    m = json.loads(raw)
    assert m["kind"] == "romfs" and m["mac"] == manifest_mac(KEY, STORE, "till-1", m)
    assert m["files"] == [{"path": ROMFS_FILE, "size": len(image),
                           "sha256": hashlib.sha256(image).hexdigest()}]  # fmt: skip


def test_a_kiosk_that_takes_romfs_is_sent_the_romfs_release_and_others_theirs(
    tmp_path: Path,
) -> None:
    romfs = Release("r1", "0.1.0+abcdef12", "romfs", (File(ROMFS_FILE, small_image(tmp_path)),))
    releases = {"mpy": release((100, 5), "mpy"), "romfs": romfs}
    for takes in ("romfs", "mpy"):
        r = Rollout(Kiosk(STORE, "till-1", KEY, {}), releases)
        (raw,) = r.start(online(takes=takes), 0.0)
        m = json.loads(raw)
        assert m["kind"] == takes and r.release is releases[takes]
    assert m["files"][0]["path"] == "m0.mpy"
    r = Rollout(Kiosk(STORE, "till-1", KEY, {}), releases)
    (raw,) = r.start(online(takes="romfs"), 0.0)
    assert [f["path"] for f in json.loads(raw)["files"]] == [ROMFS_FILE]
    assert r.out.total == romfs.chunks[0]
    sims = [SimKiosk("till-1"), SimKiosk("till-2"), SimKiosk("till-3")]
    sims[0].status, sims[1].status = online(takes="romfs"), online(takes="mpy")
    sims[2].status = online(takes="bin")  # not a kind the host builds
    kiosks = [Kiosk(STORE, s.device, KEY, {}) for s in sims]
    assert ota.kinds_wanted(cast(Broker, SimBroker(sims)), kiosks) == {"romfs", "mpy"}


# -- signatures and the rollout's states ----------------------------------------------------


def test_the_manifest_and_chunks_are_signed_with_the_kiosks_key() -> None:
    r = rollout()
    (raw,) = r.start(online(), 0.0)
    m = json.loads(raw)
    assert m["mac"] == manifest_mac(KEY, STORE, "till-1", m)
    assert m["mac"] != manifest_mac(KEY, STORE, "till-2", m)  # worthless to another kiosk
    assert [f["size"] for f in m["files"]] == [5000, 0, 10]
    (raw,) = r.on_status(online(ota=ota_state("receiving", [0, 2])), 0.1)
    c = json.loads(raw)
    data = base64.b64decode(c["data"])
    assert (c["file"], c["n"], data) == (0, 2, b"\x01" * (5000 - 2 * 2048))
    assert c["mac"] == chunk_mac(KEY, c, data)
    assert c["mac"] != chunk_mac(bytes(32), c, data)


def test_each_want_is_answered_with_that_chunk_once_until_the_kiosk_runs_the_version() -> None:
    r = rollout()
    assert r.start(online(), 0.0)
    assert r.out.state == RECEIVING and r.out.total == 3 + 0 + 1
    sent = [json.loads(p) for p in r.on_status(online(ota=ota_state("receiving", [0, 0])), 1)]
    assert [(c["op"], c["file"], c["n"]) for c in sent] == [("chunk", 0, 0)]
    assert r.on_status(online(ota=ota_state("receiving", [0, 0])), 1.5) == []  # repeated
    sent = [json.loads(p) for p in r.on_status(online(ota=ota_state("receiving", [2, 0])), 2)]
    assert [(c["file"], c["n"]) for c in sent] == [(2, 0)]
    assert (r.out.done, r.out.total) == (3, 4)
    assert r.on_status(online(ota=ota_state("staged")), 3) == []
    assert (r.out.state, r.out.done) == (STAGED, 4)
    assert r.on_status({"v": 1, "state": "offline"}, 4) == []  # switching: it reboots
    assert r.tick(200.0) == []  # staged: it has its time to switch and come back
    assert r.on_status(online("0.1.0+abcdef12", ota=ota_state("done")), 205) == []
    assert r.out.ok and r.out.finished and r.out.reason is None


def test_a_kiosk_that_went_quiet_is_sent_the_manifest_again_and_its_want_again() -> None:
    r = rollout()
    r.start(online(), 0.0)
    assert r.on_status(online(ota=ota_state("receiving", [0, 1])), 1.0)
    assert r.tick(5.9) == []
    (again,) = r.tick(6.0)
    assert json.loads(again)["op"] == "manifest"
    # It resumes: the same want again, and this time the chunk goes again.
    (chunk,) = r.on_status(online(ota=ota_state("receiving", [0, 1])), 6.2)
    assert (json.loads(chunk)["file"], json.loads(chunk)["n"]) == (0, 1)
    # Still no progress: the manifest every 5 s, until 60 s after the kiosk last moved on.
    resent = [p for t in range(62, 610) for p in r.tick(t / 10)]
    assert [json.loads(p)["op"] for p in resent] == ["manifest"] * 10
    assert not r.out.finished
    r.tick(61.0)
    assert (r.out.state, r.out.reason) == (FAILED, "no answer in 60 s")


def test_an_offline_kiosk_is_waited_for_and_fails_as_offline_if_it_stays_so() -> None:
    r = rollout()
    assert r.start({"v": 1, "state": "offline"}, 0.0) == []  # its kind is not known yet
    assert [p for t in range(1, 60) for p in r.tick(float(t))] == []
    assert not r.out.finished
    r.tick(60.0)
    assert (r.out.state, r.out.reason) == (FAILED, "offline")
    r = rollout()
    r.start({"v": 1, "state": "offline"}, 0.0)
    (manifest,) = r.on_status(online(), 30.0)  # back: it says what it takes
    assert json.loads(manifest)["op"] == "manifest" and r.out.state == RECEIVING


@pytest.mark.parametrize(
    ("ota_member", "reason"),
    [
        (ota_state("ota_failed", None, "crashed: ImportError: no module named 'x'"),
         "ota_failed: crashed: ImportError: no module named 'x'"),
        (ota_state("refused", None, "manifest: bad signature"), "refused: manifest: bad signature"),
        (ota_state("refused", None, "flash: need 90 KB, 40 KB free"),
         "refused: flash: need 90 KB, 40 KB free"),
    ],
)  # fmt: skip
def test_a_kiosk_that_rolled_back_or_refused_fails_with_its_reason(
    ota_member: dict[str, Any], reason: str
) -> None:
    r = rollout()
    r.start(online(), 0.0)
    assert r.on_status(online(ota=ota_member), 1.0) == []
    assert (r.out.state, r.out.reason, r.out.ok) == (FAILED, reason, False)


def test_a_refused_chunk_is_sent_again_as_the_kiosk_keeps_asking_for_it() -> None:
    r = rollout()
    r.start(online(), 0.0)
    r.on_status(online(ota=ota_state("receiving", [0, 1])), 1.0)
    (again,) = r.on_status(online(ota=ota_state("refused", [0, 1], "chunk 0/1: bad signature")),
                           1.1)  # fmt: skip
    assert not r.out.finished
    assert (json.loads(again)["op"], json.loads(again)["n"]) == ("chunk", 1)


def test_statuses_of_an_earlier_push_are_not_progress() -> None:
    r = rollout()
    r.start(online(), 0.0)
    assert r.on_status(online(ota=ota_state("ota_failed", None, "old", rid="r0")), 1.0) == []
    assert r.out.state == RECEIVING


def test_kiosks_that_need_nothing_or_cannot_take_it_are_sent_nothing() -> None:
    r = rollout()
    assert r.start(online("0.1.0+abcdef12"), 0.0) == []
    assert r.out.ok
    r = rollout()
    assert r.start(online(takes=None), 0.0) == []
    assert r.out.reason == "its firmware takes no updates over the air: deploy it once"
    r = rollout()
    assert r.start(online(takes="mpy"), 0.0) == []
    assert r.out.reason == "it takes mpy updates, and none was built"
    r = rollout()
    assert r.start(None, 0.0) == []
    assert r.out.reason is not None and r.out.reason.startswith("never seen on the broker")


# -- canaries, with simulated kiosks and a frozen clock -------------------------------------


class SimKiosk:
    """A kiosk's side of the exchange, as docs/ota.md has it: verifies, asks, stages, switches."""

    def __init__(self, device: str, outcome: str = "done") -> None:
        self.device = device
        self.outcome = outcome  # done, ota_failed, silent (never answers)
        self.status: dict[str, Any] = online()
        self.manifest: dict[str, Any] | None = None
        self.got: list[bytearray] = []
        self.want: list[int] | None = None
        self.messages = 0

    def on_ota(self, payload: bytes) -> list[dict[str, Any]]:
        self.messages += 1
        if self.outcome == "silent":
            return []
        msg = json.loads(payload)
        if msg["op"] == "manifest":
            assert msg["mac"] == manifest_mac(KEY, STORE, self.device, msg)
            if self.manifest is None or self.manifest["id"] != msg["id"]:
                self.manifest, self.got = msg, [bytearray() for _ in msg["files"]]
            return self._advance()
        assert self.manifest is not None and msg["id"] == self.manifest["id"]
        if [msg["file"], msg["n"]] != self.want:
            return []
        raw = base64.b64decode(msg["data"])
        assert msg["mac"] == chunk_mac(KEY, msg, raw)
        self.got[msg["file"]] += raw
        return self._advance()

    def _advance(self) -> list[dict[str, Any]]:
        assert self.manifest is not None
        m, c = self.manifest, self.manifest["chunk"]
        for i, f in enumerate(m["files"]):
            if len(self.got[i]) < f["size"]:
                self.want = [i, len(self.got[i]) // c]
                return [self._say("receiving", self.want)]
        for i, f in enumerate(m["files"]):
            assert hashlib.sha256(self.got[i]).hexdigest() == f["sha256"]
        self.want = None
        staged = self._say("staged", None)
        offline = {"v": 1, "state": "offline"}
        if self.outcome == "ota_failed":
            self.status = {**online(), "ota": ota_state("ota_failed", None, "not online after 2 "
                                                        "boots", rid=m["id"])}  # fmt: skip
        else:
            self.status = {**online(m["version"]), "ota": ota_state("done", None, rid=m["id"])}
        return [staged, offline, self.status]

    def _say(self, state: str, want: list[int] | None) -> dict[str, Any]:
        assert self.manifest is not None
        self.status = {**online(), "ota": {**ota_state(state, want), "id": self.manifest["id"]}}
        return self.status


class SimBroker:
    """The broker as `Broker` offers it to the rollout, with simulated kiosks behind it."""

    def __init__(self, kiosks: list[SimKiosk]) -> None:
        self.kiosks = {f"kiosk/v1/{STORE}/{k.device}/ota": k for k in kiosks}
        self.sent: list[str] = []
        self._heard: list[tuple[str, bytes]] = []

    def retained(self, filters: list[str]) -> dict[str, bytes]:
        out = {}
        for k in self.kiosks.values():
            t = f"kiosk/v1/{STORE}/{k.device}/status"
            if t in filters:
                out[t] = json.dumps(k.status).encode()
        return out

    def listen(self, filters: list[str]) -> None:
        pass

    def heard(self, start: int = 0) -> list[tuple[str, bytes]]:
        return self._heard[start:]

    def check_connected(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.sent.append(topic)
        k = self.kiosks[topic]
        for s in k.on_ota(payload):
            self._heard.append((f"kiosk/v1/{STORE}/{k.device}/status", json.dumps(s).encode()))


class FrozenClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def push_to(sims: list[SimKiosk], canary: int) -> tuple[ota.Pushed, SimBroker, FrozenClock]:
    broker, clock = SimBroker(sims), FrozenClock()
    kiosks = [Kiosk(STORE, s.device, KEY, {}) for s in sims]
    rel = release((3000, 5))
    done = ota.rollout(cast(Broker, broker), kiosks, {"py": rel}, canary, None, clock.now,
                       clock.sleep)  # fmt: skip
    return done, broker, clock


def test_every_kiosk_gets_the_release_when_the_canaries_run_it() -> None:
    sims = [SimKiosk(d) for d in ("till-4", "till-2", "till-1", "till-3")]
    done, broker, _ = push_to(sims, canary=2)
    assert done.ok and done.stopped is None and done.failures() == []
    assert [o.device for o in done.kiosks] == ["till-1", "till-2", "till-3", "till-4"]
    # the canaries had all they needed before the others were sent anything
    last_canary = max(i for i, t in enumerate(broker.sent) if "/till-1/" in t or "/till-2/" in t)
    first_other = min(i for i, t in enumerate(broker.sent) if "/till-3/" in t or "/till-4/" in t)
    assert last_canary < first_other


def test_a_failed_canary_stops_the_rollout_and_the_others_are_sent_nothing() -> None:
    sims = [SimKiosk("till-1"), SimKiosk("till-2", "ota_failed"), SimKiosk("till-3")]
    done, broker, _ = push_to(sims, canary=2)
    assert not done.ok
    assert done.stopped == (
        "rollout stopped after the canaries: till-2: ota_failed: not online after 2 boots"
    )
    assert not any("/till-3/" in t for t in broker.sent)
    assert done.kiosks[2].reason == "not sent: " + done.stopped
    assert [o.ok for o in done.kiosks] == [True, False, False]


def test_a_canary_that_does_not_come_online_stops_the_rollout() -> None:
    sims = [SimKiosk("till-1", "silent"), SimKiosk("till-2")]
    sims[0].status = {"v": 1, "state": "offline"}
    done, broker, clock = push_to(sims, canary=1)
    assert done.stopped == "rollout stopped after the canaries: till-1: offline"
    assert not any("/till-2/" in t for t in broker.sent)
    assert sims[0].messages == 0  # offline: its kind unknown, nothing sent
    assert 60 <= clock.t - 1000 < 61


def test_without_canaries_a_failure_stops_no_one() -> None:
    sims = [SimKiosk("till-1", "ota_failed"), SimKiosk("till-2")]
    done, _, _ = push_to(sims, canary=0)
    assert done.stopped is None and not done.ok
    assert done.failures() == [f"{STORE}/till-1: ota_failed: not online after 2 boots"]
    assert done.kiosks[1].ok


# -- over a real broker ---------------------------------------------------------------------


class PahoKiosk:
    """A simulated kiosk on its own MQTT connection: the ota topic in, its status out."""

    def __init__(self, port: int, device: str) -> None:
        self.sim = SimKiosk(device)
        self.status_topic = f"kiosk/v1/{STORE}/{device}/status"
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ota-sim-{device}")
        c.on_connect = lambda client, *_: (
            client.publish(self.status_topic, json.dumps(self.sim.status), qos=1, retain=True),
            client.subscribe(f"kiosk/v1/{STORE}/{device}/ota", 1),
        )
        c.on_subscribe = lambda *_: self.ready.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        for s in self.sim.on_ota(bytes(msg.payload)):
            client.publish(self.status_topic, json.dumps(s), qos=1, retain=True)

    def close(self) -> None:
        self.client.publish(self.status_topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def test_a_push_through_a_broker_reaches_each_kiosk_and_says_how_each_went(
    mosquitto: Any, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    devices = tmp_path / "devices"
    for d in ("till-1", "till-2"):
        (devices / STORE / d).mkdir(parents=True)
        ident = {"store": STORE, "device": d, "host": "127.0.0.1", "port": mosquitto.port,
                 "ota_key": KEY.hex()}  # fmt: skip
        (devices / STORE / d / "identity.json").write_text(json.dumps(ident))
    kiosks = [closing(PahoKiosk(mosquitto.port, d)) for d in ("till-1", "till-2")]
    for k in kiosks:
        assert k.ready.wait(10)
    shown: list[tuple[str, int]] = []  # (state, chunks) as each kiosk went
    big = (50_000, 7)  # 25 chunks and one

    def build(kind: str, firmware: Path | None, rid: str) -> Release:
        return Release(rid, "0.1.0+abcdef12", kind,
                       tuple(File(f"m{i}.py", b"x" * s) for i, s in enumerate(big)))  # fmt: skip

    done = ota.push(mosquitto.url, STORE, None, devices, canary=1,
                    progress=lambda o: shown.append((o.state, o.done)),
                    build=build)  # fmt: skip
    assert done.ok, done.failures()
    assert [(o.device, o.fw, o.done, o.total) for o in done.kiosks] == [
        ("till-1", "0.1.0+abcdef12", 26, 26),
        ("till-2", "0.1.0+abcdef12", 26, 26),
    ]
    assert [bytes(b) for b in kiosks[0].sim.got] == [b"x" * 50_000, b"x" * 7]
    assert any(state == RECEIVING and 0 < n < 26 for state, n in shown)
    # `ota status` reads the same statuses, with the progress the push recorded
    url = mosquitto.url
    with Broker(url) as broker:
        rows = [
            r for r in ota.fleet_status(broker, STORE, devices) if r.device in ("till-1", "till-2")
        ]
    assert [(r.device, r.fw, r.state, r.done, r.total) for r in rows] == [
        ("till-1", "0.1.0+abcdef12", DONE, 26, 26),
        ("till-2", "0.1.0+abcdef12", DONE, 26, 26),
    ]
    shown_status = run_cli(["ota", "status", "--store", STORE, "--broker", url,
                            "--devices-dir", str(devices)])  # fmt: skip
    assert shown_status.returncode == 0, shown_status.stderr
    assert f"{STORE}/till-2: runs 0.1.0+abcdef12, being given 0.1.0+abcdef12, done, 26/26 " \
        "chunks" in shown_status.stdout.splitlines()  # fmt: skip
    # The command: the sources of --firmware, a new version, to both; exit 0 and a line each.
    folder = firmware_folder(tmp_path / "fw")
    pushed = run_cli(["ota", "push", "--store", STORE, "--all", "--broker", url,
                      "--devices-dir", str(devices), "--firmware", str(folder)])  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines() == [
        f"{STORE}/till-1: runs {ota.version(folder)}",
        f"{STORE}/till-2: runs {ota.version(folder)}",
    ]
    assert [bytes(b) for b in kiosks[1].sim.got] == [b"def run():\n    return 42\n",
                                                     b"import app\n"]  # fmt: skip
    assert f"{STORE}/till-2 [####################] 100% 2/2 done" in pushed.stderr.splitlines()
    assert "\x1b" not in pushed.stderr  # not a terminal: lines, not rewritten in place


# -- the command line -----------------------------------------------------------------------


def provisioned(root: Path, *devices: str, port: int = 1883) -> Path:
    for d in devices:
        (root / STORE / d).mkdir(parents=True)
        ident = {"store": STORE, "device": d, "host": "127.0.0.1", "port": port,
                 "ota_key": KEY.hex()}  # fmt: skip
        (root / STORE / d / "identity.json").write_text(json.dumps(ident))
    return root


def ota_push(devices: Path, *args: str) -> Any:
    return run_cli(["ota", "push", "--store", STORE, "--devices-dir", str(devices),
                    "--broker-dir", str(devices.parent / "broker"), *args],
                   {"KIOSK_BROKER": None})  # fmt: skip


def one_line_refusal(done: Any, *words: str) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiosk-host"), done.stderr
    for w in words:
        assert w in lines[0], done.stderr


def test_the_command_refuses_what_it_cannot_push_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    devices = provisioned(tmp_path / "devices", "till-1", "till-2", port=port)
    one_line_refusal(ota_push(devices, "--all", "--broker", f"mqtt://127.0.0.1:{port}"),
                     "no connection to the broker")  # fmt: skip
    one_line_refusal(ota_push(devices, "--device", "till-7"), "no kiosk till-7", STORE)
    done = run_cli(["ota", "push", "--store", "store-99", "--all",
                    "--devices-dir", str(devices)])  # fmt: skip
    one_line_refusal(done, "no store store-99")
    one_line_refusal(ota_push(devices), "--device", "--all")
    one_line_refusal(ota_push(devices, "--all"), "no fleet account")
    ident = json.loads((devices / STORE / "till-2" / "identity.json").read_text())
    del ident["ota_key"]
    (devices / STORE / "till-2" / "identity.json").write_text(json.dumps(ident))
    one_line_refusal(ota_push(devices, "--device", "till-2", "--broker", "mqtt://127.0.0.1:1"),
                     "till-2 has no ota_key", "provision it again")  # fmt: skip
    assert ota_push(devices, "--device", "till-1", "--all").returncode == 2  # one or the other


def test_progress_is_a_line_per_tenth_in_a_log_and_rewritten_in_place_on_a_terminal() -> None:
    log = io.StringIO()
    bars = Bars(log, in_place=False)
    o = Outcome(STORE, "till-1", RECEIVING, "0.1.0+abcdef12", OLD, True, 0, 100)
    for n in range(101):
        o.done = n
        bars(o)
    o.state = DONE
    bars(o)
    lines = log.getvalue().splitlines()
    assert len(lines) == 12  # 0 %, 10 % ... 100 %, then done
    assert lines[5] == f"{STORE}/till-1 [##########..........]  50% 50/100 receiving"
    assert "\x1b" not in log.getvalue()
    tty = io.StringIO()
    bars = Bars(tty, in_place=True)
    bars(Outcome(STORE, "till-1", RECEIVING, None, OLD, True, 1, 4))
    bars(Outcome(STORE, "till-2", FAILED, None, OLD, False, 0, 4, "offline"))
    bars(Outcome(STORE, "till-1", RECEIVING, None, OLD, True, 2, 4))
    out = tty.getvalue()
    assert out.count("\x1b[2F") == 1 and out.endswith(f"{STORE}/till-2 [....................]"
                                                      "   0% 0/4 failed: offline\n")  # fmt: skip


# -- provisioning, the contract and the ACL -------------------------------------------------


def test_provisioning_gives_each_kiosk_its_own_key_kept_out_of_the_broker_folder(
    tmp_path: Path,
) -> None:
    broker_dir = tmp_path / "broker"
    outs = [tmp_path / "devices" / STORE / d for d in ("till-1", "till-2")]
    for out in outs:
        provision(broker_dir, out, STORE, out.name, "mqtt://127.0.0.1:1883")
    keys = [identity(out)["ota_key"] for out in outs]
    assert all(len(k) == 64 and set(k) <= set("0123456789abcdef") for k in keys)
    assert keys[0] != keys[1]
    for path in broker_dir.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert not any(k.encode() in text for k in keys), path
    done = run_cli(["provision", "--store", STORE, "--device", "till-1", "--board",
                    "esp32_devkitc_ssd1306", "--wifi-ssid", "shop", "--wifi-pass", "12345678",
                    "--broker", "mqtt://127.0.0.1:1883", "--out", str(outs[0]),
                    "--broker-dir", str(broker_dir)])  # fmt: skip
    assert done.returncode == 2 and "already holds a provisioned kiosk" in done.stderr
    assert identity(outs[0])["ota_key"] == keys[0]  # provisioning again keeps the key
    assert keys[0] not in done.stdout + done.stderr


def test_the_aggregator_neither_stores_nor_dead_letters_updates_and_their_statuses(
    contract: Contract,
) -> None:
    rel = release()
    r = rollout(rel)
    (manifest,) = r.start(online(), 0.0)
    (chunk,) = r.on_status(online(ota=ota_state("receiving", [0, 0])), 0.1)
    for payload in (manifest, chunk):
        assert classify(contract, f"kiosk/v1/{STORE}/till-1/ota", payload, 1) is None
    status = online(ota=ota_state("receiving", [0, 1]))
    got = classify(contract, f"kiosk/v1/{STORE}/till-1/status", json.dumps(status).encode(), 1)
    assert isinstance(got, DeviceStatus) and not isinstance(got, DeadLetter)
    result = contract.validate(f"kiosk/v1/{STORE}/till-1/ota", manifest)
    assert isinstance(result, Message) and result.shape == "ota_manifest"


def test_only_the_fleet_tools_write_a_kiosks_ota_and_only_that_kiosk_reads_it(
    fleet: Fleet, closing: Callable[[Client], Client]
) -> None:
    mine, theirs = f"kiosk/v1/{STORE}/till-1/ota", f"kiosk/v1/{STORE}/till-2/ota"
    creds = json.loads((fleet.broker_dir / "fleet.json").read_text())
    tools = closing(Client(fleet.broker.port, "fleet-ota", creds["user"], creds["password"]))
    tools.subscribe(f"kiosk/v1/{STORE}/+/ota")  # they send updates, and read none
    a = closing(fleet.client("till-1", "a-ota"))
    assert a.subscribe(mine) == [1]
    b = closing(fleet.client("till-2", "b-ota"))
    b.subscribe(theirs, mine)
    b.publish(mine, b"forged by till-2")
    a.publish(mine, b"written by till-1 itself")
    a.publish(theirs, b"forged by till-1")
    tools.publish(mine, b"from the fleet tools")
    wait_until(lambda: a.on(mine) == [b"from the fleet tools"], 10, "the fleet tools' update")
    tools.publish(theirs, b"for till-2")
    wait_until(lambda: b.on(theirs) == [b"for till-2"], 10, "till-2's own update")
    assert a.topics() == [mine]  # nothing forged, nothing of till-2's
    assert b.topics() == [theirs]
    assert tools.topics() == []


def test_a_broker_folder_of_an_earlier_release_gets_the_ota_rules_at_the_next_provisioning(
    tmp_path: Path,
) -> None:
    broker_dir = tmp_path / "broker"
    provision(broker_dir, tmp_path / "d" / "till-1", STORE, "till-1", "mqtt://127.0.0.1:1883")
    acl = broker_dir / "acl"
    ota_rules = ("pattern read kiosk/v1/%u/ota\n", "topic write kiosk/v1/+/+/ota\n")
    earlier = acl.read_text()
    for rule in ota_rules:
        assert earlier.count(rule) == 1
        earlier = earlier.replace(rule, "")
    acl.write_text(earlier)
    provision(broker_dir, tmp_path / "d" / "till-2", STORE, "till-2", "mqtt://127.0.0.1:1883")
    now = acl.read_text()
    assert [now.count(rule) for rule in ota_rules] == [1, 1]
    assert now.index("pattern read kiosk/v1/%u/ota") < now.index("user kiosk-host")
    fleet_block = now.split("user kiosk-fleet\n", 1)[1].split("\n\n", 1)[0]
    assert "topic write kiosk/v1/+/+/ota" in fleet_block.splitlines()
    assert "user store-12/till-1\n" in now and "user store-12/till-2\n" in now


def test_ota_status_shows_the_kiosks_own_count_of_chunks(tmp_path: Path) -> None:
    status = {"v": 1, "state": "online", "fw": "0.1.0", "board": "b", "ts": None, "up_ms": 1,
              "config_error": None, "takes": "mpy",
              "ota": {"id": "r1", "version": "0.2.0", "state": "receiving", "want": [1, 3],
                      "reason": None, "progress": [9, 40]}}  # fmt: skip
    out = ota.status_of(tmp_path, STORE, "till-1", json.dumps(status).encode())
    assert (out.fw, out.version, out.state, out.done, out.total) == (
        "0.1.0",
        "0.2.0",
        "receiving",
        9,
        40,
    )
