"""Catalog files: JSON lists of packages, written by hand or by a tool, for
``dhtquery publish`` and ``dhtquery node --catalog``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from .model import Package

__all__ = ["load_catalog", "package_from_json"]


def package_from_json(value: Any) -> Package:
    """A package object of a catalog file: the fields of
    ``Package.to_record()``; ``namespace``, ``name``, ``version`` and
    ``title`` are required, the others default as in Package; ``hash`` may be
    left out (it is computed) and, when given, must match."""
    if not isinstance(value, Mapping):
        raise SchemaError("package", f"must be a JSON object, got {type(value).__name__}")
    return Package.from_record(value, complete=False)


def load_catalog(path: Path | str) -> list[Package]:
    """The packages of a JSON file holding a list of package objects (or one
    object, or ``{"packages": [...]}``). Raises SchemaError naming the file,
    the package (its position and id) and the field; OSError if the file
    cannot be read."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"catalog {path}",
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if isinstance(data, Mapping) and "packages" in data:
        data = data["packages"]
    items = [data] if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise SchemaError(
            f"catalog {path}", f"must hold a list of package objects, got {type(data).__name__}"
        )
    packages = []
    for index, item in enumerate(items):
        try:
            packages.append(package_from_json(item))
        except (SchemaError, TypeError, ValueError) as exc:
            where = f"catalog {path}: package #{index + 1}"
            if isinstance(item, Mapping) and "name" in item:
                where += f" ({item.get('namespace', '?')}/{item.get('name')})"
            field = exc.field if isinstance(exc, SchemaError) else "package"
            message = str(exc).removeprefix(f"{field}: ")
            raise SchemaError(f"{where}: {field}", message) from None
    return packages
