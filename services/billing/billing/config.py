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

    def problems(self) -> list[str]:
        """Base rules plus the entitlements client's."""
        problems = super().problems()
        problem = _address_problem(self.entitlements_address)
        if problem is not None:
            problems.append(f"{self.env_name('ENTITLEMENTS_ADDRESS')}: {problem}")
        if self.entitlements_deadline_seconds <= 0:
            problems.append(f"{self.env_name('ENTITLEMENTS_DEADLINE_SECONDS')}: must be positive")
        if self.entitlements_attempts < 1:
            problems.append(f"{self.env_name('ENTITLEMENTS_ATTEMPTS')}: must be at least 1")
        return problems
