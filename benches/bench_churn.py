"""``python benches/bench_churn.py [options]``: runs ``dhtquery.bench.churn``,
the churn-and-loss benchmark as shipped in the package (``dhtquery bench
churn`` from an installed wheel); its docstring documents the method,
``--help`` the options. From a source checkout without an install, run with
``PYTHONPATH=python``. Network namespaces need root; without them the hosts
are on loopback and the output says so."""

import sys

from dhtquery.bench.churn import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
