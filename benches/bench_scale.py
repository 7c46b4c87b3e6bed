"""``python benches/bench_scale.py [options]``: runs ``dhtquery.bench.scale``,
the lookups-at-scale benchmark as shipped in the package (``dhtquery bench
scale`` from an installed wheel); its docstring documents the method,
``--help`` the options. From a source checkout without an install, run with
``PYTHONPATH=python``. Network namespaces need root; without them the hosts
are on loopback and the output says so."""

import sys

from dhtquery.bench.scale import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
