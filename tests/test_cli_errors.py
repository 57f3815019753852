"""The CLI's errors: a person's mistake is one line and exit 2; a defect shows its traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kiosk_host.cli import main as cli
from kiosk_host.errors import UserError

KIOSK_HOST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "kiosk-host"

READS = [
    ["report", "--store", "s1"],
    ["recognition", "--store", "s1"],
    ["cases", "list", "--store", "s1"],
    ["cases", "fix", "A2B3", "--store", "s1", "--staff", "ann"],
    ["alerts", "list", "--store", "s1"],
    ["alerts", "ack", "0123", "--by", "ann"],
    ["deadletter"],
    ["devices"],
]


def _bad_databases(tmp_path: Path) -> dict[str, Path]:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are not the figures you are looking for\n" * 200)
    return {
        "a missing folder": tmp_path / "nowhere" / "kiosk.db",
        "a folder": tmp_path,
        "a file that is no database": not_a_db,
    }


@pytest.mark.parametrize("argv", READS, ids=lambda a: " ".join(a[:2]))
def test_a_bad_db_is_one_line_with_exit_code_2(argv: list[str], tmp_path: Path) -> None:
    for what, db in _bad_databases(tmp_path).items():
        done = subprocess.run(
            [KIOSK_HOST, *argv, "--db", str(db)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (what, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kiosk-host: "), (what, done.stderr)
        assert str(db) in lines[0], (what, lines)


def test_a_users_error_from_below_the_cli_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            KIOSK_HOST,
            "report",
            "--store",
            "s1",
            "--db",
            str(tmp_path / "k.db"),
            "--stores",
            str(tmp_path / "stores.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"kiosk-host: --stores {tmp_path / 'stores.toml'}: " + (
        "No such file or directory"
    )


def test_a_defect_is_not_dressed_up_as_a_users_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise KeyError("a defect")

    monkeypatch.setattr(cli, "_deadletter", broken)
    with pytest.raises(KeyError, match="a defect"):
        cli.main(["deadletter", "--db", ":memory:"])


def test_a_users_error_returns_2_and_says_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(args: object) -> int:
        raise UserError("the thing to fix")

    monkeypatch.setattr(cli, "_deadletter", refused)
    assert cli.main(["deadletter", "--db", ":memory:"]) == 2
    assert capsys.readouterr().err == "kiosk-host: the thing to fix\n"
