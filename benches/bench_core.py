"""``python benches/bench_core.py [options]``: runs ``dhtquery.bench.core``, the
benchmark as shipped in the package (``dhtquery bench core`` from an installed
wheel); its docstring documents the method, ``--help`` the options. From a
source checkout without an install, run with ``PYTHONPATH=python``."""

import sys

from dhtquery.bench import run

if __name__ == "__main__":
    sys.exit(run("core", sys.argv[1:]))
