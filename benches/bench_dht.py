"""``python benches/bench_dht.py [options]``: runs ``dhtquery.bench.dht``, the
benchmark as shipped in the package (``dhtquery bench dht`` from an installed
wheel); its docstring documents the method, ``--help`` the options. From a
source checkout without an install, run with ``PYTHONPATH=python``."""

import sys

from dhtquery.bench import run

if __name__ == "__main__":
    sys.exit(run("dht", sys.argv[1:]))
