"""A PostgreSQL server of the tests' own: a throw-away cluster in a temporary folder.

`initdb` makes the cluster, `postgres` serves it on a free loopback port (and a socket in the
same folder), and `close()` stops it and removes the folder. The server refuses to run as
root, so under root (CI) the cluster belongs to Debian's `postgres` user and its programs run
as that user. Each test gets a database of its own, copied from a template that holds the
migrated schema (cheaper than migrating each), and dropped when the test ends.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.broker import HOST, free_port

# The back-ends a storage test runs on (`store_url`); the PostgreSQL variants run in `make
# test` (marked e2e: a server process beside the test), so that `make check` keeps its time.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)]
START_TIMEOUT_S = 30.0
TEMPLATE = "kiosk_template"
SERVER_USER = "postgres"  # Debian's account for the server; used when the tests run as root


def bindir() -> Path:
    """The folder of initdb and postgres: the newest of Debian's, else pg_config's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        here = Path(out.stdout.strip())
        if (here / "postgres").exists():
            return here
    raise RuntimeError(
        "the PostgreSQL server is not installed: `make system` installs it "
        "(apt-get install postgresql)"
    )


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0


class Postgres:
    """One cluster in a temporary folder of its own, started by `start()`, stopped and
    removed by `close()`."""

    def __init__(self) -> None:
        # not under pytest's temporary folders: under root they are closed to the server user
        self.directory = Path(tempfile.mkdtemp(prefix="kiosk-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.user = "kiosk"
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the server user
            owner = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def _run(self, *command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, cwd=self.directory, **self._as)

    def start(self) -> None:
        bin_ = bindir()
        # trust on loopback only; the C locale sorts text byte by byte, as SQLite does
        self._run(
            str(bin_ / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--no-sync", "--locale=C", "--encoding=UTF8",
        )  # fmt: skip
        self.process = subprocess.Popen(
            [str(bin_ / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", HOST, "-k", str(self.directory), "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=(self.directory / "server.log").open("wb"),
            cwd=self.directory, **self._as,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as c:
                    c.execute(f"CREATE DATABASE {TEMPLATE}")
                break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start:\n{log[-2000:]}") from None
                time.sleep(0.05)
        from kiosk_host.storage.postgres import PostgresStorage

        PostgresStorage(self.url(TEMPLATE)).close()  # the migrated schema, copied per test
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false")

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    def database(self, empty: bool = False) -> str:
        """A new database's URL: the schema migrated already, or `empty` (template0)."""
        name = f"kiosk_{next(self._names)}"
        template = "template0" if empty else TEMPLATE
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        if self.process is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        self.process.terminate()  # SIGTERM: the server's "smart" shutdown
        try:
            self.process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)
