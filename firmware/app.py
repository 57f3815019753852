"""The kiosk's main loop: buttons, screen timeouts, the link and the watchdog, as asyncio tasks."""

import asyncio

TICK_MS = 50  # screen timeouts are checked this often; a press is handled on its own scan


async def run(kiosk, buttons, clock, wdt=None, guard=None, link=None) -> None:
    """Run until reset. `wdt` is fed on every pass, so a stuck loop restarts the kiosk."""
    asyncio.create_task(buttons.run())
    if link is not None:
        asyncio.create_task(link.run())
    started = clock.ticks_ms()
    stable = guard is None
    while True:
        kiosk.tick()
        clock.uptime_ms()  # keeps the uptime right across the tick counter's wrap
        if wdt is not None:
            wdt.feed()
        if not stable and clock.since_ms(started) >= guard.STABLE_MS:
            guard.running()
            stable = True
        await asyncio.sleep_ms(TICK_MS)
