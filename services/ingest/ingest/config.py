"""Settings of the ingest service, read from `METERING_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meterlib.config import RedisSettingsMixin, setting


@dataclass(frozen=True)
class Settings(RedisSettingsMixin):
    """Everything the ingest service reads at start-up."""

    SERVICE: ClassVar[str] = "ingest"
    DEFAULT_PORT: ClassVar[int] = 50051
    DEFAULT_METRICS_PORT: ClassVar[int] = 9091
    # The contract's bound on one Ingest call: a batch of 1,000 events of a few KiB each fits.
    DEFAULT_MAX_MESSAGE_BYTES: ClassVar[int] = 4 * 1024 * 1024

    dedupe_horizon_days: int = setting(
        "DEDUPE_HORIZON_DAYS", 32, "How long an event's (source, id) is remembered to drop its duplicates."
    )
    max_batch_events: int = setting(
        "MAX_BATCH_EVENTS", 1000, "Most events in one Ingest call or stream message."
    )
    max_event_data_bytes: int = setting(
        "MAX_EVENT_DATA_BYTES", 65536, "Largest `data` of one event, in bytes."
    )
    max_json_depth: int = setting("MAX_JSON_DEPTH", 32, "Deepest nesting of an event's `data`.")
    max_future_seconds: int = setting(
        "MAX_FUTURE_SECONDS", 86400, "How far in the future an event's time may be, in seconds."
    )

    usage_stream: str = setting(
        "USAGE_STREAM", "usage-deltas", "Name of the Redis Stream of usage deltas (after the key prefix)."
    )
    usage_stream_max_len: int = setting(
        "USAGE_STREAM_MAX_LEN", 100_000, "Approximate length (messages) the usage stream is trimmed to."
    )
    publish_poll_seconds: float = setting(
        "PUBLISH_POLL_SECONDS", 1.0, "How often the outbox is checked for deltas other replicas left behind."
    )
    rollup_interval_seconds: float = setting(
        "ROLLUP_INTERVAL_SECONDS", 1.0, "How often new events are rolled up into per-minute usage."
    )
    rollup_batch_events: int = setting(
        "ROLLUP_BATCH_EVENTS", 50_000, "About how many events one roll-up transaction takes."
    )

    def problems(self) -> list[str]:
        """Base rules plus the ingest limits'."""
        problems = super().problems()
        for name, value in (
            ("DEDUPE_HORIZON_DAYS", self.dedupe_horizon_days),
            ("MAX_BATCH_EVENTS", self.max_batch_events),
            ("MAX_EVENT_DATA_BYTES", self.max_event_data_bytes),
            ("MAX_JSON_DEPTH", self.max_json_depth),
            ("USAGE_STREAM_MAX_LEN", self.usage_stream_max_len),
            ("ROLLUP_BATCH_EVENTS", self.rollup_batch_events),
        ):
            if value < 1:
                problems.append(f"{self.env_name(name)}: must be at least 1")
        if not self.usage_stream:
            problems.append(f"{self.env_name('USAGE_STREAM')}: must not be empty")
        for name, seconds in (
            ("PUBLISH_POLL_SECONDS", self.publish_poll_seconds),
            ("ROLLUP_INTERVAL_SECONDS", self.rollup_interval_seconds),
        ):
            if seconds <= 0:
                problems.append(f"{self.env_name(name)}: must be positive")
        if self.max_future_seconds < 0:
            problems.append(f"{self.env_name('MAX_FUTURE_SECONDS')}: must not be negative")
        return problems
