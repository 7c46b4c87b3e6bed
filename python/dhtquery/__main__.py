"""``python -m dhtquery``: the ``dhtquery`` command line."""

import sys

from .cli import main

sys.exit(main())
