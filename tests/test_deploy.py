"""`kiosk-host deploy` and `make deploy` with the real mpremote, to a kiosk on a pseudo-terminal.

The kiosk is the serial kiosk: MicroPython's VM behind socat, with a folder as its flash. It
is provisioned by `kiosk-host provision`, and its broker is a mosquitto that lets in exactly
the accounts provisioning wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kiosk_host import __version__
from kiosk_host.fleet.deploy import Options, deploy
from kiosk_host.fleet.deploy_errors import FlashFull
from kiosk_host.fleet.device_scripts import DEVICE_MAIN, FLAG
from kiosk_host.fleet.firmware_image import (
    Build,
    device_files,
    firmware_romfs,
    firmware_version,
    load_provisioning,
)
from kiosk_host.fleet.mpremote import Mpremote, copy_files, kb
from kiosk_host.sim.serial_kiosk import ROMFS_FILE, SerialKiosk, romfs_partition
from tests.broker import Mosquitto, free_port
from tests.vm.mpvm import ROOT

KIOSK_HOST = ROOT / ".venv" / "bin" / "kiosk-host"
MPREMOTE = ROOT / ".venv" / "bin" / "mpremote"
BUILD = ROOT / "build"
WIFI_KEY = "shop-floor-key-42"
BOARD = "esp32_devkitc_ssd1306"
IDLE_S = 60.0  # a kiosk's boot to its idle screen, on a loaded two-core machine


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """A command as a person types it, in the checkout; bounded."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=timeout,
        check=False,
    )


