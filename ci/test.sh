#!/usr/bin/env bash
# The whole test suite from a clean checkout: build the extension, lint, type
# check, and test both cores. README.md points here; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DHTQUERY_VENV:-.venv}
PYTHON=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

# simulated hosts drop datagrams with nftables (tests/test_testing_hosts.py)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then command -v nft >/dev/null || apt-get install -y -q nftables || echo "nftables not installed: the loss tests will skip"; fi

step "virtualenv $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip

step "install dhtquery[test] (maturin builds the Rust core)"
# Uninstall first so a reused venv always gets the tree as it is now.
"$PY" -m pip uninstall --quiet --yes dhtquery >/dev/null 2>&1 || true
"$PY" -m pip install --quiet '.[test]'
"$PY" -c 'import dhtquery._core, dhtquery; print("Rust core:", dhtquery._core.__file__)'

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
step "cargo test"
cargo test --quiet

step "ruff"
"$PY" -m ruff check python tests benches ci
"$PY" -m ruff format --check python tests benches ci
step "import-linter (each layer imports only those below it)"
"$VENV/bin/lint-imports"
step "mypy python/dhtquery"
"$PY" -m mypy
step "stubtest dhtquery._core"
"$PY" -m mypy.stubtest dhtquery._core --allowlist ci/stubtest-allowlist.txt

step "pytest"
CI=${CI:-1} "$PY" -m pytest -q

step "docs: mkdocs build --strict, the guide and the API reference (ci/docs.sh)"
bash ci/docs.sh

step "wheel and sdist: manylinux, installed and run without cargo (ci/wheel.sh)"
bash ci/wheel.sh
