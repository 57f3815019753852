"""The dashboard's web application: pages, JSON API, live streams, exports, health, metrics.

Reading needs no token; every POST needs the managers' token (`auth`). Every figure comes
from the library functions that the `kiosk-host ... --json` commands print (`views`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiosk_host import __version__
from kiosk_host.aggregator import risk
from kiosk_host.aggregator.metrics import REGISTRY
from kiosk_host.dashboard import auth, export, gauges, live
from kiosk_host.dashboard.views import PERIODS, Views, case_json, roster_json, states_of
from kiosk_host.rules.recovery import RuleError
from kiosk_host.rules.stores import Stores, local_day
from kiosk_host.wire.identifiers import CaseCodeError, check_case_code, identifier_pattern

HERE = Path(__file__).parent
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none';"
     b" base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip
NAME_MAX = 64
RISK_S = 60.0  # next week's forecast reads eight weeks: made at most once a minute per store
TEXT_MAX = 500


class _Headers:
    """Adds the security headers to every response: scripts and styles only from the
    dashboard itself, no framing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status, headers)


def create_app(
    db_path: str | Path,
    stores: Stores,
    token: str | None,
    *,
    now: Callable[[], float] = time.time,
    cache_s: float = 10.0,
) -> Starlette:
    """The dashboard over the database at `db_path` (the aggregator's file). `token` None
    makes it read-only; `now` is the clock (frozen in benchmarks); views are kept up to
    `cache_s` seconds while the database does not change."""
    views = Views(str(db_path), stores, now, cache_s)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True
    )
    templates = Jinja2Templates(env=env)

    def known(store: str) -> str:
        if not views.known(store):
            raise HTTPException(404, f"no store {store!r}: the stores are at /api/stores")
        return store

    async def store_of(request: Request) -> str:
        store: str = request.path_params["store"]
        return await anyio.to_thread.run_sync(known, store)

    def period_of(request: Request, default: str) -> str:
        period = request.query_params.get("period", default)
        if period not in PERIODS:
            raise HTTPException(400, f"period={period!r}: expected one of {', '.join(PERIODS)}")
        return period

    def limit_of(request: Request, default: int) -> int:
        text = request.query_params.get("limit", str(default))
        if not text.isdigit() or not 1 <= int(text) <= 10_000:
            raise HTTPException(400, f"limit={text!r}: expected a whole number from 1 to 10000")
        return int(text)

    def authorize(request: Request) -> None:
        auth.check(token, request.headers.get("authorization"))

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    def text_of(body: dict[str, Any], key: str, most: int, required: bool = True) -> str | None:
        value = body.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > most:
            raise HTTPException(400, f"{key!r}: expected text of 1 to {most} characters")
        return value.strip()

    def code_of(request: Request) -> str:
        # A code is read off the kiosk's screen and typed: a7k36 is the case A7K36, and a
        # slip of one character (or two swapped) fails its check instead of naming another.
        try:
            return check_case_code(request.path_params["code"])
        except CaseCodeError as why:
            raise HTTPException(400, str(why)) from None

    def api(view: Callable[[], Any]) -> Callable[[], Response]:
        return lambda: JSONResponse(view(), headers={"cache-control": "no-store"})

    # -- pages -------------------------------------------------------------------------------

    async def overview_page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "overview.html", {"writable": token is not None, "version": __version__}
        )

    async def store_page(request: Request) -> Response:
        store = await store_of(request)
        cfg = stores.get(store)
        context = {
            "store": store, "tz": cfg.tz_name, "scale": cfg.scale, "low": cfg.low_threshold,
            "near_s": cfg.near_s,
            "writable": token is not None, "version": __version__,
            "today": local_day(cfg, int(now())).isoformat(), "roster": roster_json(cfg),
        }  # fmt: skip
        return templates.TemplateResponse(request, "store.html", context)

    # -- the JSON API ------------------------------------------------------------------------

    async def api_stores(request: Request) -> Response:
        return await anyio.to_thread.run_sync(api(views.overview))

    async def api_summary(request: Request) -> Response:
        store = await store_of(request)
        return await anyio.to_thread.run_sync(api(lambda: views.summary(store)))

    async def api_report(request: Request) -> Response:
        store, period = await store_of(request), period_of(request, "week")
        return await anyio.to_thread.run_sync(api(lambda: views.report(store, period)))

    async def api_cases(request: Request) -> Response:
        store = await store_of(request)
        try:
            states = states_of(request.query_params.getlist("state"))
        except ValueError as why:
            raise HTTPException(400, str(why)) from None
        limit = limit_of(request, 200)
        return await anyio.to_thread.run_sync(api(lambda: views.cases(store, states, limit)))

    async def api_alerts(request: Request) -> Response:
        store, limit = await store_of(request), limit_of(request, 100)
        return await anyio.to_thread.run_sync(api(lambda: views.alerts(store, limit)))

    async def api_recognition(request: Request) -> Response:
        store, period = await store_of(request), period_of(request, "week")
        return await anyio.to_thread.run_sync(api(lambda: views.recognition(store, period)))

    async def api_roster(request: Request) -> Response:
        store = await store_of(request)
        staff = roster_json(stores.get(store))
        return JSONResponse({"store": store, "staff": staff}, headers={"cache-control": "no-store"})

    async def api_devices(request: Request) -> Response:
        store = await store_of(request)
        return await anyio.to_thread.run_sync(api(lambda: views.devices(store)))

    def next_week(store: str) -> dict[str, Any]:
        # Kept like the other views (until the database changes or the cache's stretch ends),
        # and at least RISK_S after it was made: one more rating hardly moves eight weeks.
        return views._cached(
            ("risk", store),
            lambda: risk.next_week(views.storage(), stores.get(store), store, int(now())),
            settle_s=RISK_S,
        )

    async def api_risk(request: Request) -> Response:
        store = await store_of(request)
        return await anyio.to_thread.run_sync(api(lambda: next_week(store)))

    def event_stream(make: Callable[[], dict[str, Any]]) -> Response:
        return StreamingResponse(
            live.stream(views.changes, make, now),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def overview_stream(request: Request) -> Response:
        return event_stream(lambda: {"stores": views.overview()})

    async def store_stream(request: Request) -> Response:
        store = await store_of(request)
        return event_stream(lambda: views.store_page(store))

    async def csv_export(request: Request) -> Response:
        store, what = await store_of(request), request.path_params["what"]
        if what not in ("ratings", "cases"):
            raise HTTPException(404, f"no export {what}.csv: ratings.csv and cases.csv")
        cfg = stores.get(store)
        try:
            since, until = export.day_range(
                cfg,
                request.query_params.get("from"),
                request.query_params.get("to"),
                local_day(cfg, int(now())),
            )
        except ValueError as why:
            raise HTTPException(400, str(why)) from None
        make = export.ratings_csv if what == "ratings" else export.cases_csv
        days = f"{request.query_params.get('from', 'today')}_{request.query_params.get('to', '')}"
        name = f"{store}-{what}-{days.strip('_')}.csv"
        return StreamingResponse(
            make(views.reader, cfg, store, since, until),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    # -- changes (the managers' token) -------------------------------------------------------

    async def token_check(request: Request) -> Response:
        authorize(request)
        return JSONResponse({"ok": True})

    async def alert_change(request: Request) -> Response:
        authorize(request)
        store = await store_of(request)
        alert_id, action = request.path_params["alert"], request.path_params["action"]
        if action not in ("ack", "comment"):
            raise HTTPException(404, f"no action {action!r} on alerts: ack or comment")
        body = await body_of(request)
        by = text_of(body, "by", NAME_MAX) if action == "ack" else None
        comment = text_of(body, "text", TEXT_MAX) if action == "comment" else None

        def change() -> bool:
            if views.storage().alert_store(alert_id) != store:
                return False
            return views.note_alert(alert_id, by, comment)

        if not await anyio.to_thread.run_sync(change):
            raise HTTPException(404, f"no alert {alert_id!r} in store {store!r}")
        return JSONResponse({"ok": True, "id": alert_id, "acked_by": by, "comment": comment})

    async def case_fix(request: Request) -> Response:
        authorize(request)
        store = await store_of(request)
        code = code_of(request)
        body = await body_of(request)
        staff = text_of(body, "staff", 32) or ""
        if not identifier_pattern().fullmatch(staff):
            raise HTTPException(
                400, f"staff {staff!r}: expected a staff id (lower-case letters, digits, '-')"
            )
        note = text_of(body, "note", TEXT_MAX, required=False)

        def fix() -> dict[str, Any] | None:
            if views.storage().case_by_code(store, code) is None:
                return None
            return case_json(views.fix_case(store, code, staff, note), int(now()))

        try:
            fixed = await anyio.to_thread.run_sync(fix)
        except RuleError as why:
            return _error(409, why.reason)
        if fixed is None:
            raise HTTPException(404, f"no case {code!r} in store {store!r}")
        return JSONResponse(fixed)

    async def case_close(request: Request) -> Response:
        """A person takes an overdue case off the list, as `kiosk-host cases close` does."""
        authorize(request)
        store = await store_of(request)
        code = code_of(request)
        body = await body_of(request)
        by = text_of(body, "by", NAME_MAX) or ""
        note = text_of(body, "note", TEXT_MAX, required=False)

        def close() -> dict[str, Any] | None:
            if views.storage().case_by_code(store, code) is None:
                return None
            return case_json(views.close_case(store, code, by, note), int(now()))

        try:
            closed = await anyio.to_thread.run_sync(close)
        except RuleError as why:
            return _error(409, why.reason)
        if closed is None:
            raise HTTPException(404, f"no case {code!r} in store {store!r}")
        return JSONResponse(closed)

    # -- operations --------------------------------------------------------------------------

    def healthz() -> Response:
        try:
            schema = views.storage().version()
        except Exception as why:  # SQLite's or PostgreSQL's error: the database cannot answer
            return JSONResponse({"status": "error", "error": str(why)}, 503)
        return JSONResponse({"status": "ok", "version": __version__, "schema": schema})

    async def health(request: Request) -> Response:
        return await anyio.to_thread.run_sync(healthz)

    async def metrics(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(generate_latest, REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return _error(exc.status_code, exc.detail)
        return templates.TemplateResponse(
            request, "error.html", {"reason": exc.detail, "version": __version__},
            status_code=exc.status_code,
        )  # fmt: skip

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, auth.Refused)
        headers = {"www-authenticate": 'Bearer realm="kiosk-dashboard"'}
        return _error(exc.status, exc.reason, headers if exc.status == 401 else None)

    source = views.gauges

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.create_task(views.changes.watch())
        gauges.install(source)
        try:
            yield
        finally:
            views.changes.closing.set()
            await watcher
            gauges.uninstall(source)
            views.close()

    store_api = "/api/stores/{store}"
    routes = [
        Route("/", overview_page, name="overview"),
        Route("/stores/{store}", store_page, name="store"),
        Route("/healthz", health),
        Route("/metrics", metrics),
        Route("/api/stores", api_stores),
        Route("/api/stream", overview_stream),
        Route("/api/token", token_check),
        Route(f"{store_api}/summary", api_summary),
        Route(f"{store_api}/report", api_report),
        Route(f"{store_api}/cases", api_cases),
        Route(f"{store_api}/alerts", api_alerts),
        Route(f"{store_api}/recognition", api_recognition),
        Route(f"{store_api}/devices", api_devices),
        Route(f"{store_api}/risk", api_risk),
        Route(f"{store_api}/roster", api_roster),
        Route(f"{store_api}/stream", store_stream),
        Route(store_api + "/{what:str}.csv", csv_export),
        Route(store_api + "/alerts/{alert}/{action}", alert_change, methods=["POST"]),
        Route(store_api + "/cases/{code}/fix", case_fix, methods=["POST"]),
        Route(store_api + "/cases/{code}/close", case_close, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, auth.Refused: refused},
    )
    app.add_middleware(_Headers)
    app.state.views = views
    return app
