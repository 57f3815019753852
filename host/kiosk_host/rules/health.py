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

Two alerts come from a kiosk's health (docs/recovery.md#alerts): `kiosk_offline` once a kiosk
has been offline or refused for the store's `offline_alert_minutes` counted inside opening
hours (a kiosk switched off with the lights at closing time is no news), once per spell; and
`outbox_filling` when its telemetry says its outbox is more than half full: it keeps
customers' presses it cannot hand over, and past full it lets the oldest go.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from kiosk_host.rules.recovery import Alert, duration, local_time
from kiosk_host.rules.stores import StoreConfig, is_open

State = Literal["online", "offline", "refused"]
DEFAULT_INTERVAL_S: Final = 60  # the firmware's telemetry interval until a config sets one
MISSED_INTERVALS: Final = 2  # offline once silent for more than this many intervals
BROKER_LOG: Final = "$SYS/broker/log/N"  # mosquitto's notices: connections and refusals
PENDING_S: Final = 30  # a connection not yet accepted nor refused is forgotten after this
OUTBOX_DEFAULT_MAX: Final = 2000  # the firmware's outbox, for kiosks whose telemetry omits it
OUTBOX_ALERT_SHARE: Final = 0.5  # outbox_filling above this share of the outbox
OUTBOX_ALERT_EVERY_S: Final = 6 * 3600  # told again this often while it stays above


@dataclass(frozen=True)
class Health:
    """How a kiosk is, by how many seconds its telemetry is overdue (0 while on time; None
    when it was never heard of), and since when it is offline or refused (None while
    online, or when it was never heard of)."""

    state: State
    late_s: int | None
    down_since: int | None = None


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
        return Health("refused", late, refused_at)
    if state == "offline" and since is not None and (heard is None or since >= heard):
        return Health("offline", late, since)  # its last will came after its last telemetry
    if heard is None or now - heard > MISSED_INTERVALS * every:
        return Health("offline", late, None if heard is None else heard + MISSED_INTERVALS * every)
    return Health("online", late)


def open_seconds(cfg: StoreConfig, since: int, now: int, enough: int) -> int:
    """Seconds of [since, now) inside the store's opening hours, counted by the minute back
    from `now` and no further than `enough` of them (opening hours change on the minute)."""
    counted = 0
    t = now
    while t > since and counted < enough:
        step = min(60, t - since)
        if is_open(cfg, t - step):
            counted += step
        t -= step
    return counted


def offline_alert(
    cfg: StoreConfig, store: str, device: str, health: Health, now: int, last_sent_at: int | None
) -> Alert | None:
    """`kiosk_offline` when the kiosk has been down (offline or refused) for the store's
    `offline_alert_minutes` inside opening hours, raised while the store is open; once per
    spell (none when the last was sent at or after the spell began)."""
    since = health.down_since
    limit = cfg.offline_alert_minutes * 60
    if health.state == "online" or since is None or limit <= 0 or not is_open(cfg, now):
        return None
    if last_sent_at is not None and last_sent_at >= since:
        return None
    if open_seconds(cfg, since, now, limit) < limit:
        return None
    if health.state == "refused":
        when = local_time(cfg, since)
        text = f"{device} is refused by the broker since {when}: check its account"
    else:
        text = (
            f"{device} is offline since {local_time(cfg, since)} ({duration(now - since)}):"
            " customers cannot rate there; check its power and Wi-Fi"
        )
    return Alert("kiosk_offline", "warning", store, None, device, None, text, now)


def outbox_alert(
    store: str, device: str, outbox: int, outbox_max: int | None, at: int, last_sent_at: int | None
) -> Alert | None:
    """`outbox_filling` when the kiosk's outbox holds more than half of what it can
    (`outbox_max`, the firmware's 2000 when its telemetry does not say); again every
    OUTBOX_ALERT_EVERY_S while it stays above."""
    size = outbox_max or OUTBOX_DEFAULT_MAX
    if outbox <= OUTBOX_ALERT_SHARE * size:
        return None
    if last_sent_at is not None and at - last_sent_at < OUTBOX_ALERT_EVERY_S:
        return None
    text = (
        f"{device} holds {outbox} of at most {size} presses it could not hand over"
        f" ({round(100 * outbox / size)}%): check its connection to the host"
    )
    return Alert("outbox_filling", "warning", store, None, device, None, text, at)


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
