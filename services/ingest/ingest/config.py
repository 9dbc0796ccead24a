"""Settings of the ingest service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meterlib.config import RedisSettingsMixin


@dataclass(frozen=True)
class Settings(RedisSettingsMixin):
    """Everything the ingest service reads at start-up."""

    SERVICE: ClassVar[str] = "ingest"
    DEFAULT_PORT: ClassVar[int] = 50051
    DEFAULT_METRICS_PORT: ClassVar[int] = 9091
