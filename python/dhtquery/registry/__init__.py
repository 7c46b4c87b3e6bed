"""The registry layer: the package marketplace on a DhtNode (model, catalog
index, publish, search, get_package), anti-entropy under the gossip, and the
catalog-file reader."""

from ..errors import SchemaError
from .antientropy import AntiEntropy
from .catalog import Catalog
from .catalog_file import load_catalog, package_from_json
from .model import STANDARD_CATEGORIES, Package, PackageId, Query, matches_query, package_words
from .service import P2PRegistry, highest_versions

__all__ = [
    "STANDARD_CATEGORIES",
    "AntiEntropy",
    "Catalog",
    "P2PRegistry",
    "Package",
    "PackageId",
    "Query",
    "SchemaError",
    "highest_versions",
    "load_catalog",
    "matches_query",
    "package_from_json",
    "package_words",
]
