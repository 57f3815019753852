"""Which aggregator of a group runs the clock: deadlines, stream alerts, alert hand-over, views.

Every aggregator of a group (`serve --share GROUP` on one PostgreSQL database) stores and
acknowledges what the broker hands it; only one of them, the leader, ticks. Leading is holding
a PostgreSQL session-level advisory lock on a connection of the leader's own, kept for the
process's life: when the leader dies, even by `kill -9`, its socket closes, the server ends
its session and frees the lock, and a follower, trying every second, takes it. On SQLite there
is one aggregator, and it always leads.

The leader must also hear what the others stored, to send the views of those stores once per
change: after each commit, every aggregator says so on a PostgreSQL notification channel
(LISTEN/NOTIFY), naming the stores it stored events for and how many transactions it made.
A notification needs no table of its own (no schema change) and reaches the leader within its
tick. One that is never sent (the aggregator died between its commit and its notification)
is made good by the broker: the batch was not acknowledged, so it comes again, is stored as
duplicates, dirties its stores and is notified then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from kiosk_host.storage import is_postgres


class Leader(Protocol):
    """Whether this aggregator leads its group, and what the others of it stored."""

    def leading(self) -> bool:
        """True while this aggregator leads; a follower tries to take over (each RETRY_S)."""
        ...

    def took_over(self) -> bool:
        """True once after this aggregator became leader: what the last one sent is unknown."""
        ...

    def stored(self, stores: Iterable[str], rated: Iterable[str], transactions: int) -> None:
        """Tell the group: this aggregator committed `transactions` writes, with events of
        `stores` (ratings among them for `rated`)."""
        ...

    def heard(self) -> tuple[set[str], set[str]]:
        """The stores the others stored events for since last asked, and those with ratings."""
        ...

    def outside(self, changes: int) -> bool:
        """Whether `changes` (storage.outside_changes()) moved for a reason other than the
        group's own writes: a person's action from the CLI or the dashboard."""
        ...

    def close(self) -> None: ...


class Alone:
    """One aggregator on its own (SQLite): it always leads, and hears of no one else."""

    def __init__(self) -> None:
        self._last: int | None = None

    def leading(self) -> bool:
        return True

    def took_over(self) -> bool:
        return False  # it has led since it started, and sent every change itself

    def stored(self, stores: Iterable[str], rated: Iterable[str], transactions: int) -> None:
        return None

    def heard(self) -> tuple[set[str], set[str]]:
        return set(), set()

    def outside(self, changes: int) -> bool:
        moved = self._last is not None and changes != self._last
        self._last = changes
        return moved

    def close(self) -> None:
        return None


def leader_for(db: str, role: str = "clock") -> Leader:
    """The leadership of the aggregators on `db`: the advisory lock on PostgreSQL, else sole.
    The `clock` (ticks, alerts, views) and the `sender` of deliveries each have a lock of
    their own, so that one aggregator's slow mail server never holds up the views."""
    if not is_postgres(db):
        return Alone()
    from kiosk_host.storage.postgres_leader import LEADER_KEY, SENDER_KEY, Advisory

    return Advisory(db, SENDER_KEY if role == "sender" else LEADER_KEY)
