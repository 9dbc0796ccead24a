"""Meter JSONPaths: parsed by an RFC 9535 implementation, restricted to singular queries.

A meter's value property and group-bys each select at most one value from an event's ``data``, so
only singular queries are allowed (``$.tokens``, ``$.usage.input``, ``$['model name']``, ``$.items[0]``).
A path is evaluated two ways: in Python by walking its steps (for usage deltas), and in PostgreSQL as
the equivalent SQL/JSON path (for queries over stored events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonpath_rfc9535
from jsonpath_rfc9535.exceptions import JSONPathError

_MISSING = object()


@dataclass(frozen=True)
class ValuePath:
    """A parsed singular JSONPath."""

    text: str
    steps: tuple[str | int, ...]

    @property
    def postgres(self) -> str:
        """The same path in PostgreSQL's SQL/JSON path language (strict names, exact indices)."""
        parts = ["$"]
        for step in self.steps:
            if isinstance(step, int):
                parts.append(f"[{step}]" if step >= 0 else f"[last - {-step - 1}]")
            else:
                escaped = step.replace("\\", "\\\\").replace('"', '\\"')
                parts.append(f'."{escaped}"')
        return "".join(parts)

    def find(self, data: Any) -> tuple[bool, Any]:
        """``(True, value)`` when the path selects a value in ``data``, else ``(False, None)``."""
        node = data
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return False, None
            elif not isinstance(node, dict) or step not in node:
                return False, None
            node = node[step]
        return True, node


def parse_value_path(text: str) -> ValuePath:
    """Parse ``text``; ValueError says why it is not a singular JSONPath."""
    try:
        query = jsonpath_rfc9535.compile(text)
    except JSONPathError as exc:
        raise ValueError(f"not a JSONPath: {exc}") from None
    if not query.singular_query():
        raise ValueError("must select a single value (no wildcards, slices, filters or descendants)")
    steps: list[str | int] = []
    for segment in query.segments:
        [selector] = segment.selectors
        index = getattr(selector, "index", None)
        steps.append(index if isinstance(index, int) else str(selector.name))  # type: ignore[attr-defined]
    if not steps:
        raise ValueError("must select a value inside data, not data itself")
    return ValuePath(text, tuple(steps))
