"""The dev runner behind ``make run``: embedded backends, migrations, four services, their logs.

It starts PostgreSQL and Redis under ``.metering/dev`` unless METERING_DATABASE_URL /
METERING_REDIS_URL name servers to use, migrates every service, starts each as its own process, waits
for their health checks, prints their addresses and streams their logs until Ctrl-C or SIGTERM; then
it stops the services (each drains), then the backends, leaving no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meterlib.embedded import backends, die_with_parent
from meterlib.logs import configure_logging

SERVICES = ("ingest", "catalog", "entitlements", "billing")
_COLORS = {"ingest": "36", "catalog": "35", "entitlements": "33", "billing": "32"}


@dataclass
class RunningService:
    """One service process and where it serves."""

    name: str
    port: int
    metrics_port: int
    process: asyncio.subprocess.Process


def _without_password(url: str) -> str:
    """``url`` fit to print: a password in it is masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _say(message: str) -> None:
    print(f"[metering] {message}", flush=True)


async def _run_quiet(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def _stream(name: str, stream: asyncio.StreamReader, colour: bool) -> None:
    prefix = f"\033[{_COLORS[name]}m{name:>12}\033[0m | " if colour else f"{name:>12} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_healthy(port: int, process: asyncio.subprocess.Process, within_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"exited with code {process.returncode} before it was healthy")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"not healthy after {within_s:.0f}s")
            await asyncio.sleep(0.2)


async def _stop_all(running: list[RunningService], grace_s: float) -> None:
    for service in running:
        if service.process.returncode is None:
            service.process.send_signal(signal.SIGTERM)
    for service in running:
        try:
            await asyncio.wait_for(service.process.wait(), grace_s)
        except TimeoutError:
            _say(f"{service.name} did not stop in {grace_s:.0f}s; killing it")
            service.process.kill()
            await service.process.wait()


async def run_services(database_url: str, redis_url: str, *, health_timeout: float = 90.0) -> int:
    """Migrate and run the four services until a signal or one of them dies; returns an exit code."""
    env = {**os.environ, "METERING_DATABASE_URL": database_url, "METERING_REDIS_URL": redis_url}
    env.setdefault("METERING_LOG_FORMAT", "console")
    colour = sys.stdout.isatty()

    # Resolve each service's settings the way it will (this also validates them all before anything starts).
    settings: dict[str, dict[str, object]] = {}
    for name in SERVICES:
        code, out = await _run_quiet([sys.executable, "-m", name, "--check-config"], env)
        if code != 0:
            _say(f"{name}: configuration is invalid:\n{out}")
            return 2
        settings[name] = json.loads(out.strip().splitlines()[-1])
        if name == "ingest":
            # Catalog asks ingest whether meters exist, entitlements and billing ask it for usage: point them at the
            # port ingest will serve on.
            env.setdefault("METERING_CATALOG_INGEST_ADDRESS", f"127.0.0.1:{settings[name]['port']}")
            env.setdefault("METERING_ENTITLEMENTS_INGEST_ADDRESS", f"127.0.0.1:{settings[name]['port']}")
            env.setdefault("METERING_BILLING_INGEST_ADDRESS", f"127.0.0.1:{settings[name]['port']}")
        if name == "catalog":
            # Entitlements reads features from catalog, billing plans and add-ons.
            env.setdefault("METERING_ENTITLEMENTS_CATALOG_ADDRESS", f"127.0.0.1:{settings[name]['port']}")
            env.setdefault("METERING_BILLING_CATALOG_ADDRESS", f"127.0.0.1:{settings[name]['port']}")
        if name == "entitlements":
            # Billing copies its customers (their subject keys) to entitlements.
            env.setdefault("METERING_BILLING_ENTITLEMENTS_ADDRESS", f"127.0.0.1:{settings[name]['port']}")

    for name in SERVICES:
        code, out = await _run_quiet([sys.executable, "-m", name, "migrate"], env)
        if code != 0:
            _say(f"{name}: migrations failed:\n{out}")
            return 1
    _say("migrations applied")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    running: list[RunningService] = []
    streams: list[asyncio.Task[None]] = []
    try:
        for name in SERVICES:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                name,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Own process group: Ctrl-C reaches the runner only, which then stops services in order.
                start_new_session=True,
                # And should the runner be killed outright, its services go with it.
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            assert process.stdout is not None
            streams.append(asyncio.create_task(_stream(name, process.stdout, colour)))
            running.append(
                RunningService(
                    name, int(str(settings[name]["port"])), int(str(settings[name]["metrics_port"])), process
                )
            )
        try:
            await asyncio.gather(*(_wait_healthy(s.port, s.process, health_timeout) for s in running))
        except RuntimeError as exc:
            _say(f"a service failed to start: {exc}")
            return 1

        lines = [f"{'service':<14}{'gRPC':<18}{'metrics'}"]
        lines += [
            f"{s.name:<14}{f'127.0.0.1:{s.port}':<18}http://127.0.0.1:{s.metrics_port}/metrics"
            for s in running
        ]
        _say("all four services are healthy\n" + "\n".join(lines))
        _say(f"PostgreSQL {_without_password(database_url)}")
        _say(f"Redis      {_without_password(redis_url)}")
        _say("Ctrl-C stops everything")

        died = [asyncio.create_task(s.process.wait()) for s in running]
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *died], return_when=asyncio.FIRST_COMPLETED)
        if stopped not in done:
            dead = [s.name for s in running if s.process.returncode is not None]
            _say(f"{', '.join(dead)} stopped unexpectedly; stopping the others")
            return 1
        _say("stopping")
        return 0
    finally:
        await _stop_all(running, grace_s=30)
        for task in streams:
            try:
                await asyncio.wait_for(task, 5)
            except TimeoutError:
                task.cancel()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make run`` (``metering-dev``)."""
    parser = argparse.ArgumentParser(prog="metering-dev", description=__doc__)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".metering/dev"), help="where embedded servers keep their data"
    )
    args = parser.parse_args(argv)
    configure_logging("dev", os.environ.get("METERING_LOG_LEVEL", "info"), "console")
    database_url = os.environ.get("METERING_DATABASE_URL") or None
    redis_url = os.environ.get("METERING_REDIS_URL") or None
    # Until the loop below installs its own handlers, Ctrl-C must still stop embedded servers cleanly.
    try:
        with backends(
            args.data_dir,
            database_url=database_url,
            redis_url=redis_url,
            postgres_port=55432,
            redis_port=56379,
        ) as found:
            return asyncio.run(run_services(found.database_url, found.redis_url))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
