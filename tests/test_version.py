"""The version is written once, in Cargo.toml: the package metadata (maturin
copies it) and ``dhtquery.__version__`` (read from the metadata) agree with it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import dhtquery

ROOT = Path(__file__).resolve().parents[1]


def cargo_version() -> str:
    with (ROOT / "Cargo.toml").open("rb") as f:
        found: str = tomllib.load(f)["package"]["version"]
    return found


def test_version_is_the_installed_metadata() -> None:
    assert dhtquery.__version__ == version("dhtquery")


def test_version_is_cargo_toml() -> None:
    assert dhtquery.__version__ == cargo_version()


def test_pyproject_takes_the_version_from_cargo() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]


def test_version_is_pep440_release() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", dhtquery.__version__)


def test_a_source_tree_without_metadata_reads_cargo_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    # as if imported from the checkout's python/ (CI installs it into site-packages)
    monkeypatch.setattr(dhtquery, "__file__", str(ROOT / "python" / "dhtquery" / "__init__.py"))
    assert dhtquery._version() == cargo_version()
    monkeypatch.setattr(dhtquery, "__file__", "/nowhere/dhtquery/__init__.py")
    assert dhtquery._version() == "0+unknown"
