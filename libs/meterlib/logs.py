"""structlog set-up: one JSON object a line, carrying service, namespace, RPC and request id."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from meterlib import context


def _add_request_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, var in (
        ("namespace", context.current_namespace),
        ("rpc", context.current_method),
        ("request_id", context.current_request_id),
    ):
        value = var.get()
        if value is not None:
            event.setdefault(key, value)
    return event


def configure_logging(service: str, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog (and stdlib logging, for libraries) for one service process."""
    numeric = logging.getLevelName(level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )

    def add_service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    shared: list[Any] = [
        add_service,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_context,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib logging; route it through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are chatty at debug level; they get info at the least.
    root.setLevel(max(numeric, logging.INFO))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``logger_name`` key."""
    # Initial values, not bind(): bind() on the lazy proxy would build the logger now, at import time,
    # before configure_logging() has run, and the logger would keep the default configuration.
    return structlog.get_logger() if name is None else structlog.get_logger(logger_name=name)
