"""The ASGI application factory.  Nothing happens at import time: :func:`create_app`
loads the configuration, and the app's lifespan opens and closes Kafka and ClickHouse.

Framework: Starlette — a small, well-maintained ASGI toolkit (the base of FastAPI) that
gives direct access to the raw body and headers, which ingest needs (three media types,
a byte limit checked while streaming, exact decimals), without a model layer to work
around.  The OpenAPI document is written by hand in ``api.openapi`` and checked in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics, openapi
from api.auth import load_auth
from api.delivery import Delivery, KafkaDelivery
from api.pages import dashboard_html
from api.problems import HttpProblem, invalid
from api.responses import json_response, problem_response
from api.routes import Handlers
from api.services import Reader, Services
from api.settings import auth_file
from api.spend_routes import SpendHandlers
from invoicing.customers import load_customers
from invoicing.entitlements import FeatureSet, load_features
from rating import load_rate_card
from schemas.errors import InvalidInput, ServiceUnavailable
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.engine import Engine, ServerEngine, shard_engines
from schemas.storage.invoices_table import InvoiceStats
from streams.progress import consumer_lag

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    delivery: Delivery | None = None,
    engine_factory: Callable[[], Engine] | None = None,
    lag: Callable[[], dict[int, int]] | None = None,
) -> Starlette:
    """Build the service.  ``delivery``, ``engine_factory`` and ``lag`` replace Kafka and
    ClickHouse (tests); by default they connect to the services in ``settings``."""
    settings = settings or Settings()
    meters = load_meters(settings.meters_file)
    customers = load_customers(settings.customers_file)
    card = load_rate_card(settings.rate_card_file, known_meters=meters.slugs())
    features = (
        load_features(settings.features_file, meters.slugs(), card.plans)
        if settings.features_file
        else FeatureSet()
    )

    def server_engine() -> Engine:
        return ServerEngine.of(settings)

    services = Services(
        settings=settings,
        meters=meters,
        customers=customers,
        card=card,
        auth=load_auth(auth_file(settings), customers),
        reader=Reader(
            engine_factory or server_engine,
            shards=None if engine_factory else (lambda: shard_engines(settings)),
            database=settings.clickhouse_database,
        ),
        delivery=delivery
        or KafkaDelivery(
            settings.kafka_bootstrap,
            settings.events_topic,
            delivery_timeout_s=settings.api_delivery_timeout_s,
            linger_ms=settings.api_kafka_linger_ms,
            compression=settings.kafka_compression,
        ),
        features=features,
    )
    h = Handlers(services)
    spend = SpendHandlers(h)
    pipeline = CollectorRegistry()
    pipeline.register(
        metrics.PipelineCollector(lag or (lambda: _lag(settings)), lambda: _invoices(services))
    )

    async def whoami(request: Request) -> Response:
        p = h.principal(request)
        return json_response({"name": p.name, "namespace": p.namespace, "customer": p.customer})

    async def openapi_json(_: Request) -> Response:
        return json_response(openapi.document())

    def exposition() -> bytes:
        return generate_latest(REGISTRY) + generate_latest(pipeline)

    async def metrics_page(_: Request) -> Response:
        # the pipeline gauges ask Kafka and ClickHouse: keep that off the event loop
        return Response(await run_in_threadpool(exposition), media_type=CONTENT_TYPE_LATEST)

    async def dashboard(_: Request) -> Response:
        return HTMLResponse(dashboard_html(settings.api_dashboard_refresh_s))

    async def root(_: Request) -> Response:
        return RedirectResponse("/dashboard")

    async def healthz(_: Request) -> Response:
        return json_response({"status": "ok"})

    routes = [
        Route("/", root),
        Route("/dashboard", dashboard),
        Route("/healthz", healthz),
        Route("/metrics", metrics_page),
        Route("/api/v1/openapi.json", openapi_json),
        Route("/api/v1/whoami", whoami),
        Route("/api/v1/events", h.ingest, methods=["POST"]),
        Route("/api/v1/meters", h.list_meters),
        Route("/api/v1/meters/{slug}", h.get_meter),
        Route("/api/v1/meters/{slug}/subjects", h.meter_subjects),
        Route("/api/v1/meters/{slug}/query", h.meter_query),
        Route("/api/v1/customers", h.list_customers),
        Route("/api/v1/customers/{customerId}/quote", h.quote, methods=["POST"]),
        Route("/api/v1/customers/{customerId}/grants", spend.create_grant, methods=["POST"]),
        Route("/api/v1/customers/{customerId}/grants", spend.list_grants, methods=["GET"]),
        Route(
            "/api/v1/customers/{customerId}/grants/{grantId}/void",
            spend.void_grant,
            methods=["POST"],
        ),
        Route("/api/v1/customers/{customerId}/balance", spend.credit_balance),
        Route("/api/v1/customers/{customerId}/entitlements/{feature}", spend.entitlement),
        Route("/api/v1/invoices", h.list_invoices),
        Route("/api/v1/invoices/{invoiceId}", h.get_invoice),
        Route("/api/v1/invoices/{invoiceId}/lines/{lineNo}/events", h.invoice_line_events),
        Route("/api/v1/notifications/deliveries", spend.notification_deliveries),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        services.delivery.close()
        services.reader.close()

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpProblem)
        return problem_response(exc)

    async def on_invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidInput)
        return problem_response(invalid(exc))

    async def on_unavailable(_: Request, exc: Exception) -> Response:
        retry = {"Retry-After": str(settings.api_retry_after_s)}
        return problem_response(HttpProblem(503, "Service unavailable", str(exc), headers=retry))

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "HTTP error")
        problem = HttpProblem(exc.status_code, title, str(exc.detail), headers=exc.headers or {})
        return problem_response(problem)

    async def on_error(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(HttpProblem(500, "Internal error", "see the service log"))

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HttpProblem: on_problem,
            InvalidInput: on_invalid,
            ServiceUnavailable: on_unavailable,
            HTTPException: on_http,
            Exception: on_error,
        },
    )
    app.state.services = services
    app.state.credit_holders = spend.holders
    app.add_middleware(RequestMetrics, routes=routes)
    return app


class RequestMetrics:
    """Count and time every request by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app, self.routes = app, routes
        # a path without parameters is its own template: a dict look-up, not a regex per
        # route (this runs on every ingest request)
        self.static = {r.path for r in routes if "{" not in r.path}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = (
            path
            if path in self.static
            else next(
                (r.path for r in self.routes if r.matches(scope)[0] is not Match.NONE),
                "unmatched",
            )
        )
        status = 500
        started = time.monotonic()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            metrics.REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(time.monotonic() - started)


def _lag(settings: Settings) -> dict[int, int]:
    lag = consumer_lag(
        settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic, timeout=3.0
    )
    return lag.per_partition


def _invoices(services: Services) -> tuple[int, int]:
    rows = services.reader.run(
        InvoiceStats(services.settings.namespace).on(services.invoices_table).to_sql()
    )
    return int(rows[0][0]), int(rows[0][1])
