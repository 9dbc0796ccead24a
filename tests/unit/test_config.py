"""Settings from the environment: defaults, parsing, every problem reported at once."""

from __future__ import annotations

import pytest

import billing.config
import catalog.config
import entitlements.config
import ingest.config
from meterlib.config import ConfigError


def test_defaults_give_each_service_its_own_port() -> None:
    ports = {
        module.Settings.from_env({}).port
        for module in (ingest.config, catalog.config, entitlements.config, billing.config)
    }
    assert ports == {50051, 50052, 50053, 50054}


def test_values_are_parsed_from_service_and_shared_names() -> None:
    settings = ingest.config.Settings.from_env(
        {
            "METERING_INGEST_PORT": "6000",
            "METERING_INGEST_GRACE_SECONDS": "2.5",
            "METERING_LOG_LEVEL": "debug",
            "METERING_REDIS_URL": "redis://localhost:6379/0",
        }
    )
    assert (settings.port, settings.grace_seconds, settings.log_level) == (6000, 2.5, "debug")
    assert settings.redis_url == "redis://localhost:6379/0"
    # Another service's names are not this one's.
    assert catalog.config.Settings.from_env({"METERING_INGEST_PORT": "6000"}).port == 50052


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        entitlements.config.Settings.from_env(
            {
                "METERING_ENTITLEMENTS_PORT": "not-a-port",
                "METERING_LOG_FORMAT": "xml",
                "METERING_REDIS_URL": "http://wrong",
                "METERING_ENTITLEMENTS_DB_POOL_MIN": "20",
                "METERING_ENTITLEMENTS_DB_POOL_MAX": "5",
            }
        )
    named = {problem.split(":", 1)[0] for problem in raised.value.problems}
    assert {
        "METERING_ENTITLEMENTS_PORT",
        "METERING_LOG_FORMAT",
        "METERING_REDIS_URL",
        "METERING_ENTITLEMENTS_DB_POOL_MIN/METERING_ENTITLEMENTS_DB_POOL_MAX",
    } <= named


def test_services_without_redis_do_not_read_its_settings() -> None:
    catalog_envs = {info.env for info in catalog.config.Settings.settings_info()}
    ingest_envs = {info.env for info in ingest.config.Settings.settings_info()}
    assert "METERING_REDIS_URL" not in catalog_envs
    assert "METERING_REDIS_URL" in ingest_envs


def test_secrets_are_masked_when_settings_are_shown() -> None:
    settings = billing.config.Settings.from_env({"METERING_DATABASE_URL": "postgresql://u:hunter2@db/x"})
    assert settings.redacted()["database_url"] == "***"
    assert "hunter2" not in str(settings.redacted())


def test_booleans_accept_the_usual_spellings() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    from meterlib.config import ServiceSettings, setting

    @dataclass(frozen=True)
    class Flags(ServiceSettings):
        SERVICE: ClassVar[str] = "flags"
        DEFAULT_PORT: ClassVar[int] = 1
        verbose: bool = setting("VERBOSE", False, "Say more.")

    assert Flags.from_env({"METERING_FLAGS_VERBOSE": "yes"}).verbose is True
    assert Flags.from_env({"METERING_FLAGS_VERBOSE": "0"}).verbose is False
    with pytest.raises(ConfigError, match="METERING_FLAGS_VERBOSE"):
        Flags.from_env({"METERING_FLAGS_VERBOSE": "maybe"})
