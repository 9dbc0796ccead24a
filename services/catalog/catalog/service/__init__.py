"""Business rules of the catalog service and their transaction boundaries. No gRPC, no SQL.

One module per resource: features, plans, add-ons; the version lifecycle plans and add-ons share is
``catalog.service.versions``.
"""

from catalog.service.addons import AddOnService
from catalog.service.documents import CatalogDocuments
from catalog.service.features import FeatureService
from catalog.service.plans import PlanService
from catalog.service.references import ReferenceResolver
from catalog.service.versions import GetVersionInput, ListVersionsInput, VersionService

__all__ = [
    "AddOnService",
    "CatalogDocuments",
    "FeatureService",
    "GetVersionInput",
    "ListVersionsInput",
    "PlanService",
    "ReferenceResolver",
    "VersionService",
]
