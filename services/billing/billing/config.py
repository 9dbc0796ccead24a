"""Settings of the billing service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meterlib.config import ServiceSettings, setting


def _address_problem(address: str) -> str | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return "must be host:port"
    return None


@dataclass(frozen=True)
class Settings(ServiceSettings):
    """Everything the billing service reads at start-up."""

    SERVICE: ClassVar[str] = "billing"
    DEFAULT_PORT: ClassVar[int] = 50054
    DEFAULT_METRICS_PORT: ClassVar[int] = 9094

    entitlements_address: str = setting(
        "ENTITLEMENTS_ADDRESS",
        "127.0.0.1:50053",
        "host:port of the entitlements service, which keeps a copy of each customer's subject keys.",
    )
    entitlements_deadline_seconds: float = setting(
        "ENTITLEMENTS_DEADLINE_SECONDS", 2.0, "Deadline of each call to the entitlements service, in seconds."
    )
    entitlements_attempts: int = setting(
        "ENTITLEMENTS_ATTEMPTS",
        3,
        "Attempts of a call to entitlements that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )
    catalog_address: str = setting(
        "CATALOG_ADDRESS",
        "127.0.0.1:50052",
        "host:port of the catalog service, which subscriptions read plan and add-on versions from.",
    )
    catalog_deadline_seconds: float = setting(
        "CATALOG_DEADLINE_SECONDS", 2.0, "Deadline of each call to the catalog service, in seconds."
    )
    catalog_attempts: int = setting(
        "CATALOG_ATTEMPTS",
        3,
        "Attempts of a call to catalog that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )
    provisioning_interval_seconds: float = setting(
        "PROVISIONING_INTERVAL_SECONDS",
        30.0,
        "How often subscriptions whose entitlements are due a change (an item starting or ending) are "
        "brought up to date, in seconds.",
    )
    ingest_address: str = setting(
        "INGEST_ADDRESS",
        "127.0.0.1:50051",
        "host:port of the ingest service, whose QueryUsage invoices are rated on.",
    )
    ingest_deadline_seconds: float = setting(
        "INGEST_DEADLINE_SECONDS", 30.0, "Deadline of each call to the ingest service, in seconds."
    )
    ingest_attempts: int = setting(
        "INGEST_ATTEMPTS",
        3,
        "Attempts of a call to ingest that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )
    collection_delay_seconds: float = setting(
        "COLLECTION_DELAY_SECONDS",
        3600.0,
        "How long after its period ends a DRAFT invoice is recalculated on late usage before it is issued "
        "automatically, in seconds.",
    )
    late_usage_days: int = setting(
        "LATE_USAGE_DAYS",
        32,
        "How long after a usage period ends usage reported for it is still billed, on the next invoice "
        "once the period's invoice was issued, in days (as long as ingest's dedupe horizon by default).",
    )
    issue_interval_seconds: float = setting(
        "ISSUE_INTERVAL_SECONDS",
        60.0,
        "How often DRAFT invoices past their collection time are recalculated a last time and issued, "
        "in seconds.",
    )
    payment_terms_days: int = setting(
        "PAYMENT_TERMS_DAYS",
        30,
        "Days from an invoice's issue to its due time, unless the invoice was given a due time.",
    )

    def problems(self) -> list[str]:
        """Base rules plus the entitlements and catalog clients'."""
        problems = super().problems()
        problem = _address_problem(self.entitlements_address)
        if problem is not None:
            problems.append(f"{self.env_name('ENTITLEMENTS_ADDRESS')}: {problem}")
        if self.entitlements_deadline_seconds <= 0:
            problems.append(f"{self.env_name('ENTITLEMENTS_DEADLINE_SECONDS')}: must be positive")
        if self.entitlements_attempts < 1:
            problems.append(f"{self.env_name('ENTITLEMENTS_ATTEMPTS')}: must be at least 1")
        problem = _address_problem(self.ingest_address)
        if problem is not None:
            problems.append(f"{self.env_name('INGEST_ADDRESS')}: {problem}")
        if self.ingest_deadline_seconds <= 0:
            problems.append(f"{self.env_name('INGEST_DEADLINE_SECONDS')}: must be positive")
        if self.ingest_attempts < 1:
            problems.append(f"{self.env_name('INGEST_ATTEMPTS')}: must be at least 1")
        if self.collection_delay_seconds < 0:
            problems.append(f"{self.env_name('COLLECTION_DELAY_SECONDS')}: must not be negative")
        if self.late_usage_days < 0:
            problems.append(f"{self.env_name('LATE_USAGE_DAYS')}: must not be negative")
        if self.issue_interval_seconds <= 0:
            problems.append(f"{self.env_name('ISSUE_INTERVAL_SECONDS')}: must be positive")
        problem = _address_problem(self.catalog_address)
        if problem is not None:
            problems.append(f"{self.env_name('CATALOG_ADDRESS')}: {problem}")
        if self.catalog_deadline_seconds <= 0:
            problems.append(f"{self.env_name('CATALOG_DEADLINE_SECONDS')}: must be positive")
        if self.catalog_attempts < 1:
            problems.append(f"{self.env_name('CATALOG_ATTEMPTS')}: must be at least 1")
        if self.provisioning_interval_seconds <= 0:
            problems.append(f"{self.env_name('PROVISIONING_INTERVAL_SECONDS')}: must be positive")
        if self.payment_terms_days < 0:
            problems.append(f"{self.env_name('PAYMENT_TERMS_DAYS')}: must not be negative")
        return problems
