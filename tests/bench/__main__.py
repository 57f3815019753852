"""`make bench`: runs every benchmark in turn."""

from tests.bench import (
    contract_validation,
    dashboard_api,
    firmware_footprint,
    forecast_backtest,
    host_ingest,
    kiosk_drain,
    store_views,
)

for bench in (
    contract_validation,
    firmware_footprint,
    kiosk_drain,
    host_ingest,
    store_views,
    dashboard_api,
    forecast_backtest,
):
    bench.main()
