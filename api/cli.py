"""``python -m api serve [--host H] [--port N] [--workers N]`` | ``demo [--port N]`` | ``openapi``.

* ``serve``: run the HTTP API and dashboard (uvicorn) until stopped; prints the
  dashboard URL and, with the demo auth file, a demo token.  ``--workers N`` (or
  ``$METERLINE_API_WORKERS``) runs N uvicorn processes on one listening socket, each
  with its own app, Kafka producer and in-flight limit (``docs/api.md``).
* ``demo``: start ``serve`` detached (default port 8080), wait until it answers, print
  the dashboard URL, a demo token and the pid to stop it (``make demo``).
* ``openapi``: print the OpenAPI document (``> docs/openapi.json`` to refresh it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from api.settings import DEMO_AUTH_FILE, auth_file
from schemas.cli import command_line
from schemas.settings import Settings


def add_parsers(sub: Any, serve_name: str = "serve", demo: bool = True) -> None:
    """Add the API's commands to ``sub`` (``serve`` is ``api`` in ``meterline``, which
    starts the demo API through ``meterline demo``)."""
    serve = sub.add_parser(serve_name, help="run the HTTP API and dashboard until stopped")
    serve.add_argument("--host", help="default: $METERLINE_API_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: $METERLINE_API_PORT or 8080")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving requests (default: $METERLINE_API_WORKERS or 1)",
    )
    serve.set_defaults(handler=_serve)
    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(handler=_openapi)
    if not demo:
        return
    sub.add_parser("stop", help="stop the API that `demo` started").set_defaults(handler=_stop)
    start = sub.add_parser("demo", help="start the API in the background; print URL and token")
    start.add_argument("--port", type=int, default=8080)
    start.set_defaults(handler=_demo)


def main(argv: Sequence[str] | None = None, prog: str = "python -m api") -> int:
    return command_line(
        argv, prog=prog, description="The HTTP API and dashboard.", add_parsers=add_parsers
    )


def _openapi(_args: argparse.Namespace) -> int:
    from api.openapi import document

    print(json.dumps(document(), indent=2, sort_keys=True))
    return 0


def _stop(_args: argparse.Namespace) -> int:
    from api.server import stop_demo

    print("stopped the demo API" if stop_demo() else "no demo API was running")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from api.server import demo_banner, start_demo

    try:
        print(demo_banner(start_demo(args.port)))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.server import demo_tokens
    from schemas.errors import MeterlineError

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port
    workers = args.workers if args.workers is not None else settings.api_workers
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        _check_schema()
        app = create_app(settings)  # also refuses a bad configuration early
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Meterline API on http://{host}:{port}  (OpenAPI: /api/v1/openapi.json)", flush=True)
    if auth_file(settings) == DEMO_AUTH_FILE:
        tokens = demo_tokens()
        print(f"Dashboard: http://{host}:{port}/dashboard#token={tokens['admin']}", flush=True)
        for customer, token in tokens.items():
            if customer != "admin":
                print(f"  as customer {customer}: /dashboard#token={token}", flush=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
        return 0
    # Several processes: uvicorn imports the factory in each (one app, one Kafka producer
    # per process); the app built above only checked the configuration.
    app.state.services.delivery.close()
    app.state.services.reader.close()
    print(f"{workers} worker processes", flush=True)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )
    return 0


def _check_schema() -> None:
    """Refuse a ClickHouse schema older than this code (naming the command that migrates
    it); a ClickHouse that does not answer is not a reason to refuse ingest."""
    from schemas.errors import ServiceUnavailable
    from schemas.settings import Settings
    from schemas.storage.bootstrap import require_configured
    from schemas.storage.engine import ServerEngine

    pipeline = Settings()
    engine = ServerEngine(pipeline.clickhouse_host, pipeline.clickhouse_tcp_port)
    try:
        require_configured(engine, pipeline)
    except ServiceUnavailable as exc:
        logging.getLogger("api").warning("schema not checked: %s", exc)
    finally:
        engine.close()
