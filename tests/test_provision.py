"""`kiosk-host provision`: the kiosk's files, its broker account and ACL, and clear refusals."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from kiosk_host import __version__
from kiosk_host.shipped import BROKER_SETTINGS
from kiosk_host.wire.contract import Contract, Message
from tests.cli_run import run_cli
from tests.fleet_rig import WIFI, Client, broker_with, identity, make_ca, provision
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import board_buttons, board_stems

BROKER = "mqtt://broker.shop.example:1883"
SHIPPED_ACL = BROKER_SETTINGS / "acl"


def kiosk_host(*args: str) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGS`, in this process."""
    return run_cli(args)


def run(
    broker_dir: Path, out: Path, args: dict[str, str | None] | None = None, as_json: bool = False
) -> subprocess.CompletedProcess[str]:
    """Provision with the usual store, kiosk, board, Wi-Fi and broker but for `args` (an option
    given None is left out)."""
    given = {"--store": "store-12", "--device": "till-1", "--board": "m5stack_core",
             "--wifi-ssid": WIFI[0], "--wifi-pass": WIFI[1], "--broker": BROKER,
             "--out": str(out), "--broker-dir": str(broker_dir), **(args or {})}  # fmt: skip
    argv = [x for k, v in given.items() if v is not None for x in (k, v)]
    return kiosk_host("provision", *argv, *(["--json"] if as_json else []))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_kiosk_gets_its_identity_config_and_board(tmp_path: Path) -> None:
    out = tmp_path / "till-1"
    done = run(tmp_path / "broker", out, as_json=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["files"] == ["board.json", "config.json", "identity.json"]
    ident = identity(out)
    assert set(ident) == {"store", "device", "letter", "host", "port", "ssid", "key", "user",
                          "password", "fw", "ota_key"}  # fmt: skip
    assert (ident["store"], ident["device"], ident["letter"]) == ("store-12", "till-1", "A")
    assert (ident["host"], ident["port"]) == ("broker.shop.example", 1883)
    assert (ident["ssid"], ident["key"]) == WIFI
    assert ident["user"] == "store-12/till-1"  # what the ACL's %u patterns expect
    assert len(ident["password"]) >= 32
    assert ident["fw"] == __version__
    assert mode(out / "identity.json") == 0o600  # Wi-Fi key and broker password inside
    config = (out / "config.json").read_bytes()
    checked = Contract.load().validate("kiosk/v1/store-12/till-1/config", config)
    assert isinstance(checked, Message), checked
    assert checked.payload["scale"] == board_buttons("m5stack_core")  # a point per button
    assert checked.payload["low_threshold"] == 1
    assert checked.payload["station"] == "till-1"
    board = json.loads((out / "board.json").read_text())
    assert board == {
        "board": "m5stack_core", "name": "m5stack-core", "buttons": board_buttons("m5stack_core")
    }  # fmt: skip


def test_a_board_may_be_named_as_it_reports_itself(tmp_path: Path) -> None:
    done = run(tmp_path / "broker", tmp_path / "k", {"--board": "esp32-devkitc-ssd1306"})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "k" / "board.json").read_text())["board"] == (
        "esp32_devkitc_ssd1306"
    )
    config = json.loads((tmp_path / "k" / "config.json").read_text())
    assert (config["scale"], config["low_threshold"]) == (board_buttons("esp32_devkitc_ssd1306"), 2)


