"""Sends the kept deliveries (alerts and digests) to people: by e-mail or webhook, with back-off.

The deliveries are rows kept in the transaction that kept their alert (engine.raise_alert), so
a delivery exists exactly when its alert does. One sender of a group sends (on PostgreSQL it
leads by an advisory lock of its own, on SQLite there is one), so each delivery is sent by one
process. A delivery is marked once, after its channel said it has it (the SMTP server's reply
to DATA, the webhook's 2xx): a sender killed between the two sends it again when it comes
back, under the same idempotency key and Message-ID, which is how the recipient knows it.
A temporary failure is tried again after 30 s, doubling up to an hour, for as long as it
fails, and so is a setup mistake (a refused login, a webhook's 404), so that it goes once a
person mends it; a refusal no try can mend (an address the mail server refuses for good, an
HTTP 400) is marked failed with its reason. All show in `kiosk-host alerts deliveries` and
on the dashboard.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from kiosk_host.aggregator.digest import digest_message, due_periods
from kiosk_host.aggregator.leader import Leader
from kiosk_host.notify.delivery import DeliveryFailed
from kiosk_host.notify.email import Mailer
from kiosk_host.notify.message import render
from kiosk_host.notify.webhook import post_webhook
from kiosk_host.rules.routing import delivery_id, retry_in
from kiosk_host.rules.stores import Recipient, Stores
from kiosk_host.secret_file import first_line
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import Delivery

log = logging.getLogger(__name__)


@dataclass
class Channels:
    """The ways out: the SMTP server (None: e-mail deliveries wait until one is configured),
    the dashboard's base URL to link to, and where webhook secrets are read from."""

    mailer: Mailer | None = None
    dashboard_url: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


