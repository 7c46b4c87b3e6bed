"""``python benches/profile_dht_client.py [options]``: runs
``dhtquery.bench.profile_client`` (a DHT client's CPU per ``get_all`` without
the network; its docstring documents the method, ``--help`` the options).
From a source checkout without an install, run with ``PYTHONPATH=python``."""

import sys

from dhtquery.bench import run

if __name__ == "__main__":
    sys.exit(run("profile", sys.argv[1:]))
