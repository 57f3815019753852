"""`make bench`: runs every benchmark in turn."""

from tests.bench import contract_validation, firmware_footprint

for bench in (contract_validation, firmware_footprint):
    bench.main()
