"""Subscriptions as immutable timelines, their operations, and the charges they produce. Pure: no I/O.

- :mod:`.model`: the timeline (:class:`Subscription`): plan segments, add-on instances and the end,
  from which phases, items, billing periods, the status and a pending change derive.
- :mod:`.operations`: create, change plan, migrate, set add-on, cancel, undo cancel, each returning a
  new timeline or raising a ``meterlib.errors`` domain error.
- :mod:`.charges`: what to rate for an invoice, and which invoice a charge belongs to.
- :mod:`.serialize`: the timeline as a JSON-compatible dict for the store.
"""

from billing.subscriptions.charges import (
    Charge,
    ChargeKind,
    charges_between,
    charges_for_period,
    initial_charges,
    progressive_charges,
)
from billing.subscriptions.model import (
    AddOnInstance,
    CancelTiming,
    ChangeKind,
    ChangeTiming,
    PendingChange,
    PlanSegment,
    Subscription,
    SubscriptionItem,
    SubscriptionPhase,
    SubscriptionStatus,
)
from billing.subscriptions.operations import (
    CURRENCY_MISMATCH,
    AddOnSelection,
    cancel,
    change_plan,
    create_subscription,
    migrate,
    set_add_on,
    undo_cancel,
)
from billing.subscriptions.serialize import subscription_from_dict, subscription_to_dict

__all__ = [
    "CURRENCY_MISMATCH",
    "AddOnInstance",
    "AddOnSelection",
    "CancelTiming",
    "ChangeKind",
    "ChangeTiming",
    "Charge",
    "ChargeKind",
    "PendingChange",
    "PlanSegment",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionPhase",
    "SubscriptionStatus",
    "cancel",
    "change_plan",
    "charges_between",
    "charges_for_period",
    "create_subscription",
    "initial_charges",
    "migrate",
    "progressive_charges",
    "set_add_on",
    "subscription_from_dict",
    "subscription_to_dict",
    "undo_cancel",
]
