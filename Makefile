.DEFAULT_GOAL := help
.PHONY: help build-dev test bench bench-quick lint wheel docs clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build-dev:  ## Build the Rust core into .venv (release profile) for working on the tree
	[ -x .venv/bin/python ] || python3 -m venv .venv
	.venv/bin/pip install --quiet maturin '.[test,bench]'
	.venv/bin/maturin develop --release

test:  ## The whole suite, from a clean checkout: build, lint, type check, cargo test, pytest
	bash ci/test.sh

bench:  ## Core benchmark, three backends (python, cython, rust); JSON in bench-results/
	.venv/bin/python -m dhtquery.bench.core

bench-quick:  ## The same, scaled down to run in under a minute
	.venv/bin/python -m dhtquery.bench.core --quick

lint:  ## ruff, mypy, the layer contract and the Rust linters without running tests
	.venv/bin/ruff check python tests benches && .venv/bin/mypy && .venv/bin/lint-imports
	cargo fmt --all -- --check && cargo clippy --all-targets -- -D warnings

wheel:  ## sdist and abi3 manylinux wheel (maturin --zig), checked and run from a clean venv; copied to dist/
	bash ci/wheel.sh --out dist

docs:  ## The guide and API reference (mkdocs, strict) into build/docs; open build/docs/index.html
	bash ci/docs.sh --out build/docs

clean:  ## Remove build output and the venv
	rm -rf target .venv dist build bench-results
