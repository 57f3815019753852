"""The chain's deployment guide holds: its systemd units run a command the CLI takes, name only
files the guide says to create, and pass systemd's own check; its mosquitto settings share a
stream between two members of a group."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.cli.main import build_parser
from kiosk_host.cli.serve import share_group
from kiosk_host.storage import is_postgres
from tests.broker import RUNTIME_KEYS, SHIPPED_ACL, Mosquitto, shipped_settings
from tests.cli_run import _environment
from tests.fleet_rig import Client
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import ROOT

GUIDE = ROOT / "docs" / "deployment.md"
UNITS = ROOT / "deploy" / "systemd"
INSTANCE = "east"  # the instance the guide's paths are written for
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values, in order]}}; a line that is neither a section,
    a setting nor a comment fails the test."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and re.fullmatch(r"[A-Za-z]+", key), (path, number)
        current.setdefault(key, []).append(value)
    return sections


def env_file(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def guide_files() -> set[str]:
    """The first column of the guide's table of files to create."""
    text = GUIDE.read_text()
    section = text.split("### Files to create", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(/[^`]+)` \|", section, flags=re.M))


def units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def rendered(unit: Path, value: str) -> str:
    """A unit's value with its specifiers as systemd fills them for the guide's instance."""
    name = unit.name.replace("@.", f"@{INSTANCE}.")
    return value.replace("%i", INSTANCE).replace("%d", f"/run/credentials/{name}")


def test_the_guide_links_both_units_and_every_link_into_deploy_exists() -> None:
    names = [u.name for u in units()]
    assert names == ["kiosk-aggregator@.service", "kiosk-dashboard.service"]
    text = GUIDE.read_text()
    for link in re.findall(r"\]\((\.\./deploy/[^)]+)\)", text):
        assert (GUIDE.parent / link).resolve().exists(), link
    for name in names:
        assert f"deploy/systemd/{name}" in text


@pytest.mark.parametrize("unit", units(), ids=lambda u: u.name)
def test_a_unit_runs_a_command_the_cli_takes_as_its_service_user_hardened(
    unit: Path, tmp_path: Path
) -> None:
    settings = unit_settings(unit)
    assert set(settings) == {"Unit", "Service", "Install"}
    service = settings["Service"]
    assert "network-online.target" in settings["Unit"]["After"][0].split()
    assert "network-online.target" in settings["Unit"]["Wants"][0].split()
    assert service["Restart"] == ["always"]
    assert service["User"] == ["kiosk"] and service["Group"] == ["kiosk"]
    for key, value in HARDENING.items():
        assert service[key] == [value], key
    (start,) = service["ExecStart"]
    # every secret comes from a file: the environment file holds none, the credentials hold them
    env_path = Path(rendered(unit, service["EnvironmentFile"][0]))
    example = UNITS / ("aggregator.env.example" if "@" in unit.name else "dashboard.env.example")
    env = env_file(example)
    assert not [k for k in env if re.search("PASSWORD|TOKEN|SECRET", k)]
    assert all(":" not in v.partition("://")[2].partition("@")[0] for v in env.values())
    credentials = dict(v.split(":", 1) for v in service["LoadCredential"])
    assert "broker-password" in credentials and "pgpass" in credentials
    assert not re.search(r"--password(?!-file)|://[^/@\s]+:[^@\s]+@", start)
    # the command line, as systemd gives it to the program: ${VAR} from the environment file
    argv = shlex.split(rendered(unit, start))
    argv = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], a) for a in argv]
    assert argv[0] == "/opt/kiosk/venv/bin/kiosk-host"
    with _environment(env):  # --db and --stores default to $KIOSK_DB and $KIOSK_STORES
        args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.share == "chain" and is_postgres(args.db)
    share_group(args.share, args.db)  # what serve checks first: a group on PostgreSQL
    creds_dir = rendered(unit, "%d")
    assert args.password_file == f"{creds_dir}/broker-password"
    assert rendered(unit, service["Environment"][0]) == f"PGPASSFILE={creds_dir}/pgpass"
    if args.http is not None:
        assert args.http.startswith("127.0.0.1:")  # behind the reverse proxy only
        assert args.token_file == f"{creds_dir}/dashboard-token"
        assert credentials["dashboard-token"] == "/etc/kiosk/dashboard-token"
    # every file the unit names is one the guide says to create
    named = {argv[0], str(env_path), env["KIOSK_STORES"]}
    named |= {rendered(unit, source) for source in credentials.values()}
    assert named <= guide_files(), named - guide_files()
    # and systemd itself accepts the unit, with the program where this checkout has it
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        name = unit.name.replace("@.", f"@{INSTANCE}.")
        program = ROOT / ".venv" / "bin" / "kiosk-host"
        (tmp_path / name).write_text(unit.read_text().replace(argv[0], str(program)))
        done = subprocess.run(
            [analyze, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr


# -- the broker -------------------------------------------------------------------------------


def guide_mosquitto() -> dict[str, str]:
    """The mosquitto settings the guide gives for a chain (the block after its marker)."""
    text = GUIDE.read_text().split("<!-- chain-mosquitto -->", 1)[1]
    block = text.split("```", 2)[1]
    lines = [line.split(None, 1) for line in block.splitlines() if line.strip()]
    return {key: value for key, value in lines}


@pytest.fixture
def chain_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto with the guide's settings, the shipped ACL and the accounts of two
    aggregators and a kiosk."""
    users = {"kiosk-host": "pw-one", "kiosk-host-east": "pw-east", "store-12/till-1": "pw-till"}
    acl = SHIPPED_ACL.read_text() + "\nuser kiosk-host-east\ntopic readwrite kiosk/#\n"
    settings = {k: v for k, v in guide_mosquitto().items() if k not in RUNTIME_KEYS}
    broker = Mosquitto(tmp_path / "broker", users=users, acl=acl, settings=settings)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def test_the_guides_mosquitto_settings_are_the_shipped_ones() -> None:
    guide, shipped = guide_mosquitto(), shipped_settings()
    assert {"persistence", "persistent_client_expiration", "max_queued_messages"} <= set(guide)
    for key, value in guide.items():
        assert value in shipped[key], (key, value, shipped.get(key))


def test_two_members_of_a_group_share_a_stream_and_a_member_away_gets_its_turn_on_return(
    chain_broker: Mosquitto, closing: Callable[[Any], Any]
) -> None:
    port, stream = chain_broker.port, "$share/chain/kiosk/v1/#"
    east = closing(Client(port, "kiosk-host-east", "kiosk-host-east", "pw-east", clean=False))
    west = closing(Client(port, "kiosk-host", "kiosk-host", "pw-one", clean=False))
    assert east.subscribe(stream) == [1] and west.subscribe(stream) == [1]
    till = closing(Client(port, "store-12/till-1", "store-12/till-1", "pw-till"))
    topic = "kiosk/v1/store-12/till-1/telemetry"
    sent = [json.dumps({"n": n}).encode() for n in range(40)]
    for payload in sent:
        till.publish(topic, payload)
    wait_until(lambda: len(east.on(topic)) + len(west.on(topic)) >= len(sent), 10, "the stream")
    assert east.on(topic) and west.on(topic)  # each a part
    assert sorted(east.on(topic) + west.on(topic)) == sorted(sent)  # together all, once each
    # a member that goes away keeps its turn in its session, handed over when it is back
    west.close()
    more = [json.dumps({"n": n}).encode() for n in range(40, 80)]
    for payload in more:
        till.publish(topic, payload)
    wait_until(lambda: len(east.on(topic)) > len(sent) // 2, 10, "east's turn")
    back = closing(Client(port, "kiosk-host", "kiosk-host", "pw-one", clean=False))
    assert back.session_present
    everything = sent + more
    wait_until(
        lambda: len(east.on(topic)) + len(west.on(topic)) + len(back.on(topic)) >= len(everything),
        10,
        "the rest",
    )
    got = east.on(topic) + west.on(topic) + back.on(topic)
    assert sorted(got) == sorted(everything)
    assert back.on(topic)  # what fell to it while it was away


def test_the_units_say_what_the_guide_says_about_them() -> None:
    text = " ".join(GUIDE.read_text().split())
    for unit in units():
        (start,) = unit_settings(unit)["Service"]["ExecStart"]
        if "@" in unit.name:
            assert " ".join(f"`ExecStart={start}`".split()) in text


def test_the_picture_has_every_part_and_a_sentence_per_arrow() -> None:
    text = GUIDE.read_text()
    diagram = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    for part in ("kiosks", "broker", "EMQX", "aggregator east", "aggregator west", "PostgreSQL",
                 "dashboards", "managers"):  # fmt: skip
        assert part in diagram, part
    arrows = sorted({int(n) for n in re.findall(r'-- "(\d+)', diagram)})
    assert arrows == list(range(1, len(arrows) + 1)) and len(arrows) >= 7
    after = text.split("```mermaid\n", 1)[1].split("```", 1)[1].split("\n## ", 1)[0]
    for n in arrows:  # what crosses it, and what happens when that part dies
        sentence = re.search(rf"^{n}\. \*\*(.+?)(?=^\d+\. |\Z)", after, flags=re.M | re.S)
        assert sentence is not None, n
        assert re.search(r"\b(is down|dies|died)\b", sentence[1]), n
