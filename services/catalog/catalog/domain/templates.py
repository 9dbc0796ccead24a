"""Entitlement templates: the entitlement a rate card provisions for each subscriber.

Billing creates the entitlement in the entitlements service when the subscription item starts (SEMANTICS.md,
"Entitlements"): metered (a usage limit with a recurring grant), boolean (access) or static (access plus a
JSON configuration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeAlias

from meterlib.errors import Violations
from meterlib.periods import Cadence

MAX_STATIC_CONFIG_BYTES: Final = 16 * 1024
DEFAULT_GRANT_PRIORITY: Final = 1
_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class MeteredEntitlementTemplate:
    """A usage limit on a metered feature, refilled with ``issue_after_reset`` every usage period."""

    issue_after_reset: Decimal | None
    """Granted at the start of every usage period. Required (None only in an input that lacks it)."""
    usage_period: Cadence | None = None
    """None means the rate card's billing cadence, or the plan's when the rate card is one-time."""
    issue_after_reset_priority: int = DEFAULT_GRANT_PRIORITY
    """Priority of the recurring grant; lower burns first."""
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False


@dataclass(frozen=True)
class BooleanEntitlementTemplate:
    """Plain access to the feature while the subscription item is active."""


@dataclass(frozen=True)
class StaticEntitlementTemplate:
    """Access plus a JSON object returned by Check, e.g. ``{"seats": 10}``; kept as the text given."""

    config: str


EntitlementTemplate: TypeAlias = (
    MeteredEntitlementTemplate | BooleanEntitlementTemplate | StaticEntitlementTemplate
)


def template_type(template: EntitlementTemplate) -> str:
    """The proto oneof name of a template: ``metered``, ``boolean`` or ``static``."""
    if isinstance(template, MeteredEntitlementTemplate):
        return "metered"
    return "boolean" if isinstance(template, BooleanEntitlementTemplate) else "static"


def check_template(v: Violations, template: EntitlementTemplate, path: str) -> None:
    """The template's own rules at ``path`` (e.g. ``...rate_cards[0].entitlement_template``).

    That a template needs a feature, and a metered one a metered feature, is the rate card's rule.
    """
    if isinstance(template, MeteredEntitlementTemplate):
        at = f"{path}.metered"
        if template.issue_after_reset is None:
            v.add(f"{at}.issue_after_reset", "is required: the amount granted at every usage period start")
        elif template.issue_after_reset < _ZERO:
            v.add(f"{at}.issue_after_reset", "must not be negative")
        if template.issue_after_reset_priority < 1:
            v.add(f"{at}.issue_after_reset_priority", "must be 1 or more (0 on the wire means 1)")
    elif isinstance(template, StaticEntitlementTemplate):
        problem = static_config_problem(template.config)
        if problem is not None:
            v.add(f"{path}.static.config", problem)


def _not_json(name: str) -> None:
    # Python's json module reads NaN and Infinity, which JSON (and so every other reader) refuses.
    raise ValueError(f"{name} is not JSON")


def static_config_problem(config: str) -> str | None:
    """Why ``config`` is not an acceptable static configuration (a JSON object of at most 16 KiB)."""
    if not config:
        return 'is required: a JSON object such as {"seats": 10}'
    if len(config.encode()) > MAX_STATIC_CONFIG_BYTES:
        return f"must be at most {MAX_STATIC_CONFIG_BYTES} bytes"
    try:
        parsed = json.loads(config, parse_float=Decimal, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        return f"must be valid JSON: {exc}"
    if not isinstance(parsed, dict):
        return "must be a JSON object"
    return None
