"""Fixtures shared by every test: the MicroPython VM, the wire contract and the broker."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kiosk_host.wire.contract import Contract
from tests.broker import Mosquitto
from tests.fleet_rig import Serve
from tests.postgres import BACKENDS, Postgres
from tests.virtual_kiosks import VirtualKiosk
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


def _broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto per test session (per xdist worker): the anonymous variant of the shipped
    settings (tests/broker.py), on a free loopback port, for tests of queues, sessions and
    clients that need no accounts. Tests of who may do what run the shipped file exactly
    (`Mosquitto(users=...)`, or `fleet_rig.broker_with`). Tests that stop or restart a broker
    take `fresh_mosquitto`."""
    yield from _broker(tmp_path_factory)


@pytest.fixture
def fresh_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own (the anonymous variant), to stop, restart or kill."""
    yield from _broker(tmp_path_factory)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL cluster per test session (per xdist worker), made by initdb in a
    temporary folder, on a free loopback port; stopped and removed at the end."""
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """What --db names for a test run against each storage back-end: a new SQLite file, or
    a new database (the schema migrated) in the session's PostgreSQL, dropped at the end."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("db") / "kiosk.db")
        return
    server: Postgres = request.getfixturevalue("postgres")
    url = server.database()
    try:
        yield url
    finally:
        gc.collect()  # storages the test left open give their connections back first
        server.drop(url)


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """A new database in the session's PostgreSQL, its schema migrated, dropped at the end."""
    url = postgres.database()
    try:
        yield url
    finally:
        gc.collect()  # storages the test left open give their connections back first
        postgres.drop(url)


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Registers what a test starts (kiosks, processes, aggregators, clients) to end, the last
    first, when the test ends: a kiosk is killed as by a power cut, a process killed if still
    running, an aggregator stopped, anything else closed."""
    made: list[Any] = []

    def keep(thing: Any) -> Any:
        made.append(thing)
        return thing

    yield keep
    for thing in reversed(made):
        if isinstance(thing, VirtualKiosk):
            thing.kill()
        elif isinstance(thing, subprocess.Popen):
            if thing.poll() is None:
                thing.kill()
                thing.wait(10)
        elif isinstance(thing, Serve):
            thing.stop()
        else:
            thing.close()
