"""`make bench`: runs every benchmark in turn."""

from tests.bench import contract_validation

for bench in (contract_validation,):
    bench.main()
