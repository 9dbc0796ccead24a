"""Lua scripts of the hot path, each prefixed with the exact decimal library (decimal.lua)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def decimal_library() -> str:
    """The Lua source of dec_add, dec_sub, dec_cmp and friends."""
    return files("entitlements.hot").joinpath("decimal.lua").read_text()


def with_decimals(body: str) -> str:
    """A script whose body may call the decimal functions."""
    return decimal_library() + "\n" + body
