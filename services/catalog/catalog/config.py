"""Settings of the catalog service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meterlib.config import ServiceSettings, setting


@dataclass(frozen=True)
class Settings(ServiceSettings):
    """Everything the catalog service reads at start-up."""

    SERVICE: ClassVar[str] = "catalog"
    DEFAULT_PORT: ClassVar[int] = 50052
    DEFAULT_METRICS_PORT: ClassVar[int] = 9092

    ingest_address: str = setting(
        "INGEST_ADDRESS",
        "127.0.0.1:50051",
        "host:port of the ingest service, asked whether a feature's meter exists and what it groups by.",
    )
    ingest_deadline_seconds: float = setting(
        "INGEST_DEADLINE_SECONDS", 2.0, "Deadline of each call to the ingest service, in seconds."
    )
    ingest_attempts: int = setting(
        "INGEST_ATTEMPTS",
        3,
        "Attempts of a call to ingest that fails with UNAVAILABLE or DEADLINE_EXCEEDED (with backoff).",
    )

    def problems(self) -> list[str]:
        """Base rules plus the ingest client's."""
        problems = super().problems()
        host, sep, port = self.ingest_address.rpartition(":")
        if not sep or not host or not port.isdigit():
            problems.append(f"{self.env_name('INGEST_ADDRESS')}: must be host:port")
        if self.ingest_deadline_seconds <= 0:
            problems.append(f"{self.env_name('INGEST_DEADLINE_SECONDS')}: must be positive")
        if self.ingest_attempts < 1:
            problems.append(f"{self.env_name('INGEST_ATTEMPTS')}: must be at least 1")
        return problems
