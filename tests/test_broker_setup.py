"""`kiosk-host broker init`: a runnable mosquitto beside the accounts, reloaded by provisioning."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path

from kiosk_host.demo.broker import accepts
from tests.broker import free_port, shipped_settings
from tests.fleet_rig import (
    WIFI,
    Client,
    broker_pid,
    identity,
    kiosk_host,
    open_folder,
    stop_broker,
)
from tests.virtual_kiosks import wait_until

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")


def settings(conf: Path) -> list[tuple[str, str]]:
    found = []
    for line in conf.read_text().splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            found.append((words[0], words[1] if len(words) > 1 else ""))
    return found


def init(broker_dir: Path, port: int) -> list[str]:
    done = kiosk_host("broker", "init", "--dir", str(broker_dir), "--port", str(port))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def start(command: str) -> None:
    """The start command `broker init` printed, run as printed."""
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def provision_kiosk(broker_dir: Path, devices: Path, device: str, port: int) -> list[str]:
    done = kiosk_host(
        "provision", "--store", "store-12", "--device", device, "--board", "m5stack_core",
        "--wifi-ssid", WIFI[0], "--wifi-pass", WIFI[1], "--broker", f"mqtt://127.0.0.1:{port}",
        "--out", str(devices / device), "--broker-dir", str(broker_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_init_writes_the_shipped_settings_placed_in_the_broker_folder() -> None:
    with open_folder("kiosk-broker-") as folder:
        broker_dir = folder / "broker"
        said = init(broker_dir, 18990)
        conf = broker_dir / "mosquitto.conf"
        assert said[-1] == f"start the broker with: {MOSQUITTO} -c {conf} -d"
        made = settings(conf)
        own = dict(made)
        assert own["password_file"] == f"{broker_dir}/passwd"
        assert own["acl_file"] == f"{broker_dir}/acl"
        assert own["allow_anonymous"] == "false"
        state = broker_dir / "state"
        assert own["persistence_location"] == f"{state}/"
        assert own["pid_file"] == f"{state}/mosquitto.pid"
        logs = [v for k, v in made if k == "log_dest"]
        assert logs[0] == f"file {state}/mosquitto.log" and "syslog" not in logs
        # every queue, session and persistence setting as shipped; the listener last, with
        # the client ids bound to the accounts
        shipped = shipped_settings()
        for key in ("max_queued_messages", "max_inflight_messages", "persistence",
                    "persistent_client_expiration", "max_packet_size"):  # fmt: skip
            assert own[key] == shipped[key][0], key
        at = made.index(("listener", "18990"))
        assert made[at:] == [("listener", "18990"), ("use_username_as_clientid", "true")]
        assert [k for k, _ in made].count("listener") == 1
        # the accounts the broker needs to be of use: the aggregator's and the fleet tools'
        users = [line.split(":", 1)[0] for line in (broker_dir / "passwd").read_text().split()]
        assert users == ["kiosk-host", "kiosk-fleet"]
        # run by root, mosquitto becomes `mosquitto` before it reads the accounts; run by
        # anyone else, it stays them
        owner = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid()
        for path in (broker_dir / "passwd", broker_dir / "acl", state):
            assert path.stat().st_uid == owner, path
        assert own.get("user") == ("mosquitto" if os.geteuid() == 0 else None)
        again = init(broker_dir, 18990)  # again: the same settings, the accounts kept
        assert "kiosk-host already there" in "\n".join(again)
        assert settings(conf) == made


def test_init_in_a_folder_the_broker_cannot_enter_says_what_to_do(tmp_path: Path) -> None:
    """pytest's temporary folders are private to their user: as root, mosquitto (which runs
    as `mosquitto`) could not read the accounts there, so init refuses; as anyone else the
    broker stays that user, who may."""
    private = tmp_path / "broker"
    done = kiosk_host("broker", "init", "--dir", str(private), "--port", "18991")
    if os.geteuid() == 0:
        assert done.returncode == 2
        assert done.stderr.startswith("kiosk-host: mosquitto, started as root, runs as mosquitto")
        assert "give --dir a folder it can reach" in done.stderr
        assert not (private / "passwd").exists()  # nothing half done
    else:
        assert done.returncode == 0, done.stderr
        assert (private / "mosquitto.conf").is_file()


def test_provisioning_reloads_the_running_broker_so_accounts_come_and_go_without_a_restart() -> (
    None
):
    with open_folder("kiosk-broker-") as folder:
        broker_dir, port = folder / "broker", free_port()
        start(init(broker_dir, port)[-1].removeprefix("start the broker with: "))
        wait_until(lambda: accepts(port), 10, "the broker to listen")
        pid = broker_pid(broker_dir / "state" / "mosquitto.pid")
        assert pid is not None

        said = provision_kiosk(broker_dir, folder / "devices", "till-1", port)
        assert said[-1] == f"broker reloaded (pid {pid}): it reads the accounts again"
        password = identity(folder / "devices" / "till-1")["password"]

        def refused() -> str | None:
            client = Client(port, "k", "store-12/till-1", password)
            client.close()
            return client.refused

        wait_until(lambda: refused() is None, 10, "the new kiosk to be let in")
        removed = kiosk_host("provision", "--remove", "--store", "store-12", "--device", "till-1",
                             "--broker-dir", str(broker_dir))  # fmt: skip
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout.splitlines()[-1] == (
            f"broker reloaded (pid {pid}): it reads the accounts again"
        )
        wait_until(lambda: refused() == "Not authorized", 10, "the removed kiosk refused")
        # as root, the files provisioning rewrote are still the broker user's to read
        owner = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid()
        assert (broker_dir / "passwd").stat().st_uid == owner
        assert broker_pid(broker_dir / "state" / "mosquitto.pid") == pid  # never restarted


def test_without_a_running_broker_provisioning_says_how_to_start_it() -> None:
    with open_folder("kiosk-broker-") as folder:
        broker_dir, port = folder / "broker", free_port()
        start_line = init(broker_dir, port)[-1]
        said = provision_kiosk(broker_dir, folder / "devices", "till-1", port)
        assert said[-1] == f"no running broker: start it with {MOSQUITTO} -c " + (
            f"{broker_dir / 'mosquitto.conf'} -d"
        )
        assert start_line.endswith(said[-1].removeprefix("no running broker: start it with "))
        # a broker that stopped leaves no pid file behind, and is not taken for running
        start(start_line.removeprefix("start the broker with: "))
        wait_until(lambda: accepts(port), 10, "the broker to listen")
        stop_broker(broker_dir / "state" / "mosquitto.pid")
        again = provision_kiosk(broker_dir, folder / "devices", "till-2", port)
        assert again[-1].startswith("no running broker: start it with ")
        # a folder without the broker's settings: the operator reloads their own broker
        other = provision_kiosk(folder / "other", folder / "devices", "till-3", port)
        assert other[-1].startswith(f"no broker settings in {folder / 'other'}: reload your ")
