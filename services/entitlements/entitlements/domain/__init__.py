"""The entitlements domain: customers, entitlements, grants, resets and history, their request inputs and
every validation rule. Pure: no I/O. The burn-down arithmetic is ``entitlements.burndown``."""

from entitlements.domain.common import DEFAULT_PRIORITY, EntitlementRef
from entitlements.domain.customers import MAX_SUBJECT_KEYS, Customer, UpsertCustomerInput
from entitlements.domain.entitlements import (
    Entitlement,
    EntitlementInput,
    EntitlementType,
    Feature,
    MeteredConfig,
    MeteredConfigInput,
    Reset,
    check_feature,
    check_meter,
    static_config_problem,
)
from entitlements.domain.grants import CreateGrantInput, Grant, Recurrence
from entitlements.domain.outcomes import Outcome
from entitlements.domain.usage import (
    MAX_HISTORY_WINDOWS,
    History,
    HistoryInput,
    HistoryWindow,
    ResetUsageInput,
    balance_after_opening,
    history_windows,
    not_metered,
    segment_overage,
)
from meterlib.idempotency import fingerprint
from meterlib.validation import KEY_PATTERN, Collector, canonical_id, check_id, check_key

__all__ = [
    "DEFAULT_PRIORITY",
    "KEY_PATTERN",
    "MAX_HISTORY_WINDOWS",
    "MAX_SUBJECT_KEYS",
    "Collector",
    "CreateGrantInput",
    "Customer",
    "Entitlement",
    "EntitlementInput",
    "EntitlementRef",
    "EntitlementType",
    "Feature",
    "Grant",
    "History",
    "HistoryInput",
    "HistoryWindow",
    "MeteredConfig",
    "MeteredConfigInput",
    "Outcome",
    "Recurrence",
    "Reset",
    "ResetUsageInput",
    "UpsertCustomerInput",
    "balance_after_opening",
    "canonical_id",
    "check_feature",
    "check_id",
    "check_key",
    "check_meter",
    "fingerprint",
    "history_windows",
    "not_metered",
    "segment_overage",
    "static_config_problem",
]
