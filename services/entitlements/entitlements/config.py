"""Settings of the entitlements service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from entitlements.gateway import parse_routes
from meterlib.config import RedisSettingsMixin, setting


def _address_problem(address: str) -> str | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return "must be host:port"
    return None


@dataclass(frozen=True)
class Settings(RedisSettingsMixin):
    """Everything the entitlements service reads at start-up."""

    SERVICE: ClassVar[str] = "entitlements"
    DEFAULT_PORT: ClassVar[int] = 50053
    DEFAULT_METRICS_PORT: ClassVar[int] = 9093

    catalog_address: str = setting(
        "CATALOG_ADDRESS",
        "127.0.0.1:50052",
        "host:port of the catalog service, asked for a feature's meter and filters when an entitlement is made.",
    )
    catalog_deadline_seconds: float = setting(
        "CATALOG_DEADLINE_SECONDS", 2.0, "Deadline of each call to the catalog service, in seconds."
    )
    catalog_attempts: int = setting(
        "CATALOG_ATTEMPTS",
        3,
        "Attempts of a call to catalog that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )
    ingest_address: str = setting(
        "INGEST_ADDRESS",
        "127.0.0.1:50051",
        "host:port of the ingest service, whose QueryUsage is the truth of metered usage.",
    )
    ingest_deadline_seconds: float = setting(
        "INGEST_DEADLINE_SECONDS", 5.0, "Deadline of each QueryUsage call to the ingest service, in seconds."
    )
    ingest_attempts: int = setting(
        "INGEST_ATTEMPTS",
        3,
        "Attempts of a QueryUsage call that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )
    ingest_concurrency: int = setting(
        "INGEST_CONCURRENCY",
        16,
        "Most QueryUsage calls the service process has in flight at once (burn-downs read usage concurrently).",
    )
    usage_stream: str = setting(
        "USAGE_STREAM",
        "usage-deltas",
        "Redis Stream of ingest's usage deltas, after the key prefix (ingest's METERING_INGEST_USAGE_STREAM).",
    )
    consumer_group: str = setting(
        "CONSUMER_GROUP", "entitlements", "Consumer group every replica reads the usage stream in."
    )
    threshold_percents: str = setting(
        "THRESHOLD_PERCENTS",
        "50,80,100",
        "Comma-separated percentages of a period's grants whose crossing is notified (empty: none).",
    )
    fail_open: bool = setting(
        "FAIL_OPEN",
        False,
        "Whether checks allow access while a metered entitlement's state is being rebuilt and its truth is unreachable.",
    )

    gateway_routes: str = setting(
        "GATEWAY_ROUTES",
        "",
        "Envoy ext_authz route rules, a JSON list (see entitlements/gateway.py); empty: every request is allowed.",
    )

    def percents(self) -> list[Decimal]:
        """THRESHOLD_PERCENTS as numbers."""
        return [Decimal(p.strip()) for p in self.threshold_percents.split(",") if p.strip()]

    def problems(self) -> list[str]:
        """Base rules plus the catalog and ingest clients'."""
        problems = super().problems()
        try:
            if any(not p.is_finite() or p <= 0 for p in self.percents()):
                problems.append(f"{self.env_name('THRESHOLD_PERCENTS')}: percentages must be positive")
        except InvalidOperation:
            problems.append(f"{self.env_name('THRESHOLD_PERCENTS')}: comma-separated numbers, e.g. 50,80,100")
        try:
            parse_routes(self.gateway_routes)
        except ValueError as exc:
            problems.append(f"{self.env_name('GATEWAY_ROUTES')}: {exc}")
        for name, text in (("USAGE_STREAM", self.usage_stream), ("CONSUMER_GROUP", self.consumer_group)):
            if not text:
                problems.append(f"{self.env_name(name)}: must not be empty")
        for name, address in (
            ("CATALOG_ADDRESS", self.catalog_address),
            ("INGEST_ADDRESS", self.ingest_address),
        ):
            problem = _address_problem(address)
            if problem is not None:
                problems.append(f"{self.env_name(name)}: {problem}")
        for name, seconds in (
            ("CATALOG_DEADLINE_SECONDS", self.catalog_deadline_seconds),
            ("INGEST_DEADLINE_SECONDS", self.ingest_deadline_seconds),
        ):
            if seconds <= 0:
                problems.append(f"{self.env_name(name)}: must be positive")
        for name, count in (
            ("CATALOG_ATTEMPTS", self.catalog_attempts),
            ("INGEST_ATTEMPTS", self.ingest_attempts),
            ("INGEST_CONCURRENCY", self.ingest_concurrency),
        ):
            if count < 1:
                problems.append(f"{self.env_name(name)}: must be at least 1")
        return problems
