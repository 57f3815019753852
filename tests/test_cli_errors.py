"""The CLI's errors: a person's mistake is one line and exit 2; a defect shows its traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk_host.cli import main as cli
from kiosk_host.errors import UserError
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire.identifiers import check_character
from tests.cli_run import run_cli

KIOSK_HOST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "kiosk-host"
CODE = "A2B3" + check_character("A2B3")  # a code as a kiosk with letter A makes it

READS = [
    ["report", "--store", "s1"],
    ["recognition", "--store", "s1"],
    ["cases", "list", "--store", "s1"],
    ["cases", "fix", CODE, "--store", "s1", "--staff", "ann"],
    ["cases", "close", CODE, "--store", "s1", "--by", "ann"],
    ["cases", "confirm-on", CODE, "--store", "s1", "--device", "till-1", "--broker",
     "mqtt://127.0.0.1:1"],
    ["alerts", "list", "--store", "s1"],
    ["alerts", "ack", "0123", "--by", "ann"],
    ["alerts", "ack", "0123", "--by", "ann", "--store", "s1"],
    ["alerts", "comment", "0123", "seen to"],
    ["deadletter"],
    ["devices"],
    ["check"],
    ["backup", "--to", "{tmp}/copy.db"],
]  # fmt: skip
# Every command that takes --db: the reads above and those that write or make a database.
EVERY = [
    *READS,
    ["serve", "--broker", "mqtt://127.0.0.1:1"],
    ["restore", "--from", "{backup}", "--force"],
]


def _bad_databases(tmp_path: Path) -> dict[str, Path]:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are not the figures you are looking for\n" * 200)
    return {
        "a missing folder": tmp_path / "nowhere" / "kiosk.db",
        "a folder": tmp_path,
        "a file that is no database": not_a_db,
    }


def _backup(tmp_path: Path) -> Path:
    backup = tmp_path / "backups" / "kiosk.db"
    backup.parent.mkdir()
    Storage(backup).close()
    return backup


def _run(argv: list[str], tmp_path: Path, db: Path) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGV --db DB` in this process (a test below runs it as a process)."""
    backup = tmp_path / "backups" / "kiosk.db"
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{backup}", str(backup)) for a in argv]
    return run_cli([*argv, "--db", str(db)])


def _one_line(done: subprocess.CompletedProcess[str], what: str, db: Path) -> str:
    assert done.returncode == 2, (what, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiosk-host: "), (what, done.stderr)
    assert str(db) in lines[0], (what, lines)
    return lines[0]


@pytest.mark.parametrize("argv", EVERY, ids=lambda a: " ".join(a[:2]))
def test_a_bad_db_is_one_line_with_exit_code_2(argv: list[str], tmp_path: Path) -> None:
    _backup(tmp_path)
    for what, db in _bad_databases(tmp_path).items():
        _one_line(_run(argv, tmp_path, db), what, db)


@pytest.mark.parametrize("argv", READS, ids=lambda a: " ".join(a[:2]))
def test_a_read_command_refuses_a_missing_database_and_makes_none(
    argv: list[str], tmp_path: Path
) -> None:
    db = tmp_path / "kiosk-mistyped.db"
    line = _one_line(_run(argv, tmp_path, db), "a missing database", db)
    assert "no such database" in line
    assert not db.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A database on a file system mounted read-only (a tmpfs; `make test` runs as root)."""
    where = tmp_path / "ro"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        Storage(where / "kiosk.db").close()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where / "kiosk.db"
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("argv", EVERY, ids=lambda a: " ".join(a[:2]))
def test_a_read_only_file_system_is_one_line_saying_so(
    argv: list[str], tmp_path: Path, read_only_fs: Path
) -> None:
    _backup(tmp_path)
    line = _one_line(_run(argv, tmp_path, read_only_fs), "read-only", read_only_fs)
    assert "read-only" in line, line


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
