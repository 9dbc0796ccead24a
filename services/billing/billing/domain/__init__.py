"""The billing domain: customers and credits, their request inputs and every validation rule. Pure: no
I/O. The rating arithmetic is ``billing.rating``."""

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
    "MAX_SUBJECT_KEYS",
    "Address",
    "CreateCreditInput",
    "Credit",
    "CreditApplication",
    "Customer",
    "CustomerInput",
    "plan_credit_applications",
    "subject_key_problem",
]
