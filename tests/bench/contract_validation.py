"""Contract validation of a rating, against plain json.loads of the same bytes in the same run."""

from __future__ import annotations

import json

from kiosk_host.wire.contract import Contract, Message
from tests.bench.timing import rate_per_second

TOPIC = "kiosk/v1/store-12/till-1/event"
RATING = (
    b'{"v":1,"kind":"rating","store":"store-12","device":"till-1","seq":1042,"ts":1763900000,'
    b'"up_ms":86400123,"score":4,"scale":4,"station":"till-1","staff":"ana"}'
)


def main() -> None:
    contract = Contract.load()
    assert isinstance(contract.validate(TOPIC, RATING), Message)
    validated = rate_per_second(lambda: contract.validate(TOPIC, RATING))
    parsed = rate_per_second(lambda: json.loads(RATING))
    print(
        f"contract validation of a rating: {validated:,.0f}/s; json.loads of the same bytes: "
        f"{parsed:,.0f}/s; ratio {validated / parsed:.3f}"
    )
