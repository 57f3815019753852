"""The aggregator's Prometheus metrics: what ingest counts as it commits, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()  # the product's own; the default one carries the process's

EVENTS = Counter("kiosk_events_stored", "Kiosk events stored, each once", registry=REGISTRY)
DUPLICATES = Counter(
    "kiosk_events_duplicate", "Redelivered or replayed events counted once", registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "kiosk_dead_letters", "Messages refused and kept in the dead-letter table", registry=REGISTRY
)
MESSAGES = Counter("kiosk_messages_received", "MQTT messages taken in", registry=REGISTRY)
COMMIT_SECONDS = Histogram(
    "kiosk_commit_seconds",
    "Time from a batch's first message arriving to its commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)


def record_commit(messages: int, events: int, duplicates: int, dead: int, seconds: float) -> None:
    """Count one committed batch."""
    MESSAGES.inc(messages)
    EVENTS.inc(events)
    DUPLICATES.inc(duplicates)
    DEAD_LETTERS.inc(dead)
    COMMIT_SECONDS.observe(seconds)
