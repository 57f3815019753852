"""The recovery engine: applies kiosk events and the passing of time to the stored cases.

It runs inside the storage transaction that stores the events, so a case changes exactly
once per event even when the broker delivers an event again after a crash; the rules
themselves are the pure functions of `recovery`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kiosk_host.rules.recovery import (
    Case,
    RuleError,
    apply_verdict,
    case_alerts,
    close_case,
    mark_fixed,
    near_alerts,
    open_case,
    praise_alert,
    settle,
    surge_alert,
)
from kiosk_host.rules.stores import DEFAULT, Stores
from kiosk_host.storage.sqlite import DeadLetter, EventRow, Storage
from kiosk_host.wire import topics


class Engine:
    """Cases and alerts for every store; `now` is injectable so that tests freeze time."""

    def __init__(self, stores: Stores, now: Callable[[], float] = time.time) -> None:
        self.stores = stores
        self.now = now
        # The longest "deadline near" lead of any store: cases further off can wait.
        self.near_max_s = max(c.near_s for c in (DEFAULT, *stores.configs.values()))

    def apply(self, storage: Storage, e: EventRow) -> list[DeadLetter]:
        """Apply one new event (inside the storing transaction); dead letters for events that
        break a rule of the cases, such as a verdict for a code the store never issued."""
        p = e.payload
        try:
            if e.kind == "follow_up" and p["accepted"]:
                self._open(storage, e)
            elif e.kind == "recovery_confirm":
                self._verdict(storage, e)
        except RuleError as why:
            topic = topics.topic("event", store=e.store, device=e.device)
            return [DeadLetter(topic, e.raw.encode(), "case", "/case", why.reason, e.arrived)]
        return []

    def _open(self, storage: Storage, e: EventRow) -> None:
        cfg = self.stores.get(e.store)
        p = e.payload
        rating = storage.event(e.store, e.device, p["rating_seq"])
        rated_at = rating.at if rating is not None else e.at
        station = rating.payload["station"] if rating is not None else e.device
        now = int(self.now())
        case = settle(
            open_case(cfg, e.store, p["code"], e.device, station, p["rating_seq"], rated_at), now
        )
        storage.save_case(case)
        for alert in case_alerts(cfg, None, case, now):
            storage.add_alert(alert)

    def _verdict(self, storage: Storage, e: EventRow) -> None:
        p = e.payload
        before = storage.case_by_code(e.store, p["case"])
        if before is None:
            raise RuleError(f"no case {p['case']} in store {e.store}")
        self._change(storage, before, apply_verdict(before, p["outcome"], e.at))

    def _change(self, storage: Storage, before: Case, after: Case) -> None:
        cfg = self.stores.get(before.store)
        now = int(self.now())
        after = settle(after, now)
        storage.save_case(after)
        for alert in case_alerts(cfg, before, after, now):
            storage.add_alert(alert)

    def fix(self, storage: Storage, store: str, code: str, staff: str, note: str | None) -> Case:
        """A staff member marked the case fixed (from the CLI or the dashboard); past its
        deadline, as a late fix (`mark_fixed`)."""
        return self._act(storage, store, code, lambda c, now: mark_fixed(c, staff, now, note))

    def close(self, storage: Storage, store: str, code: str, by: str, note: str | None) -> Case:
        """A person took an overdue case off the case list (from the CLI or the dashboard)."""
        return self._act(storage, store, code, lambda c, now: close_case(c, by, now, note))

    def _act(
        self, storage: Storage, store: str, code: str, rule: Callable[[Case, int], Case]
    ) -> Case:
        """A person's action on the case `code`, by `rule`, in one transaction."""
        with storage.transaction():
            before = storage.case_by_code(store, code)
            if before is None:
                raise RuleError(f"no case {code} in store {store}")
            after = rule(before, int(self.now()))
            self._change(storage, before, after)
        return after

    def tick(self, storage: Storage) -> set[str]:
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
                    storage.add_alert(alert)
                    storage.save_case(case, near_sent=True)
        return changed

    def stream_alerts(self, storage: Storage, stores: Iterable[str]) -> None:
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
                        storage.add_alert(alert)
