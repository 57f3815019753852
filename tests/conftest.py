"""Fixtures shared by every test: the MicroPython VM and the wire contract."""

from __future__ import annotations

import os
import subprocess

import pytest

from kiosk_host.contract import Contract
from tests.vm.mpvm import ROOT, MicroPythonVM


@pytest.fixture(scope="session")
def mpvm() -> MicroPythonVM:
    """Runs firmware on the real MicroPython VM, with simulated machine, network and clock."""
    return MicroPythonVM()


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract.load()


@pytest.fixture(scope="session")
def built_firmware() -> None:
    """The compiled firmware in build/firmware, as `make build` writes it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, env=env, check=True)
