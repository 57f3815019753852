"""The recovery engine: applies kiosk events and the passing of time to the stored cases.

It runs inside the storage transaction that stores the events, so a case changes exactly
once per event even when the broker delivers an event again after a crash; the rules
themselves are the pure functions of `recovery`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from kiosk_host.notify.catalogue import DEFAULT_LANGUAGE
from kiosk_host.notify.message import language_of, render
from kiosk_host.rules import health
from kiosk_host.rules.recovery import (
    Alert,
    Case,
    Outcome,
    RuleError,
    case_alerts,
    clip_text,
    close_case,
    mark_fixed,
    near_alerts,
    open_case,
    praise_alert,
    replay,
    settle,
    surge_alert,
)
from kiosk_host.rules.routing import delivery_id, routes
from kiosk_host.rules.stores import DEFAULT, StoreConfig, Stores
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import DeadLetter, Delivery, EventRow
from kiosk_host.wire import topics

# A verdict counts for the latest case with its code whose rating is at most this long after
# it (codes repeat after 29,791 ratings of a kiosk; a kiosk's clock may be a little ahead).
EARLY_S = 3600
RULE_CASE = "case"  # the dead letters of the verdicts the rules of the cases refuse


def _clock() -> float:
    return time.time()  # looked up at each call, so that a test can freeze the clock


def _opened(c: Case) -> Case:
    """The case as it was opened: its rating, code, station and deadline, nothing after."""
    return Case(c.store, c.code, c.device, c.station, c.rating_seq, c.opened_at, c.deadline)


class Engine:
    """Cases and alerts for every store; `now` is injectable so that tests freeze time.

    The order in which a kiosk's events reach the host does not change the cases (with a
    shared subscription, a follow-up may be stored before its rating, a verdict before its
    case). Each change rebuilds the case from what is stored (`replay`): the rating (else,
    until it comes, the follow-up) sets the opening time, station and deadline, and every
    stored verdict for the case is applied at its own event time, in time order. A follow-up
    or verdict whose rating or case is not stored yet is kept with the events and counts
    when that arrives, in the transaction that stores it."""

    def __init__(self, stores: Stores, now: Callable[[], float] = _clock) -> None:
        self.stores = stores
        self.now = now
        # The longest "deadline near" lead of any store: cases further off can wait.
        self.near_max_s = max(c.near_s for c in (DEFAULT, *stores.configs.values()))

    def apply(self, storage: Store, e: EventRow) -> list[DeadLetter]:
        """Apply one new event (inside the storing transaction); dead letters for verdicts
        the rules of the cases refuse (one after the customer's in-time verdict)."""
        p = e.payload
        if e.kind == "follow_up" and p["accepted"]:
            return self._open(storage, e)
        if e.kind == "recovery_confirm":
            return self._verdict(storage, e)
        return []

    def rated(self, storage: Store, ratings: list[EventRow]) -> list[DeadLetter]:
        """Ratings just stored (inside the storing transaction): a case that its follow-up
        opened before the rating came takes the rating's time, station and deadline now."""
        dead: list[DeadLetter] = []
        for e in ratings:
            if e.payload.get("score", 0) >= e.payload.get("scale", 0):
                continue  # a top score is never a breakdown: no case to look for
            case = storage.case_of_rating(e.store, e.device, e.seq)
            rating = storage.event(e.store, e.device, e.seq) if case is not None else None
            if case is None or rating is None or rating.kind != "rating":
                continue
            station = rating.payload["station"]
            if (case.opened_at, case.station) == (rating.at, station):
                continue  # opened from this rating already (a redelivery)
            cfg = self.stores.get(e.store)
            base = open_case(cfg, e.store, case.code, e.device, station, e.seq, rating.at)
            dead += self._rebuild(storage, e.store, case.code, base, None)
        return dead

    def _open(self, storage: Store, e: EventRow) -> list[DeadLetter]:
        p = e.payload
        if storage.case_of_rating(e.store, e.device, p["rating_seq"]) is not None:
            return []  # one case per rating: a second follow-up for it changes nothing
        cfg = self.stores.get(e.store)
        rating = storage.event(e.store, e.device, p["rating_seq"])
        if rating is not None and rating.kind != "rating":
            rating = None
        # Until the rating is stored, the follow-up's time and the kiosk stand in for it
        # (`rated` puts the rating's in when it comes): a case is never held back.
        rated_at = rating.at if rating is not None else e.at
        station = rating.payload["station"] if rating is not None else e.device
        base = open_case(cfg, e.store, p["code"], e.device, station, p["rating_seq"], rated_at)
        return self._rebuild(storage, e.store, p["code"], base, None)

    def _verdict(self, storage: Store, e: EventRow) -> list[DeadLetter]:
        cases = storage.cases_by_code(e.store, e.payload["case"])
        if not cases:
            return []  # its case is not stored yet: the verdict waits, and counts when it is
        return self._rebuild(storage, e.store, cases[0].code, None, e)

    def _rebuild(
        self, storage: Store, store: str, code: str, base: Case | None, trigger: EventRow | None
    ) -> list[DeadLetter]:
        """Rebuild the store's cases with this code (nearly always one) from what is stored:
        `base` is a case just opened or one whose rating has just come, `trigger` the verdict
        just stored. A verdict belongs to the latest case with its code rated at most EARLY_S
        after it (one given still earlier is kept, and counts for none).

        The verdicts refused, and why, are those of the rebuilt cases, whatever order their
        events came in: an event stored late may refuse a verdict for another reason (an
        in-time verdict given before the one that refused it) or no longer refuse it (its
        rating moved the deadline, so that the verdict that refused it came late). So the
        refusals before this event, found as this event's rebuild finds them, are compared
        with those after it: a dead letter kept for a verdict is revised or taken back
        (`revise_dead_letter`), and one is returned for each verdict newly refused."""
        stored = {(c.device, c.rating_seq): c for c in storage.cases_by_code(store, code)}
        bases = {k: _opened(c) for k, c in stored.items()}
        found_in: dict[tuple[int, int | None], list[EventRow]] = {}

        def by_case(opened: dict[tuple[str, int], Case]) -> list[tuple[Case, list[EventRow]]]:
            order = sorted(opened.values(), key=lambda c: (c.opened_at, c.device, c.rating_seq))
            out = []
            for i, c in enumerate(order):
                since = c.opened_at - EARLY_S
                until = order[i + 1].opened_at - EARLY_S if i + 1 < len(order) else None
                if (since, until) not in found_in:
                    found_in[since, until] = storage.verdicts(store, code, since, until)
                out.append((c, found_in[since, until]))
            return out

        now = int(self.now())
        was: dict[tuple[str, int], tuple[EventRow, str]] = {}  # refused before this event
        for opened, found in by_case(bases):
            rest = [v for v in found if trigger is None or _ev(v) != _ev(trigger)]
            record = stored[(opened.device, opened.rating_seq)]
            _, refused = replay(opened, record, _outcomes(rest), now)
            was.update((_ev(rest[j]), (rest[j], why)) for j, why in refused)
        if base is not None:
            bases[(base.device, base.rating_seq)] = base
        cfg = self.stores.get(store)
        now_refused: dict[tuple[str, int], tuple[EventRow, str]] = {}
        for opened, found in by_case(bases):
            before = stored.get((opened.device, opened.rating_seq))
            after, refused = replay(opened, before, _outcomes(found), now)
            now_refused.update((_ev(found[j]), (found[j], why)) for j, why in refused)
            if after != before:
                storage.save_case(after)
                for alert in case_alerts(cfg, before, after, now):
                    self.raise_alert(storage, alert)
        for key, (v, why) in was.items():
            reason = now_refused[key][1] if key in now_refused else None
            if reason != why:
                storage.revise_dead_letter(RULE_CASE, _topic(v), v.raw.encode(), reason)
        return [
            DeadLetter(_topic(v), v.raw.encode(), RULE_CASE, "/case", why, v.arrived)
            for key, (v, why) in now_refused.items()
            if key not in was
        ]

    def _change(self, storage: Store, before: Case, after: Case) -> None:
        cfg = self.stores.get(before.store)
        now = int(self.now())
        after = settle(after, now)
        storage.save_case(after)
        for alert in case_alerts(cfg, before, after, now):
            self.raise_alert(storage, alert)

    def raise_alert(self, storage: Store, alert: Alert) -> bool:
        """Keep an alert and, in the same transaction, one delivery per recipient the store
        routes it to (rules/routing.py); False when the same alert was kept before."""
        cfg = self.stores.get(alert.store)
        alert = in_language(alert, cfg)
        if not storage.add_alert(alert):
            return False
        payload = json.dumps(alert.to_payload())
        storage.add_deliveries(
            Delivery(delivery_id(alert.id, r.to), alert.store, alert.id, r.to, payload,
                     alert.at, not_before)
            for r, not_before in routes(cfg, alert.type, alert.severity, alert.at)
        )  # fmt: skip
        return True

    def fix(self, storage: Store, store: str, code: str, staff: str, note: str | None) -> Case:
        """A staff member marked the case fixed (from the CLI or the dashboard); past its
        deadline, as a late fix (`mark_fixed`)."""
        return self._act(storage, store, code, lambda c, now: mark_fixed(c, staff, now, note))

    def close(self, storage: Store, store: str, code: str, by: str, note: str | None) -> Case:
        """A person took an overdue case off the case list (from the CLI or the dashboard)."""
        return self._act(storage, store, code, lambda c, now: close_case(c, by, now, note))

    def _act(
        self, storage: Store, store: str, code: str, rule: Callable[[Case, int], Case]
    ) -> Case:
        """A person's action on the case `code`, by `rule`, in one transaction."""
        with storage.transaction():
            before = storage.case_by_code(store, code)
            if before is None:
                raise RuleError(f"no case {code} in store {store}")
            after = rule(before, int(self.now()))
            self._change(storage, before, after)
        return after

    def tick(self, storage: Store) -> set[str]:
        """Deadlines: near alerts, and breaches at the deadline (also right after a restart).
        The stores whose cases changed state, so that their case lists go out again (a fixed
        case turning unconfirmed raises no alert, yet is now overdue)."""
        now = int(self.now())
        changed: set[str] = set()
        with storage.transaction():
            for case, near_sent in storage.waiting_cases(now + self.near_max_s):
                cfg = self.stores.get(case.store)
                if case.deadline <= now:
                    self._change(storage, case, case)
                    changed.add(case.store)
                    continue
                for alert in near_alerts(cfg, case, now, near_sent):
                    self.raise_alert(storage, alert)
                    storage.save_case(case, near_sent=True)
        return changed

    def kiosk_alerts(self, storage: Store, now: int, listening_since: int) -> None:
        """`kiosk_offline` for kiosks down too long inside opening hours, and `outbox_filling`
        for online kiosks whose last telemetry says their outbox is more than half full
        (rules/health.py); the alerts already sent are looked up only for a candidate.

        Telemetry goes at QoS 0, so what a kiosk sent while this host was not listening is
        lost, not late: a kiosk counts as heard of at `listening_since` at the latest, so that
        a host back from an outage does not report every kiosk down at once."""
        with storage.transaction():
            for d in storage.devices():
                store, device = d["store"], d["device"]
                cfg = self.stores.get(store)
                heard = d["telemetry_at"]
                h = health.kiosk_health(
                    now, state=d["state"], since=d["since"], interval_s=d["interval_s"],
                    telemetry_at=None if heard is None else max(heard, listening_since),
                    refused_at=d["refused_at"],
                )  # fmt: skip
                if health.offline_alert(cfg, store, device, h, now, None) is not None:
                    last = storage.last_kiosk_alert_at(store, device, "kiosk_offline")
                    alert = health.offline_alert(cfg, store, device, h, now, last)
                    if alert is not None:
                        self.raise_alert(storage, alert)
                t = d["telemetry"] or {}
                outbox, size, at = t.get("outbox"), t.get("outbox_max"), d["telemetry_at"]
                if h.state != "online" or not isinstance(outbox, int) or at is None:
                    continue
                size = size if isinstance(size, int) else None
                if health.outbox_alert(store, device, outbox, size, at, None) is not None:
                    last = storage.last_kiosk_alert_at(store, device, "outbox_filling")
                    alert = health.outbox_alert(store, device, outbox, size, at, last)
                    if alert is not None:
                        self.raise_alert(storage, alert)

    def stream_alerts(self, storage: Store, stores: Iterable[str]) -> None:
        """Negative surge and praise for stores with new ratings, timed by the latest rating
        so that the same surge, looked at again, is the same alert (kept once); one praise
        per run of top ratings."""
        with storage.transaction():
            for store in stores:
                cfg = self.stores.get(store)
                window = cfg.surge_window_min * 60
                limit = max(4 * cfg.praise_run, 500)
                recent = storage.last_scores(store, limit)
                if not recent:
                    continue
                latest = recent[-1][0]
                in_window = [(t, sc) for t, sc in recent if t > latest - window]
                last = storage.last_alert_at(store, "negative_surge")
                # A run is praised once, as of the rating that made it praise_run long: not
                # again as it goes on, nor when a rating that comes late (another kiosk's, an
                # outbox's backlog) lands inside it and changes which rating that was. A run
                # whose first rating came after the last praise is a new one; a run longer
                # than the ratings read was praised while it was shorter.
                run = 0
                for _, sc in reversed(recent):
                    if sc != cfg.scale:
                        break
                    run += 1
                start, reached = len(recent) - run, len(recent) - run + cfg.praise_run
                praised = storage.last_alert_at(store, "praise")
                new_run = run >= cfg.praise_run and not run == len(recent) == limit
                new_run = new_run and (praised is None or praised < recent[start][0])
                scores = [sc for _, sc in recent[:reached]]
                found = [
                    surge_alert(cfg, in_window, latest, store=store, last_sent_at=last),
                    praise_alert(cfg, scores, recent[reached - 1][0], store=store)
                    if new_run
                    else None,
                ]
                for alert in found:
                    if alert is not None:
                        self.raise_alert(storage, alert)


def in_language(alert: Alert, cfg: StoreConfig) -> Alert:
    """The alert with its text in the store's language (the contract's `text`): the rules
    write English; another language takes the line its e-mails are headed with (the
    subject, less the store's name), times in the store's zone."""
    if language_of(cfg.language) == DEFAULT_LANGUAGE:
        return alert
    subject = render(alert.to_payload(), cfg.language, cfg.tz, None).subject
    text = subject.removeprefix(f"[{alert.store}]").strip()
    return replace(alert, text=clip_text(text))


def _ev(e: EventRow) -> tuple[str, int]:
    return e.device, e.seq


def _topic(e: EventRow) -> str:
    return topics.topic("event", store=e.store, device=e.device)


def _outcomes(verdicts: list[EventRow]) -> list[tuple[int, Outcome]]:
    return [(v.at, v.payload["outcome"]) for v in verdicts]
