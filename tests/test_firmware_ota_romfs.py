"""A release as a ROMFS image goes into a partition the kiosk does not run from, and runs in place.

The firmware's receiver (firmware/ota.py), slots (firmware/fwslot.py), partitions
(firmware/rompart.py) and the deployment's loader run on the MicroPython VM, with ROMFS
partitions of the tests' own (tests/vm/romsim.py: the VM's port cannot write its one) on the
fault-injecting flash's power (tests/vm/faultfs.py). The images are real ROMFS images, made
as `mpremote romfs build` makes them; the messages are the host's (kiosk_host.wire.ota).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from mpremote.romfs import make_romfs

from kiosk_host.fleet.device_scripts import DEVICE_MAIN
from kiosk_host.fleet.ota import build_release
from kiosk_host.shipped import FIRMWARE
from kiosk_host.wire.contract import Contract
from kiosk_host.wire.ota import File
from tests.broker import Mosquitto
from tests.kiosk_runs import MONO
from tests.test_firmware_fwslot import LOADER_HEAD, loader_starts
from tests.test_firmware_memory import BUDGET
from tests.test_firmware_ota import (
    DEVICE,
    FAULTFS,
    KEY,
    LINK,
    LINK_STEPS,
    STORE,
    VERSION,
    Publisher,
    _chunks,
    _edit,
    _manifest,
)
from tests.vm.heap import KIOSK, NET, POLLNET, RIG, SIM, heap_by_customers
from tests.vm.mpvm import (
    BOARDS_DIR,
    ROOT,
    MicroPythonVM,
    board_stems,
    firmware_modules,
    vm_files,
)

ROMSIM = (ROOT / "tests" / "vm" / "romsim.py").read_text()
MODULES = ["ota", "wire", "fwslot", "rompart", "outbox", "bootguard"]


def _image(files: dict[str, str]) -> bytes:
    """A ROMFS image of `files` (name: source), as `mpremote romfs build` makes it."""
    with tempfile.TemporaryDirectory(prefix="romfs-test-") as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text)
        with contextlib.redirect_stdout(io.StringIO()):  # it lists what it takes
            return bytes(make_romfs(tmp, mpy_cross=False))


def _filler(seed: int, size: int) -> str:
    """A module of `size` bytes of comment that differs with `seed`: several chunks' worth."""
    rnd = random.Random(seed)
    return "".join(f"# {rnd.getrandbits(64):016x}\n" for _ in range(size // 19))


FACTORY = _image({"main.py": "print('factory main')\n", "fill.py": _filler(0, 600)})
R2 = _image(
    {
        "main.py": "import texts\nprint('release main', __file__, texts.THANK_YOU)\n",
        "texts.py": "THANK_YOU = 'Merci!'\n",
        "fill.py": _filler(2, 1300),
    }
)
R3 = _image({"main.py": "print('release 3 main')\n", "fill.py": _filler(3, 1700)})
CHUNK = 512
V2, V3 = "2.0+aa11", "3.0+bb22"


def _release(rid: str, version: str, image: bytes, chunk: int = CHUNK) -> dict[str, object]:
    files = [File("firmware.romfs", image)]
    return {
        "manifest": _manifest(files, rid, chunk, version=version, kind="romfs"),
        "chunks": _chunks(files, rid, chunk),
        "size": len(image),
        "sha": hashlib.sha256(image).hexdigest(),
    }


def _files(**extra: object) -> dict[str, str | bytes]:
    msgs = {"r2": _release("r2", V2, R2), "r3": _release("r3", V3, R3), **extra}
    return {
        "/lib/faultfs.py": FAULTFS,
        "/lib/romsim.py": ROMSIM,
        "/msgs.json": json.dumps(msgs),
        "/factory.romfs": FACTORY,
    }


# MicroPython: the flash and three ROMFS partitions, the deployed firmware in partition 0.
PRELUDE = r"""
import vfs, json, os, binascii, hashlib
from faultfs import FaultFS, PowerCut
from romsim import RomSim
import fwslot, ota, rompart

fs = FaultFS()
vfs.mount(fs, "/flash")
with open("/factory.romfs", "rb") as f:
    FACTORY = f.read()
rom = RomSim(fs, [FACTORY])
parts = rompart.RomParts(rom)
with open("/msgs.json") as f:
    M = json.load(f)
for k in M:  # messages as MQTT hands them over: bytes
    if isinstance(M[k], str):
        M[k] = M[k].encode()
    else:
        M[k]["manifest"] = M[k]["manifest"].encode()
        M[k]["chunks"] = {n: v.encode() for n, v in M[k]["chunks"].items()}
IDENT = {"store": "store-12", "device": "till-1", "ota_key": "OTA_KEY", "fw": "factory"}
slots = fwslot.Slots("/flash/fw")


def receiver(takes="romfs"):
    return ota.Receiver(slots, IDENT, takes, None, parts)


def send(rel):
    # The host's side: the manifest, then each chunk the receiver asks for.
    r = receiver()
    r.on_message(M[rel]["manifest"])
    while r.want is not None and r.st != "refused":
        r.on_message(M[rel]["chunks"]["%d/%d" % r.want])
    return r


def holds(n, rel):
    # Whether partition n begins with release rel's image, by its sha256.
    got = hashlib.sha256(memoryview(rom.parts[n])[: M[rel]["size"]]).digest()
    return binascii.hexlify(got).decode() == M[rel]["sha"]


def erased(n):
    return rom.parts[n] == bytearray(b"\xff" * len(rom.parts[n]))


def factory_kept():
    return rom.parts[0][: len(FACTORY)] == FACTORY
""".replace("OTA_KEY", KEY.hex())


FLOW = r"""
r = send("r2")
print(r.st, r.part, holds(1, "r2"), factory_kept(), erased(2), slots.pointer())
writes = rom.writes
again = receiver()
again.on_message(M["r2"]["manifest"])  # sent again (a resume): the partition holds it
print(again.st, again.part, rom.writes == writes)
slots.switch(r.version, r.rid, r.part)
print(slots.boot(None), slots.rom(), slots.version("factory"))
slots.confirm()
r = send("r3")  # while release 2 runs from partition 1: into partition 2
print(r.st, r.part, holds(2, "r3"), holds(1, "r2"), factory_kept())
slots.switch(r.version, r.rid, r.part)
print(slots.boot(None), slots.rom(), slots.version("factory"), slots.trying())
slots.rollback("not online within 300 s")
print(slots.boot(None), slots.rom(), slots.version("factory"), slots.trying())
"""


def test_a_romfs_release_goes_into_the_partition_not_running_and_rolls_back_to_the_other(
    mpvm: MicroPythonVM,
) -> None:
    out = mpvm.run(PRELUDE + FLOW, MODULES, files=_files()).ok().splitlines()
    assert out == [
        "staged 1 True True True None",  # written and read back; nothing switched yet
        "staged 1 True",  # a resend finds it there, and writes nothing
        f"/flash/fw/a 1 {V2}",
        # Release 3 goes into partition 2: release 2, running, stays whole in partition 1.
        "staged 2 True True True",
        f"/flash/fw/b 2 {V3} True",
        f"/flash/fw/a 1 {V2} False",  # rolled back: release 2 from partition 1 again
    ]


# Release 2 runs from partition 1; release 3 arrives. One clean transfer learns the steps the
# last chunk takes (its write, the image's hash, the partition erased, written and read back);
# then the same transfer from the same flash, cut at steps across that span.
CUTS = r"""
r = send("r2")
slots.switch(r.version, r.rid, r.part)
slots.confirm()
base = (fs.snapshot(), rom.snapshot())
RUNNING = slots.pointer()
LAST = (0, (M["r3"]["size"] - 1) // 512)
r = receiver()
r.on_message(M["r3"]["manifest"])
while r.want is not None:
    last = fs.steps
    r.on_message(M["r3"]["chunks"]["%d/%d" % r.want])
span = (last, fs.steps)
erase = rom.erased_at - last  # the steps before the erase
print("SPAN", span[1] - span[0], erase)
results = []
ks = list(range(0, span[1] - span[0], 7)) + [erase, erase + 1, erase + 2, span[1] - span[0] - 1]
for k in ks:
    fs.restore(base[0])
    rom.restore(base[1])
    r = receiver()
    r.on_message(M["r3"]["manifest"])
    while r.want != LAST:
        r.on_message(M["r3"]["chunks"]["%d/%d" % r.want])
    fs.cut_after(k)
    try:
        r.on_message(M["r3"]["chunks"]["%d/%d" % r.want])
        cut = False
    except PowerCut:
        cut = True
    fs.power_on()
    # The next start: fresh objects over the same flash and partitions.
    slots = fwslot.Slots("/flash/fw")
    at_boot = [slots.pointer() == RUNNING, slots.boot(None), holds(1, "r2"), factory_kept()]
    r = send("r3")
    results.append([k, cut, at_boot, r.st, r.part, holds(2, "r3"), holds(1, "r2")])
print("RESULTS", json.dumps(results))
"""


@pytest.mark.slow  # a sweep: some 330 power cuts, each followed by a resend
def test_a_power_cut_while_the_image_is_written_keeps_the_running_release_and_resumes(
    mpvm: MicroPythonVM,
) -> None:
    out = mpvm.run(PRELUDE + CUTS, MODULES, files=_files()).ok().splitlines()
    span, erase = map(int, out[0].split()[1:])
    # The last chunk's bytes, the image's erase and its bytes written: more than the image.
    assert span > len(R3) and 0 < erase < span - len(R3)
    results = json.loads(out[1].split(" ", 1)[1])
    # Cuts before, at and after the erase's one step, every 7 steps, and at the last step.
    assert len(results) == len(range(0, span, 7)) + 4
    for k, cut, at_boot, state, part, new_whole, old_whole in results:
        case = f"cut after {k} steps: {at_boot} {state} {part}"
        assert cut, case  # every cut falls inside the span
        # The start after the cut: release 2, from partition 1, whole; the factory kept.
        assert at_boot == [True, "/flash/fw/a", True, True], case
        # The manifest again: the image is finished, written and read back.
        assert (state, part, new_whole, old_whole) == ("staged", 2, True, True), case


REFUSALS = r"""
r = send("big")
print(r.state(), erased(1), slots.pointer())
r = receiver()
r.on_message(M["two_files"])
print(r.state())
r = receiver(takes="mpy")
r.on_message(M["r2"]["manifest"])
print(r.state())
# A partition that does not keep what is written (a worn block): refused, nothing switched.
ioctl = rom.rom_ioctl
def worn(op, n=0, *args):
    got = ioctl(op, n, *args)
    if op == 5:
        rom.parts[n][100] ^= 0x10
    return got
rom.rom_ioctl = worn
r = send("r2")
print(r.state(), slots.pointer())
"""


def test_an_image_the_partition_cannot_take_is_refused_and_nothing_switches(
    mpvm: MicroPythonVM,
) -> None:
    big = _image({"main.py": "", "fill.py": _filler(9, 70_000)})  # the partitions hold 64 KB
    two = [File("firmware.romfs", R2), File("other.romfs", R3)]
    extra = {
        "big": _release("rbig", V2, big),
        "two_files": _edit(
            _manifest(two[:1], "r4", CHUNK, kind="romfs"),
            files=[{"path": f.path, "size": len(f.data), "sha256": f.sha256} for f in two],
        ),
    }
    out = mpvm.run(PRELUDE + REFUSALS, MODULES, files=_files(**extra)).ok().splitlines()
    states = [json.loads(line[: line.rindex("}") + 1]) for line in out]
    kb = (len(big) + 1023) // 1024
    assert states[0]["state"] == "refused"
    assert states[0]["reason"] == f"flash: the image is {kb} KB, ROMFS partition 1 holds 64 KB"
    assert out[0].endswith(" True None")  # the partition untouched, nothing switched
    assert states[1]["reason"] == "manifest: a romfs release is one file, firmware.romfs"
    assert states[2]["reason"] == "manifest: kind romfs, this kiosk takes mpy"
    assert states[3]["state"] == "refused"
    assert states[3]["reason"] == "romfs: partition 1 does not read back as written"
    assert out[3].endswith(" None")


# The loader (the deployment's /main.py) at each start, on the VM's own file system, with the
# partitions handed in as `vfs`: release 2 in partition 1 runs from there; a release whose
# partition holds no image (erased) fails its starts and is rolled back.
LOADER = (
    LOADER_HEAD
    + r"""
from romsim import RomSim
from faultfs import FaultFS

with open("/factory.romfs", "rb") as f:
    FACTORY = f.read()
with open("/r2.romfs", "rb") as f:
    rom = RomSim(FaultFS(), [FACTORY, f.read()])
sys.modules["vfs"] = rom  # what `import vfs` gives the loader and rompart

for d in ("/fw", "/fw/a", "/fw/b"):
    os.mkdir(d)
put("/lib/main.py", "print('factory main')\n")
put("/fw/a/manifest.json", '{"id":"r2","version":"2.0"}')
put("/fw/b/manifest.json", '{"id":"r3","version":"3.0"}')
s = Slots("/fw")
s.switch("2.0", "r2", 1)
s.confirm()
s.switch("3.0", "r3", 2)  # partition 2 is erased: nothing mounts
"""
    + loader_starts(
        '"guard", get("/boots"), "pointer", p["rom"], p["version"], p["boots"]',
        "    for where in ('/rom1', '/rom2'):\n"
        "        try:\n"
        "            rom.umount(where)\n"
        "        except OSError:\n"
        "            pass\n",
    )
    + 'print(Slots("/fw").failed()["reason"])\n'
)


def test_the_loader_runs_a_release_from_its_partition_and_rolls_back_one_that_does_not_mount(
    mpvm: MicroPythonVM,
) -> None:
    files = {
        "/lib/faultfs.py": FAULTFS,
        "/lib/romsim.py": ROMSIM,
        "/lib/loader_src.py": f"SRC = {DEVICE_MAIN!r}\n",
        "/factory.romfs": FACTORY,
        "/r2.romfs": R2,
    }
    out = mpvm.run(LOADER, ["fwslot", "bootguard", "rompart"], files=files).ok().splitlines()
    lines = [line for line in out if not line.startswith(" ")]
    assert lines[0] == "Traceback (most recent call last):"
    error = lines[1]
    assert error == "OSError: [Errno 19] ENODEV", out  # VfsRom: not a ROMFS image
    assert lines[2:] == [
        "ResetRequested machine.reset()",
        "guard 1 pointer 2 3.0 1",
        "Traceback (most recent call last):",
        error,
        "ResetRequested machine.reset()",
        "guard 2 pointer 2 3.0 2",
        # The third start: back to release 2, which runs from partition 1 with its own modules.
        "release main /rom1/main.py Merci!",
        "running",
        "guard - pointer 1 2.0 0",
        "release main /rom1/main.py Merci!",
        "running",
        "guard - pointer 1 2.0 0",
        f"crashed: {error}",
    ]


START = r"""
import asyncio, json, os, sys
import app, link
from faultfs import FaultFS
from romsim import RomSim

sys.modules["vfs"] = RomSim(FaultFS(), count=COUNT)


class Link:
    def __init__(self, kiosk, outbox, clock, wlan, ident, hw):
        print(ident.get("takes"), hw["rom"] is not None)


def run(coro):
    pass


link.Link = Link
asyncio.run = run  # the loop itself is not what is tested here
with open("/identity.json", "w") as f:
    json.dump({"store": "s1", "device": "till-1", "letter": "A", "fw": "1.0"}, f)
import main
"""


def test_a_kiosk_with_three_partitions_takes_romfs_releases_and_one_with_fewer_mpy(
    mpvm: MicroPythonVM,
) -> None:
    files = vm_files(BOARDS_DIR / f"{MONO}.py")
    files["/lib/board.py"] = files.pop(f"/lib/{MONO}.py")
    files["/lib/faultfs.py"] = FAULTFS
    files["/lib/romsim.py"] = ROMSIM
    said = []
    for count in (3, 2, 1):
        code = START.replace("COUNT", str(count))
        said.append(mpvm.run(code, [*firmware_modules(), "main"], files=files).ok().strip())
    # With fewer than three, the link says nothing of its own: "mpy", as ever.
    assert said == ["romfs True", "None False", "None False"]


# The whole firmware as `ota push` sends it to a kiosk that takes romfs, received into
# partition 1; the partition's bytes as the kiosk wrote them come back in base64.
RECEIVE = r"""
rom = RomSim(fs, [FACTORY], size=131072)
parts = rompart.RomParts(rom)
r = send("fw")
print(r.st, r.part)
for at in range(0, M["fw"]["size"], 3072):  # in slices: the VM's binascii is Python's
    end = min(at + 3072, M["fw"]["size"])
    print(binascii.b2a_base64(bytes(rom.parts[1][at:end])).decode().strip())
"""


@pytest.mark.slow  # the whole firmware sent to the VM, then 1,000 customers connected: 5 s
@pytest.mark.parametrize("board", board_stems())
def test_a_kiosk_running_a_release_received_over_the_air_holds_its_heap_budget(
    mpvm: MicroPythonVM, built_firmware: None, tmp_path: Path, board: str
) -> None:
    folder = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, folder)
    texts = folder / "texts_en.py"
    texts.write_text(
        re.sub(r'THANK_YOU = "[^"]*"', 'THANK_YOU = "Thanks a lot!"', texts.read_text())
    )
    release = build_release("romfs", folder)
    image = release.files[0].data
    extra = {"fw": _release(release.rid, release.version, image, chunk=2048)}
    out = mpvm.run(PRELUDE + RECEIVE, MODULES, files=_files(**extra)).ok().splitlines()
    assert out[0] == "staged 1"
    written = b"".join(base64.b64decode(line) for line in out[1:])
    assert written == image
    # The partition as the kiosk's /rom: the release's modules run from it, its text shown.
    check = "import texts_en, link\nprint(texts_en.THANK_YOU, link.__file__)\n"
    assert mpvm.run(check, romfs=written).ok().split() == ["Thanks", "a", "lot!", "/rom/link.mpy"]
    # Connected, its update receiver loaded, the code in place in the partition: the heap
    # stays within the board's budget, as the deployed firmware's does.
    heap = heap_by_customers(mpvm, board, [1000], link=True, ota=True, image=written)
    print(board, heap)
    assert max(heap.values()) <= BUDGET[board], f"{max(heap.values()):,} B"


# The link's kiosk with three partitions: it says it takes romfs and hands them to its receiver.
WITH_PARTITIONS = """
from faultfs import FaultFS
from romsim import RomSim
import rompart
rom = RomSim(FaultFS())
hw['rom'] = rompart.RomParts(rom)
IDENT['takes'] = 'romfs'
"""


def test_the_link_takes_a_romfs_release_and_switches_to_its_partition_when_idle(
    mpvm: MicroPythonVM, contract: Contract
) -> None:
    files = [File("firmware.romfs", R2)]
    with tempfile.TemporaryDirectory(prefix="ota-broker-") as tmp, Mosquitto(Path(tmp)) as broker:
        host = Publisher(broker, contract, files, "romfs")
        try:
            link = LINK % {"store": STORE, "device": DEVICE, "port": broker.port, "key": KEY.hex()}
            link = link.replace("\nstart()\n", "\n" + WITH_PARTITIONS + "start()\n")
            vmfiles = vm_files(RIG, POLLNET)
            vmfiles["/lib/board.py"] = (BOARDS_DIR / f"{MONO}.py").read_text()
            vmfiles["/lib/faultfs.py"] = FAULTFS
            vmfiles["/lib/romsim.py"] = ROMSIM
            steps = [SIM + NET, KIOSK, link, *LINK_STEPS]
            steps.insert(-1, f"print('PART', rom.parts[1][:{len(R2)}] == {R2!r})\n")
            modules = firmware_modules()
            result = mpvm.run(steps, modules, files=vmfiles, run_async=True, net=True, timeout=120)
        finally:
            host.close()
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.ok().splitlines()}
    assert lines["WAITING"] == "[] None 2 True"  # staged, not switched under the customer
    pointer = json.loads(lines["SWITCHED"].split(" ", 1)[1].rsplit(" ", 2)[0])
    assert (pointer["slot"], pointer["rom"], pointer["prev_rom"], pointer["trial"]) == (
        "a",
        1,
        None,
        True,
    )
    assert lines["PART"] == "True"  # the image, whole, in partition 1
    assert lines["CONFIRMED"].startswith("False ")
    assert host.invalid == []
    online = [s for s in host.statuses if s.get("state") == "online"]
    assert all(s["takes"] == "romfs" for s in online)
    assert host.chunks_sent == files[0].chunks()
    assert online[-1]["fw"] == VERSION and online[-1]["ota"]["state"] == "done"
