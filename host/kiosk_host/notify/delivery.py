"""What every channel shares: a delivery's id, and the failure of one attempt to deliver."""

from __future__ import annotations

import re
from typing import Final

# A delivery id goes into a Message-ID (`<ID@kiosk-host>`) and an Idempotency-Key header, so
# it keeps to characters both take as they are (RFC 5322 dot-atom text, minus the rarer ones).
_DELIVERY_ID: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class DeliveryFailed(Exception):
    """One attempt to deliver a message failed: `reason` in words (never a password, never a
    webhook URL's path, which is a secret of its own); `retry` True when the same message may
    go through later (a timeout, a refused connection, a temporary 4xx SMTP reply, an HTTP
    408, 429 or 5xx), False when trying again cannot help until a person changes something;
    `retry_after_s` the wait the recipient asked for (HTTP Retry-After), else None;
    `misconfigured` True when that something is the host's own settings (a refused login, a
    certificate that does not verify, a server without STARTTLS), not the message."""

    def __init__(
        self,
        reason: str,
        retry: bool,
        retry_after_s: int | None = None,
        *,
        misconfigured: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after_s = retry_after_s
        self.misconfigured = misconfigured

    def __repr__(self) -> str:
        return (
            f"DeliveryFailed({self.reason!r}, retry={self.retry}, "
            f"retry_after_s={self.retry_after_s}, misconfigured={self.misconfigured})"
        )


def check_delivery_id(delivery_id: str) -> str:
    """`delivery_id` when it fits a Message-ID and an HTTP header: 1 to 128 letters, digits,
    '.', '_' and '-', not starting with '.'. ValueError otherwise: the ids come from the
    program, not from a person."""
    if not _DELIVERY_ID.fullmatch(delivery_id) or ".." in delivery_id or delivery_id[-1] == ".":
        raise ValueError(f"delivery id {delivery_id!r}: use 1 to 128 of A-Z a-z 0-9 . _ -")
    return delivery_id
