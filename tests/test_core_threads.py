"""The Rust core fed from several threads at once: nothing lost, nothing
counted twice, counters consistent."""

from __future__ import annotations

import threading

from dhtquery.query.types import BatchStatus, CoreOutcome, Reason, SubmitStatus
from tests.conftest import require_rust

THREADS = 4
QUERIES = 50
SHARED_KEYS = 200  # every thread offers these: each must be accepted once
OWN_KEYS = 50  # each thread's own keys: all must be accepted


def test_four_threads_offering_to_the_same_queries() -> None:
    core_module = require_rust()
    core = core_module.QueryCore()
    capacity = SHARED_KEYS + THREADS * OWN_KEYS
    ids = [core.register(60.0, capacity, 0, 1.0) for _ in range(QUERIES)]
    start = threading.Barrier(THREADS + 1)
    drained: dict[int, list[object]] = {index: [] for index in range(QUERIES)}
    accepted = [0] * THREADS
    stop_draining = threading.Event()

    def offer(thread: int) -> None:
        start.wait()
        for key_number in range(SHARED_KEYS):
            for query_id in ids:
                code = core.offer(query_id, f"t{thread}", f"shared-{key_number}", key_number, 2.0)
                assert type(code) is SubmitStatus
                accepted[thread] += code in (SubmitStatus.NEW, SubmitStatus.COMPLETED)
        own = [(f"own-{thread}-{n}", n) for n in range(OWN_KEYS)]
        for query_id in ids:
            batch = core.offer_many(query_id, f"t{thread}", own, 2.0)
            assert type(batch) is BatchStatus
            accepted[thread] += batch.accepted
            assert batch.duplicates == 0

    def drain() -> None:
        start.wait()
        while not stop_draining.is_set():
            for index, query_id in enumerate(ids):
                drained[index].extend(core.drain(query_id))

    workers = [threading.Thread(target=offer, args=(n,)) for n in range(THREADS)]
    drainer = threading.Thread(target=drain)
    for thread in [*workers, drainer]:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
        assert not thread.is_alive()
    stop_draining.set()
    drainer.join(timeout=120)

    for index, query_id in enumerate(ids):
        drained[index].extend(core.drain(query_id))
        outcome = core.finish(query_id, 3.0)
        assert type(outcome) is CoreOutcome and outcome.reason is Reason.MAX_RESULTS
        keys = [record[2] for record in drained[index] + outcome.results]
        assert len(keys) == len(set(keys)) == capacity

    offers = THREADS * (SHARED_KEYS + OWN_KEYS) * QUERIES
    counters = core.counters()
    assert sum(accepted) == counters[5] == capacity * QUERIES  # results
    assert counters[6] == offers - capacity * QUERIES  # duplicates
    assert counters[4] == 0 and counters[1] == QUERIES  # in flight, successful
