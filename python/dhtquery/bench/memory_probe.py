"""Child process of the memory benchmark: how much resident memory a query
core takes per in-flight query.

    python -m dhtquery.bench.memory_probe MODULE COUNT MAX_RESULTS [EXTRA_SYS_PATH]

imports ``MODULE`` (which has ``QueryCore``), makes a core, reads the RSS from
``/proc/self/statm``, registers COUNT queries with no results (dropping the
ids it gets back, so only the core holds them), reads the RSS again and prints
one JSON object to stdout. A fresh process per measurement keeps the
allocator's free lists of earlier work out of the number.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys

START = 100.0
TIMEOUT = 10.0
EXPECTED_PEERS = 3
NOW_STEP = 1e-6


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def register_many(core: object, count: int, max_results: int) -> None:
    register = core.register  # type: ignore[attr-defined]
    for index in range(count):
        register(TIMEOUT, max_results, EXPECTED_PEERS, START + index * NOW_STEP)


def main(argv: list[str]) -> None:
    module_name, count_text, max_results_text, *extra_path = argv
    sys.path[:0] = extra_path
    module = importlib.import_module(module_name)
    count = int(count_text)
    core = module.QueryCore()
    gc.collect()
    gc.disable()
    before = resident_bytes()
    register_many(core, count, int(max_results_text))
    gc.collect()
    after = resident_bytes()
    report = {
        "module_file": getattr(module, "__file__", None),
        "count": count,
        "in_flight": core.in_flight,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_query": (after - before) / count,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
