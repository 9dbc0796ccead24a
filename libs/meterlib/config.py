"""Settings read from the environment.

Every setting has an environment name, a default and a one-line description. A service declares its
settings as a frozen dataclass that extends :class:`ServiceSettings`; :meth:`ServiceSettings.from_env`
reads them all and reports every problem at once in a :class:`ConfigError`.

Names: a setting declared ``shared=True`` is read from ``METERING_<NAME>`` by every service (the database
and Redis URLs, log level); any other from ``METERING_<SERVICE>_<NAME>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

T = TypeVar("T")

ENV_PREFIX = "METERING_"


class ConfigError(ValueError):
    """One or more settings are missing or malformed; ``problems`` lists each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


class _ServiceDefault:
    """Marks a default that the concrete service class supplies (its port, for instance)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __repr__(self) -> str:
        return f"<service default {self.attribute}>"


def service_default(attribute: str) -> Any:
    """A default taken from the ClassVar ``attribute`` of the concrete settings class."""
    return _ServiceDefault(attribute)


def setting(name: str, default: Any, doc: str, *, shared: bool = False, secret: bool = False) -> Any:
    """Declare one setting: its env name (without prefix), default, and a one-line description."""
    return field(default=default, metadata={"env": name, "doc": doc, "shared": shared, "secret": secret})


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": _parse_bool,
}


@dataclass(frozen=True)
class SettingInfo:
    """What the environment must or may carry for one setting."""

    field: str
    env: str
    default: Any
    doc: str
    secret: bool


@dataclass(frozen=True)
class ServiceSettings:
    """Settings every service has. Subclasses set ``SERVICE`` and ``DEFAULT_PORT``."""

    SERVICE: ClassVar[str] = ""
    DEFAULT_PORT: ClassVar[int] = 0
    DEFAULT_METRICS_PORT: ClassVar[int] = 0
    DEFAULT_MAX_MESSAGE_BYTES: ClassVar[int] = 8 * 1024 * 1024

    database_url: str = setting(
        "DATABASE_URL",
        "",
        "PostgreSQL URL; empty means the embedded dev server started by the dev runner or tests.",
        shared=True,
        secret=True,
    )
    log_level: str = setting(
        "LOG_LEVEL", "info", "Minimum log level: debug, info, warning, error.", shared=True
    )
    log_format: str = setting(
        "LOG_FORMAT", "json", "Log rendering: json (one object a line) or console.", shared=True
    )
    default_namespace: str = setting(
        "DEFAULT_NAMESPACE",
        "default",
        "Namespace of requests that name none in metadata; empty makes the namespace mandatory.",
        shared=True,
    )
    host: str = setting("HOST", "0.0.0.0", "Address the gRPC server listens on.")
    port: int = setting("PORT", service_default("DEFAULT_PORT"), "Port of the gRPC server.")
    metrics_port: int = setting(
        "METRICS_PORT",
        service_default("DEFAULT_METRICS_PORT"),
        "Port of the Prometheus /metrics endpoint; 0 disables it.",
    )
    shutdown_delay_seconds: float = setting(
        "SHUTDOWN_DELAY_SECONDS",
        0.0,
        "After SIGTERM, how long health reports NOT_SERVING while still serving, so load balancers move away.",
    )
    grace_seconds: float = setting(
        "GRACE_SECONDS", 10.0, "After the shutdown delay, how long in-flight calls have to finish."
    )
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES",
        service_default("DEFAULT_MAX_MESSAGE_BYTES"),
        "Largest gRPC message accepted, in bytes.",
    )
    db_pool_min: int = setting("DB_POOL_MIN", 2, "Connections the PostgreSQL pool keeps open.")
    db_pool_max: int = setting("DB_POOL_MAX", 10, "Most connections the PostgreSQL pool opens.")

    @classmethod
    def settings_info(cls) -> list[SettingInfo]:
        """Every setting of this class with its resolved env name and default."""
        infos = []
        for f in dataclasses.fields(cls):
            if "env" not in f.metadata:
                continue
            default = f.default
            if isinstance(default, _ServiceDefault):
                default = getattr(cls, default.attribute)
            infos.append(
                SettingInfo(
                    field=f.name,
                    env=cls.env_name(f.metadata["env"], shared=f.metadata["shared"]),
                    default=default,
                    doc=f.metadata["doc"],
                    secret=f.metadata["secret"],
                )
            )
        return infos

    @classmethod
    def env_name(cls, name: str, *, shared: bool = False) -> str:
        """The environment variable a setting is read from."""
        if shared:
            return f"{ENV_PREFIX}{name}"
        return f"{ENV_PREFIX}{cls.SERVICE.upper()}_{name}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Read every setting; raise ConfigError listing all problems at once."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for info in cls.settings_info():
            raw = environ.get(info.env)
            if raw is None:
                values[info.field] = info.default
                continue
            # With postponed annotations a field's type is its source text: "int", "float", "bool", "str".
            parser = _PARSERS.get(str(types[info.field]), str)
            try:
                values[info.field] = parser(raw)
            except ValueError as exc:
                problems.append(f"{info.env}: {exc}")
                values[info.field] = info.default
        unparsable = {problem.split(":", 1)[0] for problem in problems}
        settings = cls(**values)
        # Rule checks still run, so one start-up shows every problem; a value that did not parse is
        # reported once, as unparsable.
        problems.extend(p for p in settings.problems() if p.split(":", 1)[0] not in unparsable)
        if problems:
            raise ConfigError(problems)
        return settings

    def problems(self) -> list[str]:
        """Rule violations between values; subclasses extend this list."""
        problems = []
        cls = type(self)
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            problems.append(
                f"{cls.env_name('LOG_LEVEL', shared=True)}: must be debug, info, warning or error"
            )
        if self.log_format not in {"json", "console"}:
            problems.append(f"{cls.env_name('LOG_FORMAT', shared=True)}: must be json or console")
        if not 0 < self.port < 65536:
            problems.append(f"{cls.env_name('PORT')}: must be a TCP port (1-65535)")
        if not 0 <= self.metrics_port < 65536:
            problems.append(f"{cls.env_name('METRICS_PORT')}: must be a TCP port or 0")
        if self.shutdown_delay_seconds < 0:
            problems.append(f"{cls.env_name('SHUTDOWN_DELAY_SECONDS')}: must not be negative")
        if self.grace_seconds < 0:
            problems.append(f"{cls.env_name('GRACE_SECONDS')}: must not be negative")
        if self.max_message_bytes < 1024:
            problems.append(f"{cls.env_name('MAX_MESSAGE_BYTES')}: must be at least 1024")
        if self.db_pool_min < 0 or self.db_pool_max < 1 or self.db_pool_min > self.db_pool_max:
            problems.append(
                f"{cls.env_name('DB_POOL_MIN')}/{cls.env_name('DB_POOL_MAX')}: need 0 <= min <= max and max >= 1"
            )
        if self.database_url and not self.database_url.startswith(("postgres://", "postgresql://")):
            problems.append(
                f"{cls.env_name('DATABASE_URL', shared=True)}: must start with postgres:// or postgresql://"
            )
        return problems

    def require_backends(self) -> None:
        """Fail when the database or Redis URL is missing (a service never starts its own servers)."""
        urls = {"DATABASE_URL": self.database_url}
        if isinstance(self, RedisSettingsMixin):
            urls["REDIS_URL"] = self.redis_url
        missing = [type(self).env_name(name, shared=True) for name, value in urls.items() if not value]
        if missing:
            raise ConfigError(
                [f"{name}: must be set (make run sets it for the embedded servers)" for name in missing]
            )

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict fit for a log line, secrets masked."""
        out: dict[str, Any] = {}
        for info in self.settings_info():
            value = getattr(self, info.field)
            out[info.field] = "***" if info.secret and value else value
        return out


@dataclass(frozen=True)
class RedisSettingsMixin(ServiceSettings):
    """Settings of a service that uses Redis (ingest and entitlements; the others do not read these)."""

    redis_url: str = setting(
        "REDIS_URL", "", "Redis URL; empty means the embedded dev server.", shared=True, secret=True
    )
    redis_key_prefix: str = setting(
        "REDIS_KEY_PREFIX",
        "metering:",
        "Prefix of every Redis key, so tenants of one Redis never collide.",
        shared=True,
    )

    def problems(self) -> list[str]:
        """Base rules plus the Redis URL's scheme."""
        problems = super().problems()
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(
                f"{self.env_name('REDIS_URL', shared=True)}: must start with redis://, rediss:// or unix://"
            )
        return problems
