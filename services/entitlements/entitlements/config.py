"""Settings of the entitlements service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meterlib.config import RedisSettingsMixin


@dataclass(frozen=True)
class Settings(RedisSettingsMixin):
    """Everything the entitlements service reads at start-up."""

    SERVICE: ClassVar[str] = "entitlements"
    DEFAULT_PORT: ClassVar[int] = 50053
    DEFAULT_METRICS_PORT: ClassVar[int] = 9093
