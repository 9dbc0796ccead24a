"""The billing domain: customers and credits, their request inputs and every validation rule. Pure: no
I/O. The rating arithmetic is ``billing.rating``."""

from billing.domain.common import (
    KEY_PATTERN,
    Collector,
    canonical_id,
    check_key,
    check_metadata,
    check_request_id,
    check_text,
    fingerprint,
    require_id,
    require_key,
)
from billing.domain.credits import (
    DEFAULT_PRIORITY,
    CreateCreditInput,
    Credit,
    CreditApplication,
    plan_credit_applications,
)
from billing.domain.customers import (
    COUNTRIES,
    MAX_SUBJECT_KEYS,
    Address,
    Customer,
    CustomerInput,
    subject_key_problem,
)

__all__ = [
    "COUNTRIES",
    "DEFAULT_PRIORITY",
    "KEY_PATTERN",
    "MAX_SUBJECT_KEYS",
    "Address",
    "Collector",
    "CreateCreditInput",
    "Credit",
    "CreditApplication",
    "Customer",
    "CustomerInput",
    "canonical_id",
    "check_key",
    "check_metadata",
    "check_request_id",
    "check_text",
    "fingerprint",
    "plan_credit_applications",
    "require_id",
    "require_key",
    "subject_key_problem",
]
