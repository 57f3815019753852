"""Who may write and read a kiosk's log (kiosk/v1/{store}/{device}/log), on a broker with the
shipped settings and ACL as provisioning writes them: only the kiosk itself writes it; the
fleet tools and the aggregators read it; no other kiosk does."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.fleet_rig import Client
from tests.test_security import STORE, Fleet, fleet
from tests.virtual_kiosks import wait_until

__all__ = ["fleet"]  # the module-scoped broker with provisioned kiosks, from test_security


def fleet_tools(fleet: Fleet, client_id: str) -> Client:
    creds = json.loads((fleet.broker_dir / "fleet.json").read_text())
    return Client(fleet.broker.port, client_id, creds["user"], creds["password"])


def test_only_the_kiosk_writes_its_log_and_the_fleet_tools_and_aggregators_read_it(
    fleet: Fleet, closing: Callable[[Client], Client]
) -> None:
    mine, theirs = f"kiosk/v1/{STORE}/till-1/log", f"kiosk/v1/{STORE}/till-2/log"
    host = closing(fleet.client("watch", "host-log"))  # an aggregator account of its own
    assert host.subscribe(f"kiosk/v1/{STORE}/+/log") == [1]
    tools = closing(fleet_tools(fleet, "fleet-log"))
    assert tools.subscribe(f"kiosk/v1/{STORE}/+/log") == [1]
    b = closing(fleet.client("till-2", "b-log"))
    b.subscribe(mine, f"kiosk/v1/{STORE}/+/log")
    a = closing(fleet.client("till-1", "a-log"))
    a.publish(theirs, b"forged by till-1")  # dropped by the broker (which still PUBACKs)
    tools.publish(mine, b"forged by the fleet tools")  # they read logs, never write them
    a.publish(mine, b"till-1's own")
    wait_until(lambda: host.on(mine) == [b"till-1's own"], 10, "the kiosk's own log")
    wait_until(lambda: tools.on(mine) == [b"till-1's own"], 10, "the fleet tools reading it")
    b.publish(theirs, b"till-2's own")  # after the others: whatever they gave is in by then
    wait_until(lambda: host.on(theirs) == [b"till-2's own"], 10, "till-2's own log")
    assert host.topics() == [mine, theirs]  # nothing forged got in
    assert b.topics() == []  # no kiosk reads another's log, nor its own
