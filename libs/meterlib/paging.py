"""Page tokens for List RPCs (AIP-158): opaque to callers, bound to the filters that made them."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from meterlib.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """The page size to use: the default for 0, capped at the maximum; InvalidArgument when negative."""
    if requested < 0:
        raise InvalidArgument.fields([FieldViolation("page.page_size", "must not be negative")])
    return min(requested or default, maximum)


def _digest(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(position: Any, filters: Any) -> str:
    """A token resuming after ``position`` (JSON-able), valid only with the same ``filters``."""
    payload = json.dumps({"p": position, "f": _digest(filters)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, filters: Any) -> Any:
    """The position a token resumes after (None for the first page); InvalidArgument if it is not ours."""
    if not token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position, digest = payload["p"], payload["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.fields(
            [FieldViolation("page.page_token", "is not a token this API issued")]
        ) from None
    if digest != _digest(filters):
        raise InvalidArgument.fields(
            [FieldViolation("page.page_token", "was issued for a request with other filters")]
        ) from None
    return position
