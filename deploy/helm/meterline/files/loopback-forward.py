"""Serve a loopback-only port of the pod on the pod's own address.

The worker's supervisor serves ``/healthz``, ``/readyz`` and ``/metrics`` on 127.0.0.1
(``METERLINE_WORKER_METRICS_PORT``), which Prometheus cannot reach: it scrapes a pod on
the pod's address.  This sidecar accepts connections on ``--listen-host:LISTEN_PORT`` and
copies bytes both ways to ``127.0.0.1:TARGET_PORT``.  It keeps no state and reads nothing
it copies: a scrape that fails while the worker restarts fails like a scrape of a worker
that is down, and the next scrape tries again.

Usage: ``python loopback-forward.py [--listen-host HOST] LISTEN_PORT TARGET_PORT``
"""

from __future__ import annotations

import argparse
import asyncio

CONNECT_TIMEOUT_S = 5.0
CHUNK = 65536


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half-close, not a close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _forward(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target_port: int
) -> None:
    try:
        target_r, target_w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", target_port), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        client_w.close()
        return
    try:
        await asyncio.gather(_copy(client_r, target_w), _copy(target_r, client_w))
    finally:
        target_w.close()
        client_w.close()


async def serve(listen_host: str, listen_port: int, target_port: int) -> None:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _forward(reader, writer, target_port)

    server = await asyncio.start_server(on_client, listen_host, listen_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-host", default="0.0.0.0")  # noqa: S104 (the pod's address)
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_port", type=int)
    args = parser.parse_args()
    asyncio.run(serve(args.listen_host, args.listen_port, args.target_port))


if __name__ == "__main__":
    main()
