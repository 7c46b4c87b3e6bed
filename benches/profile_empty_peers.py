"""``dhtquery bench profile`` (bench/profile_client.py) with some of its 20
fake peers holding no record: a peer whose port is a multiple of
``EMPTY_EVERY`` (environment, default 2: half of them) answers with no
records, so a lookup asks further, and an answer leads to new asks (the
core's step ASK after an answer: ``LookupAnswers.settle`` and the
``Asker``), which the plain profile never does (its three asks are all
holders: the quorum). The peers' node ids are drawn from a fixed seed:
which of them are nearest each key, and so how many requests a lookup
makes, would otherwise change from run to run (two runs of one tree under
cachegrind made 5.4 and 9.0 requests a lookup). The fake peers are patched
in, so the same script measures any tree (its own ``dhtquery``), e.g.
under cachegrind:

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no \\
        .venv/bin/python benches/profile_empty_peers.py \\
        --count-only --frozen-clock --repeat 1 --lookups 3000

Arguments are ``bench profile``'s.
"""

from __future__ import annotations

import os
import random
import sys
import time
from types import SimpleNamespace

from dhtquery.bench import profile_client
from dhtquery.dht.wire import decode, encode_response

EVERY = int(os.environ.get("EMPTY_EVERY", "2"))


def _answer(self: profile_client.AnsweringTransport) -> None:
    """``AnsweringTransport._answer``, a peer on a port that is a multiple
    of EVERY answering with no records."""
    queue, self._queue = self._queue, []
    started = time.process_time()
    answers = []
    for data, address in queue:
        _, msg_id, (_, args) = decode(data)
        records = [] if address[1] % EVERY == 0 else [self._records[args[1]]]
        body = {"records": records, "nodes": [], "more": False}
        answers.append((encode_response(msg_id, body), address))
    self.peer_seconds += time.process_time() - started
    for datagram, address in answers:
        self._protocol.datagram_received(datagram, address)


profile_client.AnsweringTransport._answer = _answer  # type: ignore[method-assign]
# (profile_client reads os for the peers' ids alone)
profile_client.os = SimpleNamespace(urandom=random.Random(14).randbytes)  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(profile_client.main(sys.argv[1:]))
