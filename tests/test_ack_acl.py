"""Who may read and write a kiosk's mark (kiosk/v1/{store}/{device}/ack), on a broker with the
shipped settings and ACL as provisioning writes them: the kiosk reads its own only, and only
the aggregators write it (a kiosk that could would let its own outbox go unstored)."""

from __future__ import annotations

from collections.abc import Callable

from tests.fleet_rig import Client
from tests.test_security import STORE, Fleet, fleet
from tests.virtual_kiosks import wait_until

__all__ = ["fleet"]  # the module-scoped broker with provisioned kiosks, from test_security


def test_a_kiosk_reads_its_own_mark_only_and_only_the_aggregator_writes_it(
    fleet: Fleet, closing: Callable[[Client], Client]
) -> None:
    host = closing(fleet.client("watch", "host-ack"))  # an aggregator account of its own
    assert host.subscribe(f"kiosk/v1/{STORE}/+/ack") == [1]
    mine, theirs = f"kiosk/v1/{STORE}/till-1/ack", f"kiosk/v1/{STORE}/till-2/ack"
    host.publish(mine, b'{"v":1,"seq":7}', retain=True)
    host.publish(theirs, b'{"v":1,"seq":9}', retain=True)
    a = closing(fleet.client("till-1", "a-ack"))
    # Forged marks, its own and another kiosk's: the broker drops both (and still PUBACKs).
    a.publish(mine, b'{"v":1,"seq":999}', retain=True)
    a.publish(theirs, b'{"v":1,"seq":999}', retain=True)
    a.subscribe(theirs, f"kiosk/v1/{STORE}/+/ack", "kiosk/#")
    a.subscribe(mine)  # answered after the others: whatever they would give is in by then
    wait_until(lambda: len(a.on(mine)) >= 1, 10, "its own retained mark")
    assert set(a.on(mine)) == {b'{"v":1,"seq":7}'}  # the host's, not its forgery
    assert set(a.topics()) == {mine}
    wait_until(lambda: len(host.on(mine)) >= 1 and len(host.on(theirs)) >= 1, 10, "marks")
    assert host.on(mine) == [b'{"v":1,"seq":7}']
    assert host.on(theirs) == [b'{"v":1,"seq":9}']
    b = closing(fleet.client("till-2", "b-ack"))
    b.subscribe(mine)
    b.subscribe(theirs)
    wait_until(lambda: len(b.on(theirs)) >= 1, 10, "till-2's own mark")
    assert set(b.topics()) == {theirs}
