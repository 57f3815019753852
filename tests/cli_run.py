"""`kiosk-host ARGS` run in the test's own process: what it printed and its exit code.

The console script is `sys.exit(main())`, so calling `main` is the command less the start-up
of a new interpreter (tests that need a process of its own, to read its command line or send
it signals, start one). The environment is the test's, with the changes asked for, for the
length of the call only.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence

from kiosk_host.cli.main import main


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in changes}
    try:
        for k, v in changes.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_cli(
    argv: Sequence[str], env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGV`, with `env`'s variables set (None: unset) while it runs."""
    out, err = io.StringIO(), io.StringIO()
    with _environment(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as done:  # argparse's refusals, and --help
            code = done.code if isinstance(done.code, int) else 1
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())
