"""`make lint` enforces the direction of imports between the host's packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make_layers(host_src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "layers", f"HOST_SRC={host_src}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def host_copy(tmp_path: Path) -> Path:
    """A copy of the host's source, to add a module to without touching the checkout."""
    shutil.copytree(
        ROOT / "host" / "kiosk_host",
        tmp_path / "kiosk_host",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def test_the_host_as_it_is_keeps_its_layers(host_copy: Path) -> None:
    done = _make_layers(host_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "imports", "contract"),
    [
        ("rules/peek.py", "kiosk_host.aggregator.engine", "layers below it"),
        ("wire/peek.py", "kiosk_host.storage.sqlite", "layers below it"),
        ("storage/peek.py", "kiosk_host.dashboard.views", "layers below it"),
        ("aggregator/peek.py", "kiosk_host.fleet.provision", "neither fleet"),
        ("dashboard/peek.py", "kiosk_host.demo.run", "neither fleet"),
        ("cli/serve_helper.py", "kiosk_host.sim.virtual_kiosk", "neither fleet"),
    ],
)
def test_a_lower_layer_importing_a_higher_one_fails_the_lint(
    host_copy: Path, module: str, imports: str, contract: str
) -> None:
    (host_copy / "kiosk_host" / module).write_text(f'"""A wrong turn."""\n\nimport {imports}\n')
    if module.startswith("cli/"):  # serve reaches the module through an import of its own
        serve = host_copy / "kiosk_host" / "cli" / "serve.py"
        serve.write_text(serve.read_text() + "\nfrom kiosk_host.cli import serve_helper\n")
    done = _make_layers(host_copy)
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout and contract in done.stdout, done.stdout
    assert imports in done.stdout, done.stdout
