"""Who may change things from the dashboard: the managers' bearer token and where it is set.

Reading needs no token. Acknowledging and commenting on alerts and marking cases fixed need
the token the aggregator was started with: the first line of `--token-file`, else the
environment variable KIOSK_DASHBOARD_TOKEN. Without either the dashboard is read-only.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from kiosk_host.errors import UserError

TOKEN_ENV = "KIOSK_DASHBOARD_TOKEN"
MIN_LENGTH = 16


class TokenError(UserError, ValueError):
    """A token file that cannot be read, or a token too short to keep anyone out."""


class Refused(Exception):
    """A change the request may not make: `status` (401 or 403) and why, in words."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def configured_token(
    token_file: str | Path | None, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The managers' token: the first line of `token_file`, else $KIOSK_DASHBOARD_TOKEN, else
    None (read-only). TokenError for a token too short to keep anyone out."""
    if token_file is not None:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as why:
            raise TokenError(f"--token-file {token_file}: {why}") from None
        token, source = (lines[0].strip() if lines else ""), str(token_file)
    else:
        token, source = environ.get(TOKEN_ENV, "").strip(), f"${TOKEN_ENV}"
        if not token:
            return None
    if len(token) < MIN_LENGTH:
        raise TokenError(
            f"{source}: the dashboard token must be at least {MIN_LENGTH} characters "
            "(for example the output of `openssl rand -hex 24`)"
        )
    return token


def check(token: str | None, authorization: str | None) -> None:
    """Raise Refused unless the Authorization header carries the configured token."""
    if token is None:
        raise Refused(
            403,
            "this dashboard is read-only: start `kiosk-host serve` with --token-file "
            f"or ${TOKEN_ENV} to allow changes",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Refused(401, "this change needs the managers' token: Authorization: Bearer TOKEN")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Refused(403, "the token given is not this dashboard's token")
