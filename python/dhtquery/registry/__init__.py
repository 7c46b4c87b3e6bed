"""The registry layer: the package marketplace on a DhtNode (model, catalog
index, publish, search, get_package), anti-entropy under the gossip, and the
catalog-file reader."""

from ..errors import SchemaError, TrustError
from .antientropy import AntiEntropy
from .catalog import Catalog
from .catalog_file import load_catalog, package_from_json
from .model import STANDARD_CATEGORIES, Package, PackageId, Query, matches_query, package_words
from .service import REGISTRY_DROP_KINDS, P2PRegistry, claim_key, highest_versions
from .trust import NamespaceConflict, Pin, TrustStore, Verdict, parse_key

__all__ = [
    "REGISTRY_DROP_KINDS",
    "STANDARD_CATEGORIES",
    "AntiEntropy",
    "Catalog",
    "NamespaceConflict",
    "P2PRegistry",
    "Package",
    "PackageId",
    "Pin",
    "Query",
    "SchemaError",
    "TrustError",
    "TrustStore",
    "Verdict",
    "claim_key",
    "highest_versions",
    "load_catalog",
    "matches_query",
    "package_from_json",
    "package_words",
    "parse_key",
]
