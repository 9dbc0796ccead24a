"""Lua scripts of the hot path, each prefixed with the exact decimal library and the shared helpers."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def _source(name: str) -> str:
    return files("entitlements.hot").joinpath(name).read_text()


def decimal_library() -> str:
    """The Lua source of dec_add, dec_sub, dec_cmp and friends."""
    return _source("decimal.lua")


def with_decimals(body: str) -> str:
    """A script whose body may call the decimal functions and the shared helpers (tx_seen)."""
    return decimal_library() + "\n" + _source("common.lua") + "\n" + body


def script(name: str) -> str:
    """The full text of one of the hot path's scripts (``apply``, ``install``, ``consume``...)."""
    return with_decimals(_source(f"{name}.lua"))
