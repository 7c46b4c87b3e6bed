"""``python -m dhtquery.bench NAME [options]``: run one benchmark."""

import sys

from . import BENCHES, run

if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
    sys.exit(f"usage: python -m dhtquery.bench {{{','.join(BENCHES)}}} [options]")
sys.exit(run(sys.argv[1], sys.argv[2:]))
