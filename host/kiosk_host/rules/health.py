"""Kiosk health (docs/operating.md#kiosk-health): online, offline or refused, worked out when read.

Pure functions, no I/O and no clock reads. A kiosk sends telemetry every
`telemetry_interval_s` of its config (60 s when the host has not seen its config). It is
`offline` once nothing came from it for more than two intervals (the sample due after one
interval is a whole interval late), or when its last will said so; `refused` when the broker
refused its connection after it was last heard of (a removed account, a wrong password), until
it next connects; else `online`.

The broker says whom it refused in its own log, which mosquitto publishes on
`$SYS/broker/log/N` (`log_dest topic`). mosquitto 2.0 writes a refused connection as
``Client <unknown> disconnected, not authorised.``: it checks the password before it takes the
client's id, so the line names nobody. `BrokerLog` pairs it with the connection it ends
(``New connection from ADDRESS:PORT ...``) and that address with the kiosk last connected
from it (``New client connected from ADDRESS:PORT as STORE/DEVICE ...``). Where several kiosks
share an address (behind one NAT), nobody is named: those kiosks show offline once late.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

State = Literal["online", "offline", "refused"]
DEFAULT_INTERVAL_S: Final = 60  # the firmware's telemetry interval until a config sets one
MISSED_INTERVALS: Final = 2  # offline once silent for more than this many intervals
BROKER_LOG: Final = "$SYS/broker/log/N"  # mosquitto's notices: connections and refusals
PENDING_S: Final = 30  # a connection not yet accepted nor refused is forgotten after this


@dataclass(frozen=True)
class Health:
    """How a kiosk is, and by how many seconds its telemetry is overdue (0 while on time;
    None when it was never heard of)."""

    state: State
    late_s: int | None


def kiosk_health(
    now: int,
    *,
    state: str | None,
    since: int | None,
    telemetry_at: int | None,
    interval_s: int | None,
    refused_at: int | None,
) -> Health:
    """The health of one kiosk at `now` from what was stored of it (arrival times, Unix s):
    `state` and `since` of its retained status (online, or its last will's offline),
    `telemetry_at` of its last telemetry, `interval_s` of its config, `refused_at` of the
    broker's last refusal of its connection."""
    every = interval_s or DEFAULT_INTERVAL_S
    connected = since if state == "online" else None
    heard = max((t for t in (telemetry_at, connected) if t is not None), default=None)
    late = None if heard is None else max(0, now - heard - every)
    if refused_at is not None and (heard is None or refused_at > heard):
        return Health("refused", late)
    if heard is None or now - heard > MISSED_INTERVALS * every:
        return Health("offline", late)
    if state == "offline" and since is not None and since >= heard:
        return Health("offline", late)  # its last will came after its last telemetry
    return Health("online", late)


_STAMP = re.compile(r"^\d+: ")  # log_timestamp: the broker's own clock, left aside
_NEW = re.compile(r"^New connection from (\S+) on port \d+\.$")
_ACCEPTED = re.compile(r"^New client connected from (\S+) as (\S+) ")
_REFUSED = re.compile(r"^Client (\S+)(?: \[(\S+)\])? disconnected[,:] not authori[sz]ed\.?$")
_ENDED = re.compile(r"^(?:Client <unknown> |Socket error on client <unknown>)")


def _host(address: str) -> str:
    """The address without its port (`10.0.0.7:51234` -> `10.0.0.7`)."""
    return address.rsplit(":", 1)[0]


def kiosk_of(client: str) -> tuple[str, str] | None:
    """(store, device) of a kiosk's client id `store/device`; None for any other client."""
    store, slash, device = client.partition("/")
    return (store, device) if slash and store and device and "/" not in device else None


class BrokerLog:
    """Reads the broker's notices line by line and says which kiosks it refused."""

    def __init__(self) -> None:
        self.pending: deque[tuple[str, int]] = deque()  # (address:port, when) not yet settled
        self.where: dict[str, str] = {}  # kiosk client id -> the address it last connected from

    def read(self, line: str, at: int) -> list[tuple[str, str]]:
        """The kiosks (store, device) that this line says were refused (at most one)."""
        text = _STAMP.sub("", line.strip())
        while self.pending and at - self.pending[0][1] > PENDING_S:
            self.pending.popleft()
        if m := _NEW.match(text):
            self.pending.append((m.group(1), at))
            return []
        if m := _ACCEPTED.match(text):
            address, client = m.groups()
            self._settle(address)
            if kiosk_of(client):
                self.where[client] = _host(address)
            return []
        if m := _REFUSED.match(text):
            client, address = m.groups()
            if client != "<unknown>":  # a broker that names the client
                if address:
                    self._settle(address)
                elif self.pending:
                    self.pending.popleft()
                kiosk = kiosk_of(client)
                return [kiosk] if kiosk else []
            return self._refused_at(address)
        if _ENDED.match(text) and self.pending:
            self.pending.popleft()  # some other end of a connection that never got an id
        return []

    def _settle(self, address: str) -> None:
        for i, (pending, _) in enumerate(self.pending):
            if pending == address:
                del self.pending[i]
                return

    def _refused_at(self, address: str | None) -> list[tuple[str, str]]:
        if address is None:
            hosts = {_host(a) for a, _ in self.pending}
            if len(hosts) != 1:
                if self.pending:
                    self.pending.popleft()  # which one is not known: nobody is named
                return []
            host = hosts.pop()
            self.pending.popleft()
        else:
            self._settle(address)
            host = _host(address)
        kiosks = [c for c, h in self.where.items() if h == host]
        if len(kiosks) != 1:
            return []
        kiosk = kiosk_of(kiosks[0])
        return [kiosk] if kiosk else []
