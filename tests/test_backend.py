"""The backend switch: DHTQUERY_BACKEND, explicit choices, fallback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from dhtquery import BackendUnavailableError, InvalidArgumentError, QueryManager, new_core
from dhtquery.query.backend import ENV_VAR, load_core
from tests.conftest import require_rust


def test_env_var_selects_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "python")
    assert QueryManager().backend == "python"


def test_rust_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    require_rust()
    monkeypatch.delenv(ENV_VAR, raising=False)
    name, module = load_core()
    assert name == "rust" and module.__name__ == "dhtquery._core"


def test_bad_backend_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError, match="backend"):
        new_core("java")
    monkeypatch.setenv(ENV_VAR, "fortran")
    with pytest.raises(InvalidArgumentError, match=ENV_VAR):
        QueryManager()


def _hide_rust_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as a missing extension does.
    monkeypatch.setitem(sys.modules, "dhtquery._core", None)


def test_auto_falls_back_to_python_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    _hide_rust_core(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="dhtquery"):
        name, _ = load_core("auto")
    assert name == "python"
    assert "Rust core unavailable" in caplog.text


def test_explicit_rust_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_rust_core(monkeypatch)
    with pytest.raises(BackendUnavailableError, match="rust"):
        load_core("rust")


def test_a_bad_backend_variable_does_not_break_importing_the_package() -> None:
    # The backend is chosen on first use, not at import: importing the
    # layers that never start a query must work whatever the variable says.
    code = "import dhtquery, dhtquery.registry.model, dhtquery.cli; print('imported')"
    env = {**os.environ, ENV_VAR: "bogus"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"