def provision(tmp: Path, broker_port: int, device: str = "till-1") -> Path:
    """`kiosk-host provision` of one kiosk; the folder with its files."""
    out = tmp / "devices" / "store-12" / device
    done = run(
        str(KIOSK_HOST), "provision", "--store", "store-12", "--device", device,
        "--board", BOARD, "--wifi-ssid", "shop", "--wifi-pass", WIFI_KEY,
        "--broker", f"mqtt://127.0.0.1:{broker_port}", "--out", str(out),
        "--broker-dir", str(tmp / "broker"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def secrets_of(devdir: Path) -> list[str]:
    ident = json.loads((devdir / "identity.json").read_text())
    return [ident["key"], ident["password"]]


def fleet_url(tmp: Path, port: int) -> str:
    """The fleet tools' account: deploy's status watch may not take the aggregator's session."""
    creds = json.loads((tmp / "broker" / "fleet.json").read_text())
    return f"mqtt://{creds['user']}:{creds['password']}@127.0.0.1:{port}"


def first_copy(devdir: Path) -> int:
    """How many files a first deployment copies, counted from the build and provisioning:
    every compiled firmware module, the board (as board.mpy), config.json, identity.json
    and the CA certificate it names if any, and the start, main.py."""
    modules = sorted((BUILD / "firmware").glob("*.mpy"))
    assert modules, "build/firmware is empty"
    ident = json.loads((devdir / "identity.json").read_text())
    provisioned = ["config.json", "identity.json", *([ident["ca"]] if ident.get("ca") else [])]
    assert all((devdir / name).is_file() for name in provisioned)
    return len(modules) + len(["board.mpy", *provisioned, "main.py"])


def deploy_cli(
    port: str, devdir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run(
        str(KIOSK_HOST), "deploy", "--port", port, "--device", devdir.name, "--dir", str(devdir),
        *extra, env=env,
    )  # fmt: skip


def idle_after(kiosk: SerialKiosk, mark: int) -> str:
    return kiosk.wait_line(lambda line: line.startswith("SCREEN idle:"), IDLE_S, after=mark)


@contextmanager
def other_end(tmp: Path, program: str) -> Iterator[str]:
    """A pseudo-terminal whose other end is `program` (not MicroPython); its path."""
    link = tmp / "other-tty"
    proc = subprocess.Popen(
        ["socat", f"PTY,link={link},raw,echo=0", f"EXEC:{program}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not link.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.exists(), "socat made no pseudo-terminal"
        yield str(link)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def kiosk_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the serial kiosk's flash, the provisioned files) for a kiosk whose broker is down."""
    yield tmp_path / "flash", provision(tmp_path, free_port())


def device_path(flash: Path, path: str) -> Path:
    return flash / path.lstrip("/")


# -- the whole round ---------------------------------------------------------------------------


@pytest.mark.slow
def test_deploy_puts_the_firmware_on_the_kiosk_which_comes_online_and_a_rerun_copies_nothing(
    tmp_path: Path, built_firmware: None
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", auth_dir=tmp_path / "broker")
    devdir = provision(tmp_path, broker.port)
    every = first_copy(devdir)
    flash = tmp_path / "flash"
    env = {"KIOSK_BROKER": fleet_url(tmp_path, broker.port)}  # not in the argument list
    with broker, SerialKiosk(flash) as kiosk:
        mark = kiosk.mark()
        done = deploy_cli(kiosk.port, devdir, env=env)
        printed = done.stdout + done.stderr
        assert done.returncode == 0, printed
        version = firmware_version()
        verdict = done.stdout.strip().splitlines()[-1]
        assert verdict.startswith(f"deployed till-1 (store-12): online with firmware {version}")
        assert f"{every} files copied" in verdict, verdict
        assert f"copying [1/{every}] lib/" in done.stdout  # progress while copying
        for secret in secrets_of(devdir):
            assert secret not in printed
            assert all(secret not in line for line in kiosk.lines)

        # The flash holds the build, the board as board.mpy, the config, the identity with
        # the build's version, and the start; the deployment's flag is gone.
        for mpy in sorted((BUILD / "firmware").glob("*.mpy")):
            assert (flash / "lib" / mpy.name).read_bytes() == mpy.read_bytes()
        board = (BUILD / "boards" / f"{BOARD}.mpy").read_bytes()
        assert (flash / "lib" / "board.mpy").read_bytes() == board
        assert (flash / "config.json").read_bytes() == (devdir / "config.json").read_bytes()
        provisioned = json.loads((devdir / "identity.json").read_text())
        assert json.loads((flash / "identity.json").read_text()) == {**provisioned, "fw": version}
        assert version.startswith(__version__ + "+")
        assert (flash / "main.py").read_text() == DEVICE_MAIN
        assert not device_path(flash, FLAG).exists()
        assert idle_after(kiosk, mark) == "SCREEN idle: How did we do today?"

        # Again: nothing differs, so nothing is copied, and the kiosk comes back online.
        lines: list[str] = []
        again = deploy(
            Options(
                kiosk.port, "till-1", directory=devdir, broker=env["KIOSK_BROKER"], build=False
            ),
            out=lines.append,
        )
        assert again.copied == [] and again.removed == []
        assert len(again.unchanged) == every
        assert again.online is True and again.status is not None
        assert again.status["fw"] == version and again.status["board"] == "esp32-devkitc-ssd1306"
        assert not any("copying" in line for line in lines)

        # A changed setting travels alone, and the kiosk shows it; a module the firmware
        # no longer has goes.
        config = json.loads((devdir / "config.json").read_text())
        config["prompt"] = "Were we quick enough?"
        (devdir / "config.json").write_text(json.dumps(config))
        (flash / "lib" / "retired.mpy").write_bytes(b"M\x06")
        mark = kiosk.mark()
        changed = deploy(
            Options(
                kiosk.port, "till-1", directory=devdir, broker=env["KIOSK_BROKER"], build=False
            ),
            out=lines.append,
        )
        assert changed.copied == ["/config.json"] and changed.online is True
        assert changed.removed == ["/lib/retired.mpy"]
        assert not (flash / "lib" / "retired.mpy").exists()
        assert kiosk.wait_line(
            lambda line: line == "SCREEN idle: Were we quick enough?", IDLE_S, after=mark
        )


@pytest.mark.slow
def test_make_deploy_builds_and_deploys_and_says_when_no_broker_can_confirm(
    kiosk_dirs: tuple[Path, Path],
) -> None:
    flash, devdir = kiosk_dirs
    with SerialKiosk(flash) as kiosk:
        mark = kiosk.mark()
        done = run("make", "--no-print-directory", "deploy", f"PORT={kiosk.port}",
                   "DEVICE=till-1", f"DEVICE_DIR={devdir}")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        verdict = done.stdout.strip().splitlines()[-1]
        every = first_copy(devdir)  # counted from the build that `make deploy` made
        assert verdict.startswith(f"deployed till-1 (store-12): {every} files copied"), verdict
        code = sum(p.stat().st_size for p in (BUILD / "firmware").glob("*.mpy"))
        assert (
            "till-1 (store-12): this kiosk's MicroPython has no ROMFS partition, so the firmware "
            f"goes to /lib and is loaded into RAM when it runs ({kb(code)} of .mpy code in the "
            "heap); a MicroPython built with ROMFS keeps it in flash"
        ) in done.stdout
        assert "not confirmed online: no broker reachable at 127.0.0.1:" in verdict
        assert (flash / "lib" / "main.mpy").exists() and (flash / "main.py").exists()
        idle_after(kiosk, mark)


@pytest.mark.slow
def test_the_watchdog_restarts_an_interrupted_kiosk_which_is_why_deploy_stops_it_first(
    kiosk_dirs: tuple[Path, Path], built_firmware: None
) -> None:
    flash, devdir = kiosk_dirs
    with SerialKiosk(flash) as kiosk:
        assert deploy_cli(kiosk.port, devdir, "--no-build").returncode == 0
        idle_after(kiosk, 0)
        mark = kiosk.mark()
        # mpremote interrupts the kiosk's main loop; its watchdog keeps counting, as on the
        # ESP32, and restarts it 8 s later
        done = run(str(MPREMOTE), "connect", kiosk.port, "exec", "print('hello')", timeout=60)
        assert done.stdout.strip() == "hello", done.stderr
        assert kiosk.wait_line(lambda line: line == "RESET watchdog", 30, after=mark)
        idle_after(kiosk, mark)


@pytest.mark.slow
def test_deploy_sees_the_kiosk_online_with_the_fleet_account_and_refuses_to_swap_a_board(
    tmp_path: Path, built_firmware: None
) -> None:
    """Nothing says which account may read the kiosk's status: deploy takes the fleet tools'
    from the broker folder (the kiosk's own may not). A board that holds another kiosk is left
    as it was unless --replace says otherwise."""
    broker = Mosquitto(tmp_path / "mosquitto", auth_dir=tmp_path / "broker")
    till_1 = provision(tmp_path, broker.port, "till-1")
    till_2 = provision(tmp_path, broker.port, "till-2")
    flash = tmp_path / "flash"
    unset = {"KIOSK_BROKER": "", "KIOSK_BROKER_PASSWORD": ""}
    folder = ("--broker-dir", str(tmp_path / "broker"))
    with broker, SerialKiosk(flash) as kiosk:
        first = deploy_cli(kiosk.port, till_1, "--no-build", *folder, env=unset)
        assert first.returncode == 0, first.stdout + first.stderr
        version = firmware_version()
        assert first.stdout.splitlines()[-1].startswith(
            f"deployed till-1 (store-12): online with firmware {version}"
        )
        held = (flash / "identity.json").read_bytes()

        mark = kiosk.mark()
        swap = deploy_cli(kiosk.port, till_2, "--no-build", *folder, env=unset)
        assert swap.returncode == 2, swap.stdout
        assert swap.stderr == (
            "kiosk-host: the board holds store-12/till-1; pass --replace to flash till-2 over it\n"
        )
        assert (flash / "identity.json").read_bytes() == held  # nothing copied
        assert not device_path(flash, FLAG).exists()  # not left stopped: it is till-1 again
        idle_after(kiosk, mark)

        replaced = deploy_cli(kiosk.port, till_2, "--no-build", "--replace", *folder, env=unset)
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        assert "till-2 (store-12): replacing store-12/till-1 on this board (--replace)" in (
            replaced.stdout
        )
        assert replaced.stdout.splitlines()[-1].startswith(
            f"deployed till-2 (store-12): online with firmware {version}"
        )
        on_board = json.loads((flash / "identity.json").read_text())
        assert (on_board["store"], on_board["device"]) == ("store-12", "till-2")
        fleet_password = json.loads((tmp_path / "broker" / "fleet.json").read_text())["password"]
        for secret in [*secrets_of(till_1), *secrets_of(till_2), fleet_password]:
            assert secret not in first.stdout + swap.stdout + swap.stderr + replaced.stdout


# -- the firmware in a ROMFS partition -----------------------------------------------------------


def flash_files(flash: Path) -> dict[str, bytes]:
    """Every file in the serial kiosk's flash folder (its ROMFS partition among them)."""
    return {
        p.relative_to(flash).as_posix(): p.read_bytes() for p in flash.rglob("*") if p.is_file()
    }


def test_the_firmware_romfs_image_is_what_mpremote_makes_of_the_build(
    tmp_path: Path, built_firmware: None
) -> None:
    out = tmp_path / "firmware.romfs"
    done = run(str(MPREMOTE), "romfs", "--no-mpy", "-o", str(out), "build", str(BUILD / "firmware"))
    assert done.returncode == 0, done.stderr
    image = firmware_romfs()
    assert image == out.read_bytes() and image == firmware_romfs()
    assert image.startswith(b"\xd2\xcd\x31")  # ROMFS's header


@pytest.mark.slow
def test_deploy_to_a_kiosk_whose_romfs_holds_the_firmware_leaves_only_the_board_in_lib(
    tmp_path: Path, built_firmware: None
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", auth_dir=tmp_path / "broker")
    devdir = provision(tmp_path, broker.port)
    flash = tmp_path / "flash"
    image = firmware_romfs()
    romfs_partition(flash, image)
    # An earlier deployment to a MicroPython without ROMFS left the firmware in /lib.
    (flash / "lib").mkdir()
    old = sorted((BUILD / "firmware").glob("*.mpy"))
    for mpy in old:
        (flash / "lib" / mpy.name).write_bytes(mpy.read_bytes())
    # And an update received over the air, rolled back once: what is deployed runs instead.
    (flash / "fw" / "a").mkdir(parents=True)
    pointer = {"slot": "a", "version": "0.0.1+ota", "id": "r1", "trial": False, "boots": 0}
    (flash / "fw" / "current").write_text(json.dumps({**pointer, "up_ms": 0, "prev": None}))
    (flash / "fw" / "failed").write_text('{"id":"r0","version":"0.0.0","reason":"test"}')
    env = {"KIOSK_BROKER": fleet_url(tmp_path, broker.port)}
    with broker, SerialKiosk(flash) as kiosk:
        mark = kiosk.mark()
        done = deploy_cli(kiosk.port, devdir, "--no-build", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        version = firmware_version()
        verdict = done.stdout.strip().splitlines()[-1]
        assert verdict.startswith(f"deployed till-1 (store-12): online with firmware {version}")
        assert f"{len(old)} removed, the firmware in ROMFS (unchanged)" in verdict, verdict
        assert f"its ROMFS partition holds this firmware already ({kb(len(image))})" in done.stdout
        assert "no ROMFS partition" not in done.stdout
        assert "  removing lib/main.mpy (no longer in the firmware)" in done.stdout
        # The kiosk came online from /rom: /lib holds the board alone.
        assert sorted(p.name for p in (flash / "lib").iterdir()) == ["board.mpy"]
        assert sorted(p.name for p in (flash / "fw").iterdir()) == ["a"]  # the pointer went
        assert (flash / ROMFS_FILE).read_bytes() == image
        assert (flash / "main.py").read_text() == DEVICE_MAIN
        assert json.loads((flash / "identity.json").read_text())["fw"] == version
        assert idle_after(kiosk, mark) == "SCREEN idle: How did we do today?"


@pytest.mark.slow
def test_deploy_to_a_romfs_partition_that_is_too_small_or_cannot_be_written_leaves_the_kiosk(
    tmp_path: Path, kiosk_dirs: tuple[Path, Path], built_firmware: None
) -> None:
    """This VM's partition is read-only: deploy tries to write it, and reads back that it
    could not. A partition too small for the image is refused before the attempt."""
    flash, devdir = kiosk_dirs
    other = tmp_path / "other"
    other.mkdir()
    (other / "old.mpy").write_bytes(b"M\x06\x00\x1f")
    old_image = firmware_romfs(Build(other, other, "mpy-cross", "compile it"))
    image = firmware_romfs()
    romfs_partition(flash, old_image)
    (flash / "lib").mkdir(parents=True)
    (flash / "lib" / "app.mpy").write_bytes((BUILD / "firmware" / "app.mpy").read_bytes())
    (flash / "note.txt").write_text("kept")
    before = flash_files(flash)
    with SerialKiosk(flash) as kiosk:
        small = deploy_cli(kiosk.port, devdir, "--no-build")
    assert small.returncode == 2, small.stdout
    assert small.stderr.startswith(
        f"kiosk-host: the firmware's ROMFS image ({len(image)} bytes) is larger than the "
        f"kiosk's ROMFS partition 0 ({len(old_image)} bytes)"
    )
    assert flash_files(flash) == before  # not even the deployment's flag is left

    romfs_partition(flash, old_image, size=len(image) + 4096)
    before = flash_files(flash)
    with SerialKiosk(flash) as kiosk:
        done = deploy_cli(kiosk.port, devdir, "--no-build")
    assert done.returncode == 2, done.stdout
    assert "its ROMFS partition 0 (" in done.stdout and "holds another image" in done.stdout
    assert f"  writing the ROMFS image into partition 0 ({kb(len(image))})" in done.stdout
    assert done.stderr.startswith(
        "kiosk-host: the kiosk's ROMFS partition 0 could not be written"
    ), done.stderr
    assert "the kiosk runs as before" in done.stderr
    assert "copying" not in done.stdout
    assert flash_files(flash) == before


# -- refusals: each says what to do ------------------------------------------------------------


def test_a_missing_port_is_refused_with_what_to_do(kiosk_dirs: tuple[Path, Path]) -> None:
    _, devdir = kiosk_dirs
    done = deploy_cli("/dev/ttyUSB-not-there", devdir, "--no-build")
    assert done.returncode == 2
    assert "there is no serial port /dev/ttyUSB-not-there" in done.stderr
    assert "plug the kiosk in by USB" in done.stderr and "mpremote connect list" in done.stderr


@pytest.mark.slow  # each waits out the probe's 5 s for an answer
@pytest.mark.parametrize(
    ("program", "seen"),
    [("cat", "what came back is not MicroPython's raw REPL"), ("sleep 600", "nothing came back")],
)
def test_a_port_without_micropython_is_refused_with_what_to_do(
    tmp_path: Path, kiosk_dirs: tuple[Path, Path], built_firmware: None, program: str, seen: str
) -> None:
    _, devdir = kiosk_dirs
    with other_end(tmp_path, program) as port:
        done = deploy_cli(port, devdir, "--no-build")
    assert done.returncode == 2
    assert f"{port} does not answer as MicroPython ({seen}" in done.stderr
    assert "no serial monitor" in done.stderr and "esptool.py" in done.stderr


def test_missing_provisioning_is_refused_with_the_command_that_makes_it(
    tmp_path: Path, built_firmware: None
) -> None:
    done = deploy_cli("/dev/ttyUSB0", tmp_path / "nothing-here", "--no-build")
    assert done.returncode == 2
    assert "has no identity.json, config.json, board.json" in done.stderr
    assert "kiosk-host provision --store STORE --device nothing-here" in done.stderr


@pytest.mark.e2e  # deploy's processes: mpremote on a serial kiosk
def test_a_full_flash_is_refused_before_anything_is_copied(
    kiosk_dirs: tuple[Path, Path], built_firmware: None
) -> None:
    flash, devdir = kiosk_dirs
    with SerialKiosk(flash, flash_kb=64) as kiosk:
        done = deploy_cli(kiosk.port, devdir, "--no-build")
    assert done.returncode == 2
    assert "the kiosk's flash is full: this deployment needs" in done.stderr
    assert "Remove files the kiosk does not need" in done.stderr
    assert "erase the flash" in done.stderr
    assert not (flash / "lib").exists()  # nothing half-copied
    assert device_path(flash, FLAG).exists()  # the kiosk stays stopped until a deployment


@pytest.mark.e2e  # deploy's processes: mpremote on a serial kiosk
def test_a_flash_that_fills_up_while_copying_says_so(
    kiosk_dirs: tuple[Path, Path], built_firmware: None, tmp_path: Path
) -> None:
    flash, devdir = kiosk_dirs
    stage = tmp_path / "stage"
    stage.mkdir()
    files = device_files(load_provisioning(devdir, "till-1"), firmware_version(), stage)
    with SerialKiosk(flash, flash_kb=64) as kiosk:
        mp = Mpremote(kiosk.port, str(MPREMOTE), secrets_of(devdir))
        with pytest.raises(FlashFull) as refused:
            copy_files(mp, files, [], True, lambda line: None)
    message = str(refused.value)
    assert message.startswith("the kiosk's flash is full (while copying files)")
    assert "remove files the kiosk does not need" in message and "deploy again" in message


def test_the_serial_kiosk_keeps_what_mpremote_writes_across_restarts(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with SerialKiosk(flash) as kiosk:
        write = "f = open('/note.txt', 'w'); f.write('kept'); f.close()"
        done = run(str(MPREMOTE), "connect", kiosk.port, "exec", write, timeout=60)
        assert done.returncode == 0, done.stderr
        missing = run(str(MPREMOTE), "connect", kiosk.port, "fs", "cat", ":/nope", timeout=60)
        assert "No such file or directory" in missing.stderr  # errno 2, as mpremote expects
    assert (flash / "note.txt").read_text() == "kept"
    with SerialKiosk(flash) as kiosk:
        done = run(str(MPREMOTE), "connect", kiosk.port, "fs", "cat", ":/note.txt", timeout=60)
        assert done.stdout.strip().endswith("kept"), done.stderr


def test_serial_kiosk_command_prints_its_port_and_stops_cleanly(tmp_path: Path) -> None:
    link = tmp_path / "tty"
    proc = subprocess.Popen(
        [str(KIOSK_HOST), "serial-kiosk", "--fs", str(tmp_path / "flash"), "--link", str(link)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # bounded: the command gives up after 10 s
        assert first.startswith(f"serial kiosk on {link} (flash: {tmp_path / 'flash'}")
        done = run(str(MPREMOTE), "connect", str(link), "exec", "print(6 * 7)", timeout=60)
        assert done.stdout.strip() == "42", done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert not link.exists()
