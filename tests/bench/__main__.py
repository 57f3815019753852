"""`make bench`: runs every benchmark in turn."""

from tests.bench import contract_validation, firmware_footprint, host_ingest, kiosk_drain

for bench in (contract_validation, firmware_footprint, kiosk_drain, host_ingest):
    bench.main()