def test_a_tls_broker_puts_its_ca_beside_the_identity(tmp_path: Path) -> None:
    ca, _ = make_ca(tmp_path / "pki", "shop-ca")
    out = tmp_path / "till-1"
    tls: dict[str, str | None] = {"--broker": "mqtts://broker.shop.example", "--ca": str(ca)}
    done = run(tmp_path / "broker", out, tls, as_json=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == [
        "board.json", "ca.pem", "config.json", "identity.json"
    ]  # fmt: skip
    ident = identity(out)
    assert (ident["port"], ident["ca"]) == (8883, "ca.pem")
    assert (out / "ca.pem").read_bytes() == ca.read_bytes()


def test_the_broker_files_get_the_kiosk_the_aggregator_and_the_fleet(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    first = json.loads(run(broker_dir, tmp_path / "k1", as_json=True).stdout)
    assert first["aggregator"]["created"] is True
    assert first["fleet"] == {
        "user": "kiosk-fleet", "credentials": str(broker_dir / "fleet.json"), "created": True
    }  # fmt: skip
    assert json.loads((broker_dir / "fleet.json").read_text())["user"] == "kiosk-fleet"
    assert mode(broker_dir / "fleet.json") == 0o600
    creds = json.loads((broker_dir / "aggregator.json").read_text())
    assert creds["user"] == "kiosk-host"
    assert mode(broker_dir / "aggregator.json") == 0o600
    second = json.loads(run(broker_dir, tmp_path / "k2", {"--device": "till-2"}, True).stdout)
    assert second["aggregator"]["created"] is False  # one aggregator account, made once
    assert json.loads((broker_dir / "aggregator.json").read_text()) == creds

    passwd = (broker_dir / "passwd").read_text()
    users = [line.split(":", 1)[0] for line in passwd.splitlines()]
    assert users == ["kiosk-host", "kiosk-fleet", "store-12/till-1", "store-12/till-2"]
    for secret in (creds["password"], identity(tmp_path / "k1")["password"]):
        assert secret not in passwd  # hashes only
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd.splitlines())

    acl = (broker_dir / "acl").read_text()
    assert "pattern write kiosk/v1/%u/event" in acl
    assert "pattern read kiosk/v1/%u/cmd" in acl
    assert "user kiosk-host\ntopic readwrite kiosk/#" in acl
    # the fleet tools send configs and commands and read statuses: nothing of a kiosk's own
    fleet = acl.split("\nuser kiosk-fleet\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {"topic read kiosk/v1/+/+/status", "topic readwrite kiosk/v1/+/+/config",
            "topic write kiosk/v1/+/+/cmd"} <= set(fleet)  # fmt: skip
    assert all(line.startswith("topic ") and "event" not in line for line in fleet)
    shipped = SHIPPED_ACL.read_text().split("\nuser kiosk-fleet\n", 1)[1].split("\n\n", 1)[0]
    assert fleet == shipped.splitlines()  # as the shipped ACL gives them
    for device in ("till-1", "till-2"):
        assert f"user store-12/{device}\ntopic read kiosk/v1/store-12/cases\n" in acl
    assert acl.count("\nuser ") == 4  # no example kiosks of the shipped file


def test_letters_are_allocated_and_unique_within_a_store(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"

    def letter(
        device: str, args: dict[str, str | None] | None = None, store: str = "store-12"
    ) -> str:
        given: dict[str, str | None] = {"--store": store, "--device": device, **(args or {})}
        done = run(broker_dir, tmp_path / store / device, given)
        assert done.returncode == 0, done.stderr
        ident = identity(tmp_path / store / device)
        assert isinstance(ident["letter"], str)
        return ident["letter"]

    assert letter("till-1") == "A"
    assert letter("till-2", {"--letter": "d"}) == "D"
    assert letter("till-3") == "B"
    assert letter("till-1", store="store-34") == "A"  # another store has its own letters
    register = json.loads((broker_dir / "kiosks.json").read_text())["kiosks"]
    assert [(k["store"], k["device"], k["letter"]) for k in register] == [
        ("store-12", "till-1", "A"), ("store-12", "till-2", "D"), ("store-12", "till-3", "B"),
        ("store-34", "till-1", "A"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        ({"--board": "esp32"}, f"use one of {', '.join(board_stems())}"),
        ({"--store": "Store 12"}, "--store 'Store 12' is not an identifier: use 1 to 32"),
        ({"--device": "till_1"}, "--device 'till_1' is not an identifier: use 1 to 32"),
        ({"--letter": "I"}, "use one capital of ABCDEFGHJKMNPQRSTUVWXYZ"),
        ({"--letter": "AB"}, "use one capital of ABCDEFGHJKMNPQRSTUVWXYZ"),
        ({"--broker": "mqtts://broker.shop.example:8883"}, "mqtts:// needs --ca FILE"),
        ({"--broker": "http://broker:80"}, "use mqtt://HOST:PORT"),
        ({"--broker": "mqtt://u:p@broker:1883"}, "the kiosk gets an account of its own"),
        ({"--broker": "mqtt://broker:99999"}, "has a bad port: use a number"),
        ({"--ca": "/nonexistent/ca.pem"}, "--ca is for a TLS broker"),
        ({"--wifi-pass": "short"}, "--wifi-pass must be 8 to 63 characters"),
        ({"--wifi-ssid": ""}, "--wifi-ssid must be the network's name"),
        ({"--broker": None}, "provisioning a kiosk needs --broker"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(
    tmp_path: Path, args: dict[str, str | None], fix: str
) -> None:
    done = run(tmp_path / "broker", tmp_path / "k", args)
    assert done.returncode == 2
    assert fix in done.stderr, done.stderr
    assert done.stderr.startswith("kiosk-host: ")  # a sentence, not a traceback
    assert not (tmp_path / "k").exists()
    assert not (tmp_path / "broker" / "passwd").exists()  # nothing half done


def test_a_ca_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    done = run(
        tmp_path / "broker", tmp_path / "k", {"--broker": "mqtts://b:8883", "--ca": str(bad)}
    )
    assert done.returncode == 2
    assert f"--ca {bad}: not a readable PEM CA certificate" in done.stderr
    assert "give the CA's .pem file" in done.stderr


def test_a_duplicate_kiosk_or_a_taken_letter_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    broker_dir = tmp_path / "broker"
    assert run(broker_dir, tmp_path / "k1").returncode == 0
    assert run(broker_dir, tmp_path / "k2", {"--device": "till-2", "--letter": "C"}).returncode == 0
    before = {p.name: p.read_bytes() for p in broker_dir.iterdir()}

    again = run(broker_dir, tmp_path / "other")
    assert again.returncode == 2
    assert "kiosk till-1 is already provisioned in store store-12" in again.stderr
    assert "give the new kiosk another --device" in again.stderr

    taken = run(broker_dir, tmp_path / "k3", {"--device": "till-3", "--letter": "C"})
    assert taken.returncode == 2
    assert "letter C is taken in store store-12 by till-2: choose one of B D E" in taken.stderr
    assert "or leave --letter out" in taken.stderr

    reused = run(broker_dir, tmp_path / "k1", {"--device": "till-4"})
    assert reused.returncode == 2
    assert f"{tmp_path / 'k1'} already holds a provisioned kiosk" in reused.stderr
    assert {p.name: p.read_bytes() for p in broker_dir.iterdir()} == before
    assert not (tmp_path / "other").exists() and not (tmp_path / "k3").exists()


def test_a_full_store_is_refused(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    kiosks = [{"store": "store-12", "device": f"k-{c.lower()}", "letter": c, "board": "x",
               "provisioned": 0} for c in "ABCDEFGHJKMNPQRSTUVWXYZ"]  # fmt: skip
    (broker_dir / "kiosks.json").write_text(json.dumps({"v": 1, "kiosks": kiosks}))
    done = run(broker_dir, tmp_path / "k")
    assert done.returncode == 2
    assert "store store-12 has 23 kiosks and every letter is taken" in done.stderr
    assert "remove a kiosk from store-12 first" in done.stderr


def test_no_secret_is_printed(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    ca, _ = make_ca(tmp_path / "pki", "shop-ca")
    text = run(broker_dir, tmp_path / "k1", {"--broker": "mqtts://b:8883", "--ca": str(ca)})
    as_json = run(broker_dir, tmp_path / "k2", {"--device": "till-2"}, as_json=True)
    refused = run(broker_dir, tmp_path / "k3", {"--device": "till-2"})
    aggregator = kiosk_host("provision", "--aggregator", "--broker-dir", str(broker_dir))
    secrets = [WIFI[1], json.loads((broker_dir / "aggregator.json").read_text())["password"]]
    secrets += [identity(tmp_path / k)["password"] for k in ("k1", "k2")]
    said = "".join(r.stdout + r.stderr for r in (text, as_json, refused, aggregator))
    assert "provisioned store-12/till-1" in said and '"user": "store-12/till-2"' in said
    for secret in secrets:
        assert secret not in said


def test_the_aggregator_account_alone(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    made = kiosk_host("provision", "--aggregator", "--broker-dir", str(broker_dir), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["created"] is True
    again = kiosk_host("provision", "--aggregator", "--broker-dir", str(broker_dir))
    assert again.returncode == 0
    assert "aggregator account kiosk-host already there" in again.stdout
    assert f"its password is in {broker_dir / 'aggregator.json'}" in again.stdout
    assert (broker_dir / "acl").exists()


def test_more_aggregators_and_the_fleet_get_accounts_of_their_own(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    made = kiosk_host("provision", "--aggregator", "--name", "east", "--broker-dir",
                      str(broker_dir), "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer == {"user": "kiosk-host-east", "created": True,
                      "credentials": str(broker_dir / "aggregator-east.json")}  # fmt: skip
    creds = json.loads((broker_dir / "aggregator-east.json").read_text())
    assert creds["user"] == "kiosk-host-east" and mode(broker_dir / "aggregator-east.json") == 0o600
    acl = (broker_dir / "acl").read_text()
    assert "user kiosk-host-east\ntopic readwrite kiosk/#\ntopic read $SYS/#\n" in acl
    again = kiosk_host("provision", "--aggregator", "--name", "east", "--broker-dir",
                       str(broker_dir))  # fmt: skip
    assert "aggregator account kiosk-host-east already there" in again.stdout
    assert (broker_dir / "acl").read_text() == acl  # its lines once
    fleet = kiosk_host("provision", "--fleet", "--broker-dir", str(broker_dir), "--json")
    assert fleet.returncode == 0, fleet.stderr
    assert json.loads(fleet.stdout)["user"] == "kiosk-fleet"
    assert (broker_dir / "acl").read_text().count("\nuser kiosk-fleet\n") == 1
    for wrong, why in (
        (["--name", "east"], "--name names another aggregator's account: give --aggregator"),
        (["--aggregator", "--name", "East"], "is not an identifier"),
        (["--aggregator", "--name", "a" * 30], "--name (with kiosk-host- before it)"),
        (["--aggregator", "--fleet"], "one account at a time"),
    ):
        refused = kiosk_host("provision", *wrong, "--broker-dir", str(broker_dir))
        assert refused.returncode == 2 and why in refused.stderr, (wrong, refused.stderr)


def test_a_broker_on_the_provisioned_files_lets_in_the_kiosk_and_not_a_removed_one(
    tmp_path: Path,
) -> None:
    broker_dir = tmp_path / "broker"
    provision(broker_dir, tmp_path / "k1", "store-12", "till-1", BROKER)
    password = identity(tmp_path / "k1")["password"]
    with broker_with(tmp_path / "mosquitto", broker_dir) as broker:
        kiosk = Client(broker.port, "k1", "store-12/till-1", password)
        assert kiosk.refused is None
        kiosk.close()
        wrong = Client(broker.port, "k1", "store-12/till-1", password + "x")
        assert wrong.refused == "Not authorized"
        removed = kiosk_host("provision", "--remove", "--store", "store-12", "--device", "till-1",
                             "--broker-dir", str(broker_dir))  # fmt: skip
        assert removed.returncode == 0, removed.stderr
        assert "user store-12/till-1" not in (broker_dir / "acl").read_text()
        assert json.loads((broker_dir / "kiosks.json").read_text())["kiosks"] == []
        broker.reload()

        # the broker reads the files again at SIGHUP; a new connection then finds it gone
        def refused() -> bool:
            c = Client(broker.port, "k1-again", "store-12/till-1", password)
            c.close()
            return c.refused == "Not authorized"

        wait_until(refused, 10, "the removed kiosk to be refused")
    # the letter is free again, and so is the device name
    again = provision(broker_dir, tmp_path / "k1b", "store-12", "till-1", BROKER)
    assert again["letter"] == "A"
