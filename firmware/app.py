"""The kiosk's main loop: buttons, screen timeouts, the link and the watchdog, as asyncio tasks."""

import asyncio

TICK_MS = 50  # screen timeouts are checked this often; a press is handled on its own scan


async def run(kiosk, buttons, clock, wdt=None, guard=None, link=None) -> None:
    """Run until reset. `wdt` is fed on every pass, so a stuck loop restarts the kiosk."""
    asyncio.create_task(buttons.run())
    linked = asyncio.create_task(_linked(link)) if link is not None else None
    started = clock.ticks_ms()
    stable = guard is None
    while True:
        if linked is not None and linked.done():
            # link.run() is written never to end; if it does all the same, the kiosk must not
            # go on with presses piling up unsent: what ended it is recorded and counted, and
            # the link starts again.
            link.restarts += 1
            linked = asyncio.create_task(_linked(link))
        kiosk.tick()
        clock.uptime_ms()  # keeps the uptime right across the tick counter's wrap
        if wdt is not None:
            wdt.feed()
        if not stable and clock.since_ms(started) >= guard.STABLE_MS:
            guard.running()
            stable = True
        await asyncio.sleep_ms(TICK_MS)


async def _linked(link) -> None:
    """link.run(), and why it ended if it does: caught here, in the task itself, since an
    exception left in a task nobody awaits yet is printed as not retrieved, and lost."""
    try:
        await link.run()
        why = "link: ended"
    except Exception as e:
        why = "link: " + type(e).__name__ + ": " + str(e)
    link.set_error(why[: link.ERROR_MAX])
