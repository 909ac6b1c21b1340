"""``python -m serving BUNDLE [BUNDLE ...]``: verify the bundles, then serve them over HTTP.

Binds 127.0.0.1 unless ``--host`` says otherwise; ``--port 0`` picks a free port (the
``listening`` log line names it). The bearer token comes from ``--token-file`` or the
``SERVING_TOKEN`` environment variable (``--token`` works too, but shows in the process list).
A bundle that fails verification is refused before anything listens (exit code 2).
The server meters its own energy (RAPL, NVML, else an estimate from its CPU time; see
:mod:`serving.live_energy`) every ``--meter-interval-s`` seconds; ``--no-live-meter`` turns that
off, with its series.
SIGTERM or Ctrl-C stops accepting connections, finishes accepted requests (up to ``--grace-s``),
drains the batchers, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from serving.app import DEFAULT_MAX_BODY_BYTES, JsonFormatter, ServingApp
from serving.endpoint import Endpoint
from serving.live_energy import LiveMeter
from serving.manifest import BundleError, load_bundle, unpack_archive
from serving.metrics import ServingMetrics

log = logging.getLogger("serving")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", help="bundle folders or .tar.gz archives")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--token", default=None, help="bearer token (prefer SERVING_TOKEN)")
    p.add_argument("--token-file", default=None, help="file holding the bearer token")
    p.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20)
    p.add_argument("--grace-s", type=float, default=30.0, help="most time to finish requests")
    p.add_argument("--idle-timeout-s", type=float, default=30.0, help="close idle keep-alives")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request (costs CPU)")
    p.add_argument(
        "--meter-interval-s",
        type=_positive,
        default=1.0,
        help="seconds between live energy readings (default 1.0)",
    )
    p.add_argument(
        "--no-live-meter", action="store_true", help="do not meter energy live (no live series)"
    )
    return p.parse_args(argv)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0; try 1.0")
    return value


def live_meter(
    args: argparse.Namespace, endpoints: list[Endpoint], metrics: ServingMetrics
) -> LiveMeter | None:
    """The live meter over the meters found here (``None`` with ``--no-live-meter``)."""
    if args.no_live_meter:
        return None
    return LiveMeter.for_endpoints(endpoints, metrics, interval_s=args.meter_interval_s)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def read_token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip() or None
    return args.token or os.environ.get("SERVING_TOKEN") or None


async def serve(app: ServingApp, sock: socket.socket, args: argparse.Namespace) -> None:
    from serving.http import HttpServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def internal_error(request, exc: BaseException) -> None:
        log.error("internal error", extra={"path": request.path, "error": repr(exc)})

    server = HttpServer(app, idle_timeout_s=args.idle_timeout_s, log=internal_error)
    await server.start(sock)
    app.start()
    host, port = sock.getsockname()[:2]
    log.info(
        "listening",
        extra={
            "host": host,
            "port": port,
            "models": list(app.endpoints),
            "auth": app.auth is not None,
            "loop": type(loop).__module__.split(".")[0],
            "runtime": str(Path(__file__).resolve().parent),
        },
    )
    await stop.wait()
    log.info("stopping", extra={"grace_s": args.grace_s})
    finished = await server.shutdown(args.grace_s)
    if not finished:
        log.warning("grace period over: closed connections with requests in flight")
    await app.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    metrics = ServingMetrics()
    archives = any(Path(p).is_file() for p in args.bundles)
    # Archives are unpacked to a temporary folder; plain folders need no writable disk.
    with tempfile.TemporaryDirectory(prefix="serving-") if archives else _nothing() as unpack_dir:
        try:
            endpoints = []
            for i, path in enumerate(args.bundles):
                folder = Path(path)
                if folder.is_file():
                    folder = unpack_archive(folder, Path(unpack_dir) / str(i))
                endpoints.append(Endpoint(load_bundle(folder), metrics))
            app = ServingApp(
                endpoints,
                token=read_token(args),
                max_body_bytes=int(args.max_body_mb * 2**20),
                metrics=metrics,
                access_log=args.access_log,
                live_meter=live_meter(args, endpoints, metrics),
            )
        except (BundleError, ValueError, OSError) as exc:
            log.error("bundle refused", extra={"error": str(exc)})
            return 2
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            sock.close()
            log.error(
                "cannot listen",
                extra={
                    "error": f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                    "pick another --port (0: any free port) or --host"
                },
            )
            return 2
        _run(serve(app, sock, args))
    return 0


def _run(coro) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the requirements (not on Windows)
        asyncio.run(coro)
    else:
        uvloop.run(coro)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
