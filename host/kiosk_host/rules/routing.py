"""Who is told of an alert and when (docs/alerts.md): recipients by kind, quiet hours, back-off.

Pure functions, no I/O and no clock reads. Each alert becomes one delivery per recipient of
the store whose `kinds` name its type, due at once, or, for an alert that is not critical
raised inside the recipient's quiet hours, at their end (store-local wall time, so 07:00 stays
07:00 across a daylight-saving change). A delivery's id is stable (the alert's id and the
recipient), so that an alert raised again, or a delivery tried again, is the same one: the
webhook's idempotency key and the e-mail's Message-ID are made from it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Final

from kiosk_host.rules.stores import Recipient, StoreConfig

_DELIVERY_IDS: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://kiosk-feedback.invalid/deliveries")
RETRY_FIRST_S: Final = 30  # the first retry after a temporary failure
RETRY_MAX_S: Final = 3600  # retries back off to at most this, and go on while it fails


def delivery_id(subject: str, to: str) -> str:
    """The stable id of what is sent to `to` about `subject` (an alert id, or a digest's
    name): the same pair always gives the same id."""
    return str(uuid.uuid5(_DELIVERY_IDS, f"{subject}\n{to}"))


def quiet_end(cfg: StoreConfig, r: Recipient, at: int) -> int | None:
    """The end (Unix s) of the recipient's quiet hours when `at` lies inside them, else None:
    today's span, or yesterday's running past midnight."""
    span = r.quiet
    if span is None:
        return None
    local = datetime.fromtimestamp(at, cfg.tz)
    t = local.hour * 3600 + local.minute * 60 + local.second
    for day, yesterday in ((local.date(), False), (local.date() - timedelta(days=1), True)):
        if span.covers(t, yesterday):
            return _wall(cfg, day, span.end)
    return None


def _wall(cfg: StoreConfig, day: date, seconds: int) -> int:
    """Unix seconds of the store-local wall time `seconds` after midnight of `day` (past
    86400: the next day)."""
    moment = datetime.combine(day, time(), tzinfo=cfg.tz) + timedelta(seconds=seconds)
    return int(moment.timestamp())


def routes(
    cfg: StoreConfig, alert_type: str, severity: str, at: int
) -> list[tuple[Recipient, int]]:
    """The recipients of an alert of this type, each with when it may go out (`not_before`):
    at once, or at the end of their quiet hours unless the alert is critical."""
    out = []
    for r in cfg.notify:
        if alert_type not in r.kinds:
            continue
        held = None if severity == "critical" else quiet_end(cfg, r, at)
        out.append((r, at if held is None else held))
    return out


def retry_in(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed try: 30 s, doubling, at most an hour."""
    return min(RETRY_FIRST_S << min(max(attempts - 1, 0), 16), RETRY_MAX_S)
