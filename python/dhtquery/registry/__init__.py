"""The registry layer: the package marketplace on a DhtNode (model, catalog
index, publish, search, get_package) and the catalog-file reader."""

from ..errors import SchemaError
from .catalog import Catalog
from .catalog_file import load_catalog, package_from_json
from .model import Package, PackageId, Query, matches_query
from .service import P2PRegistry, highest_versions

__all__ = [
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
]
