"""Prometheus gauges read from the database at scrape time, beside the ingest counters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from kiosk_host.aggregator.metrics import REGISTRY

Source = Callable[[], tuple[dict[str, int], int]]  # (waiting cases per store, dead letters)


class StoreGauges:
    """Cases waiting per store and dead letters kept, from the dashboard started last of
    those still serving in the process."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with _lock:
            source = self.sources[-1] if self.sources else None
        if source is None:
            return []
        waiting, dead = source()
        return self._families(waiting, dead)

    @staticmethod
    def _families(waiting: dict[str, int] | None = None, dead: int | None = None) -> list[Metric]:
        cases = GaugeMetricFamily(
            "kiosk_open_cases",
            "Recovery cases waiting for staff or the customer (open or fixed)",
            labels=["store"],
        )
        for store, n in sorted((waiting or {}).items()):
            cases.add_metric([store], n)
        letters = GaugeMetricFamily(
            "kiosk_dead_letters_stored",
            "Refused messages kept in the database's dead-letter table",
            value=dead if dead is not None else None,
        )
        return [cases, letters]


GAUGES = StoreGauges()
_lock = threading.Lock()
_registered = False


def install(source: Source) -> None:
    """Serve `source`'s figures on kiosk_host.metrics.REGISTRY (registered once a process)."""
    global _registered
    with _lock:
        if not _registered:
            REGISTRY.register(GAUGES)
            _registered = True
        GAUGES.sources.append(source)


def uninstall(source: Source) -> None:
    with _lock:
        if source in GAUGES.sources:
            GAUGES.sources.remove(source)
