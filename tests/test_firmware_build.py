"""`make build` compiles every firmware module with mpy-cross, and stops at the first error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.vm.mpvm import FIRMWARE_DIR, ROOT, MicroPythonVM


def make_build(firmware_dir: Path, build_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "build",
            f"FIRMWARE_DIR={firmware_dir}",
            f"BUILD_DIR={build_dir}",
            f"BOARDS_BUILD_DIR={build_dir.parent / 'boards'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        # Run on its own, not as part of an outer `make test` and its job server.
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
    )


def test_one_mpy_per_firmware_module(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = make_build(FIRMWARE_DIR, out)
    assert result.returncode == 0, result.stderr
    modules = {p.relative_to(FIRMWARE_DIR).with_suffix("") for p in FIRMWARE_DIR.rglob("*.py")}
    compiled = {p.relative_to(out).with_suffix("") for p in out.rglob("*") if p.is_file()}
    assert modules
    assert compiled == modules
    assert all(p.suffix == ".mpy" for p in out.rglob("*") if p.is_file())


def test_syntax_micropython_cannot_compile_fails_the_build(tmp_path: Path) -> None:
    firmware = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, firmware)
    # Valid CPython 3.10+, but MicroPython's compiler has no `match` statement.
    (firmware / "aaa_match.py").write_text(
        "def f(x):\n    match x:\n        case 1:\n            return 1\n"
    )
    result = make_build(firmware, tmp_path / "out")
    assert result.returncode != 0
    assert "aaa_match.py" in result.stderr
    assert "SyntaxError" in result.stderr
    # It stopped at the first error: the modules after it in name order were not compiled.
    assert not list((tmp_path / "out").glob("*.mpy"))


def test_every_board_file_compiles(tmp_path: Path) -> None:
    result = make_build(FIRMWARE_DIR, tmp_path / "firmware")
    assert result.returncode == 0, result.stderr
    boards = {p.stem for p in (ROOT / "boards").glob("*.py")}
    assert {p.stem for p in (tmp_path / "boards").glob("*.mpy")} == boards


def test_compiled_modules_load_on_the_vm(mpvm: MicroPythonVM) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "build"], cwd=ROOT, check=True, capture_output=True
    )
    code = "import clock, wire\nprint(clock.__file__, wire.__file__)"
    assert mpvm.run(code, ["clock", "wire"], compiled=True).ok().split() == [
        "/lib/clock.mpy",
        "/lib/wire.mpy",
    ]
