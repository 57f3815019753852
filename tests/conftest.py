"""Fixtures shared by every test: the MicroPython VM and the wire contract."""

from __future__ import annotations

import pytest

from kiosk_host.contract import Contract
from tests.vm.mpvm import MicroPythonVM


@pytest.fixture(scope="session")
def mpvm() -> MicroPythonVM:
    """Runs firmware on the real MicroPython VM, with simulated machine, network and clock."""
    return MicroPythonVM()


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract.load()
