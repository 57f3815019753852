"""`kiosk-host validate` says whether a payload fits the contract, and which rule it breaks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kiosk_host.shipped import ROOT

KIOSK_HOST = ROOT / ".venv" / "bin" / "kiosk-host"
TOPIC = "kiosk/v1/store-12/till-1/event"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(KIOSK_HOST), *args], input=stdin, capture_output=True, check=False)


def test_a_valid_payload_from_a_file(tmp_path: Path) -> None:
    payload = tmp_path / "rating.json"
    payload.write_text(
        '{"v":1,"kind":"rating","store":"store-12","device":"till-1","seq":1,"ts":null,'
        '"up_ms":10,"score":4,"scale":4,"station":"till-1","staff":null}'
    )
    result = run("validate", TOPIC, str(payload))
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "valid event/rating"


def test_an_invalid_payload_from_stdin_names_the_rule_and_field() -> None:
    stdin = (
        b'{"v":1,"kind":"rating","store":"store-12","device":"till-1","seq":1,"ts":null,'
        b'"up_ms":10,"score":5,"scale":4,"station":"till-1","staff":null}'
    )
    result = run("validate", TOPIC, "-", stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("rejected: maximum at /score: 5 is greater than")
