"""``python benches/bench_barrage.py [options]``: runs ``dhtquery.bench.barrage``, the
benchmark as shipped in the package (``dhtquery bench barrage`` from an installed
wheel); its docstring documents the method, ``--help`` the options. From a
source checkout without an install, run with ``PYTHONPATH=python``."""

import sys

from dhtquery.bench import run

if __name__ == "__main__":
    sys.exit(run("barrage", sys.argv[1:]))
