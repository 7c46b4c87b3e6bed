"""``python benches/bench_registry.py [options]``: runs ``dhtquery.bench.registry``, the
benchmark as shipped in the package (``dhtquery bench registry`` from an installed
wheel); its docstring documents the method, ``--help`` the options. From a
source checkout without an install, run with ``PYTHONPATH=python``."""

import sys

from dhtquery.bench import run

if __name__ == "__main__":
    sys.exit(run("registry", sys.argv[1:]))