class Sender:
    """Works through the due deliveries, a batch at a time, while this process leads."""

    BATCH = 20  # deliveries read per pass
    AGAIN = 1000  # those that failed before, tried again at once by a sender that starts
    IDLE_S = 1.0  # between passes when nothing was due
    DIGESTS_S = 60  # the digests due are looked for this often

    def __init__(
        self,
        storage: Store,
        stores: Stores,
        channels: Channels,
        leader: Leader,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.stores = stores
        self.channels = channels
        self.leader = leader
        self.now = now
        self._digests_at = 0
        self._again = True

    def keep_digests(self, now: int) -> int:
        """One delivery per digest due (digest.due_periods) and recipient who gets it;
        kept once however often asked. How many are new."""
        rows = []
        for store, cfg in self.stores.configs.items():
            wanted = {kind for r in cfg.notify for kind in r.digests}
            for period in due_periods(cfg, {}, now, wanted) if wanted else ():
                name = f"digest-{store}-{period.kind}-{period.first.isoformat()}"
                payload = json.dumps({"digest": period.kind, "first": period.first.isoformat()})
                rows += [
                    Delivery(delivery_id(name, r.to), store, name, r.to, payload, now, now)
                    for r in cfg.notify
                    if period.kind in r.digests
                ]
        if not rows:
            return 0
        with self.storage.transaction():
            return self.storage.add_deliveries(rows)

    def run(self, stop: threading.Event) -> None:
        """Send until `stop` is set. A pass that fails (the database away for a moment) is
        logged and the next tried after IDLE_S: nothing but `stop` ends this loop."""
        while not stop.is_set():
            try:
                sent = self.once()
            except Exception:
                log.exception("kiosk-host: sending deliveries failed; trying again")
                sent = 0
            if not sent:
                stop.wait(self.IDLE_S)

    def once(self) -> int:
        """One pass: the digests due kept as deliveries, then every delivery due now (up to
        BATCH) tried; how many were tried."""
        if not self.leader.leading():
            return 0
        now = int(self.now())
        if now >= self._digests_at:
            self._digests_at = now + self.DIGESTS_S
            self.keep_digests(now)
        # A sender that starts, or takes over, tries at once what failed before: the reason
        # may be mended now (a receiver back, a setting put right and serve restarted).
        again = self._again or self.leader.took_over()
        self._again = False
        with self.storage.transaction():
            due = self.storage.due_deliveries(now, self.AGAIN if again else self.BATCH, again)
        for d in due:
            self.attempt(d)
        return len(due)

    def attempt(self, d: Delivery) -> str:
        """Send one delivery and record how it went: delivered, failed or pending (again)."""
        error: str | None = None
        next_at: int | None = None
        try:
            self._send(d)
            state = "delivered"
        except DeliveryFailed as why:
            error = why.reason
            if why.retry or why.misconfigured:  # a setting a person mends: sent once they do
                state = "pending"
                wait = max(retry_in(d.attempts + 1), why.retry_after_s or 0)
                next_at = int(self.now()) + wait
            else:
                state = "failed"
        except Exception as why:  # a defect met by one delivery: it waits, the others go on
            log.exception("kiosk-host: delivery %s failed", d.id)
            error, state = f"not sent: {why!r}", "pending"
            next_at = int(self.now()) + retry_in(d.attempts + 1)
        with self.storage.transaction():
            self.storage.delivery_tried(d.id, state, int(self.now()), error, next_at)
        return state

    def _send(self, d: Delivery) -> None:
        cfg = self.stores.get(d.store)
        r = next((r for r in cfg.notify if r.to == d.recipient), None) or Recipient(d.recipient)
        payload = json.loads(d.payload)
        now = int(self.now())
        if "digest" in payload:
            self._send_digest(d, r, payload)
            return
        rendered = render(payload, cfg.language, cfg.tz, self.channels.dashboard_url)
        if r.email is not None:
            self._mailer().send(r.email, rendered, d.id, now)
            return
        post_webhook(d.recipient, r.format, self._secret(r), rendered, payload, d.id, now)

    def _send_digest(self, d: Delivery, r: Recipient, payload: Mapping[str, Any]) -> None:
        """The digest of the period the delivery names, made now from what is stored (a past
        period's figures no longer change), sent with its own Message-ID."""
        if r.email is None:
            raise DeliveryFailed("digests go by e-mail only", retry=False)
        first = date.fromisoformat(payload["first"])
        message = digest_message(
            self.storage, self.stores, d.store, payload["digest"], int(self.now()), first=first
        )
        self._mailer().send_message(r.email, message, d.id)

    def _mailer(self) -> Mailer:
        if self.channels.mailer is None:
            raise DeliveryFailed(
                "no SMTP server: start serve with --smtp smtp://HOST:PORT", retry=True,
                misconfigured=True,
            )  # fmt: skip
        return self.channels.mailer

    def _secret(self, r: Recipient) -> bytes | None:
        """The webhook's signing secret, from the variable or file stores.toml names."""
        if r.secret_env is not None:
            value = self.channels.environ.get(r.secret_env)
            if not value:
                raise DeliveryFailed(
                    f"the webhook's secret: ${r.secret_env} is not set", retry=True,
                    misconfigured=True,
                )  # fmt: skip
            return value.encode()
        if r.secret_file is not None:
            try:
                return first_line(r.secret_file, "secret_file").encode()
            except Exception as why:
                raise DeliveryFailed(
                    f"the webhook's secret: {why}", retry=True, misconfigured=True
                ) from None
        return None


def shown_recipient(to: str) -> str:
    """A recipient as people may see it: the e-mail address, or only a webhook's scheme and
    host (its path is a secret: whoever has it may post to the channel)."""
    if to.startswith("mailto:"):
        return to.removeprefix("mailto:")
    parts = urlsplit(to)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def delivery_json(d: Delivery) -> dict[str, Any]:
    """A delivery as `alerts deliveries --json` and the dashboard show it."""
    return {
        "id": d.id, "subject": d.subject, "to": shown_recipient(d.recipient), "state": d.state,
        "attempts": d.attempts, "last_error": d.last_error, "created_at": d.created_at,
        "not_before": d.not_before, "next_at": d.next_at, "delivered_at": d.delivered_at,
    }  # fmt: skip


DELIVERIES_READ = 500  # the store's latest deliveries matched to the alerts listed


def alerts_sent(storage: Store, store: str, limit: int) -> list[dict[str, Any]]:
    """The store's alerts, newest first, each with what was sent to people about it
    (`deliveries`: to whom, and how it went): `alerts list --json` and the dashboard's."""
    sent: dict[str, list[dict[str, Any]]] = {}
    for d in storage.deliveries(store, DELIVERIES_READ):
        sent.setdefault(d.subject, []).append(delivery_json(d))
    return [{**a, "deliveries": sent.get(a["id"], [])} for a in storage.alerts(store, limit)]
