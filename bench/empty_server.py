"""A grpc.aio server with one unary method that returns at once: the ceiling of every RPC benchmark.

Run as a child process: `python -m bench.empty_server --port N`. It uses a generic handler with
`google.protobuf.Empty` (de)serializers so that no proto compilation is needed. It stops on SIGTERM,
SIGINT, end of stdin (its parent died or closed the pipe) or after `--max-seconds`, whichever is first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence

import grpc
from google.protobuf.empty_pb2 import Empty

SERVICE = "bench.Empty"
METHOD = f"/{SERVICE}/Call"
_EMPTY = Empty()


async def _call(request: Empty, context: grpc.aio.ServicerContext) -> Empty:
    """The handler under test: no work at all."""
    return _EMPTY


def empty_handler() -> grpc.GenericRpcHandler:
    """The generic handler serving METHOD."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                _call, request_deserializer=Empty.FromString, response_serializer=Empty.SerializeToString
            )
        },
    )


def make_empty_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    """Call factory for `bench.rpcload`: one empty unary call to METHOD per invocation."""
    stub = channel.unary_unary(
        METHOD, request_serializer=Empty.SerializeToString, response_deserializer=Empty.FromString
    )
    request = Empty()

    def call() -> Awaitable[object]:
        pending: Awaitable[object] = stub(request)
        return pending

    return call


def install_uvloop() -> bool:
    """Use uvloop when it happens to be installed (it is not a dependency); True if it is in use."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return False
    uvloop.install()
    return True


def start_watchdog(max_seconds: float) -> None:
    """Hard-exit the process after `max_seconds`, whatever the event loop is doing."""
    timer = threading.Timer(max_seconds, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


def watch_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` when stdin reaches end of file: the parent closed it or died, so nobody will kill us."""

    def wait_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_eof, name="stdin-eof", daemon=True).start()


async def serve(port: int, options: Sequence[tuple[str, object]]) -> None:
    """Serve METHOD on 127.0.0.1:`port` until told to stop."""
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((empty_handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")  # loopback only; raises if the port is taken
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_stdin_eof(loop, stop)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=0.5)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.empty_server`."""
    parser = argparse.ArgumentParser(prog="python -m bench.empty_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--options", default="[]", help="JSON list of [key, value] grpc server options")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    start_watchdog(args.max_seconds)
    install_uvloop()
    options = [(str(k), v) for k, v in json.loads(args.options)]
    asyncio.run(serve(args.port, options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
