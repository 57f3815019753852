"""`make bench`: runs every benchmark in turn."""

from tests.bench import (
    contract_validation,
    firmware_footprint,
    host_ingest,
    kiosk_drain,
    store_views,
)

for bench in (contract_validation, firmware_footprint, kiosk_drain, host_ingest, store_views):
    bench.main()
