"""Client CPU per ``get_all`` lookup without the kernel or a second process:
a tool for work on the client's hot path, not a benchmark of record.

    python -m dhtquery.bench profile [--loop uvloop|asyncio]
        [--backend rust|python] [--lookups 20000] [--repeat 5] [--profile]
        [--verify cached|unchecked|cold|all] [--banded] [--sockets]
        [--serve [find_values|find_value]]
        [--count-only] [--frozen-clock]

A ``DhtNode`` client knows 20 peers that do not exist: its transport answers
each request itself, on the next loop iteration, as a holder of the key
would (one record). ``bench_dht``'s closed loop (64 lookups in flight, the
same correctness check) runs ``--repeat`` times with the GC frozen, as the
benchmark does, and the median CPU time per lookup is printed. The fake
peers' own work (decoding the request, encoding the answer) is timed apart
and subtracted, so the figure is the client's Python alone (30.7 us under
uvloop with the Rust core when written); on the real network the client also
spends ~15 us of system time per lookup (three ``sendto``, three receives)
and a few us in the event loop's own code (``bench_dht`` measured 52 us).

Repetitions agree to about +-1 us (``bench_dht`` varies by +-5 %), but the
machine's pace drifts by a few percent over minutes: compare a change with
its base back to back (two worktrees), not with a figure from earlier.
``--profile`` adds a cProfile listing, which slows every call down but ranks
them. ``--verify`` picks how the client checks the signed records: verified
and remembered (``cached``, every node's way), not checked (``unchecked``:
what signatures cost without verification), verified every time (``cold``);
``all`` measures the three in turn, each ``--repeat`` times interleaved, and
prints the warm cache's cost against unchecked.

``--banded``: the lookup reads each peer's SRTT as 20 to 200 ms (spread
over the 20 peers, fixed), not the loopback's few microseconds, so that
every lookup ranks its candidates by time over score, equals in a drawn
order (``dhtquery.dht.lookup``'s banded path, a real network's) rather than
taking the closest on a loopback where time cannot rank them.

``--sockets``: the client listens on a real UDP socket on 127.0.0.1 (its
``BatchedTransport``: ``recvmmsg`` into ``DatagramEngine.receive_batch``,
asks sent by the core's socket), and the 20 peers are real sockets in this
process, each answering a request with the key's record (the answer's body
packed once per request body): the path ``bench dht``'s client takes, with
the kernel's work in it, yet one process, so that an instruction counter
(``--count-only --frozen-clock`` under cachegrind) sees all of it. Without
it the fake transport hands each answer to ``datagram_received``, which the
batched path does not take.

``--serve``: the other side, CPU per ``find_values`` request a holder
serves (a client's request of a key it holds one record of; ``--lookups``
requests a run), datagrams handed to the protocol with no socket;
``--serve find_value``: per ``find_value`` request (stock ``Server.get``'s)
of a key it holds a plain value of.

It drives a node's protocol with a fake transport, so it reaches below
the DhtNode's public API (``_create_protocol``, the router, the wire codec):
a tool for work on the DHT layer itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import itertools
import os
import pstats
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kademlia.node import Node
from kademlia.utils import digest

from ..dht import DhtNode, Publisher, Record
from ..dht.wire import (
    CLIENT_PAD,
    HEADER_SIZE,
    decode,
    encode_response,
    frame_request,
    frame_response,
    pack_request,
    pack_response,
)
from ..errors import InvalidArgumentError
from ..query import QueryConfig, QueryManager, new_core, new_peer_book
from ..testing import loop_factory
from . import dht as bench
from .common import gc_quiet
from .load import closed_loop

PEERS = 20
KEYS = 200
#: ``--count-only``'s time limit of a phase (seconds): a guard, not a bound
COUNT_ONLY_SECONDS = 3600.0
PUBLISHER = Publisher(hashlib.sha256(b"dhtquery-profile-publisher").digest())


class _NeverFires:
    __slots__ = ()

    def cancel(self) -> None:
        """Nothing to cancel: the timer never fires."""


class FrozenClock:
    """A clock that does not move and whose timers never fire
    (``--frozen-clock``): no RTO, deadline or grace ever passes, so an
    instruction count of the lookups depends on the code alone, not on how
    slowly an instruction counter ran them (under callgrind requests went
    overdue and were sent again, and the real-clock count of one build
    spread by up to 7 %; frozen, two runs agree within 0.1 k a lookup).
    ``now`` and ``wall`` are C callables, as ``SystemClock``'s are."""

    __slots__ = ("now", "wall")

    def __init__(self, now: float = 1000.0, wall: float | None = None) -> None:
        self.now = itertools.repeat(now).__next__
        self.wall = itertools.repeat(time.time() if wall is None else wall).__next__

    def call_at(self, when: float, callback: Callable[[], object]) -> _NeverFires:
        return _NeverFires()


class AnsweringTransport:
    """Answers every find_values request with the key's one record, on the
    next loop iteration (all of one iteration's requests in one callback)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, records: dict[bytes, Any]):
        self._loop = loop
        self._protocol = protocol
        self._records = records
        self._queue: list[tuple[bytes, Any]] = []
        #: seconds spent playing the peers (excluded from the client's CPU)
        self.peer_seconds = 0.0

    def is_closing(self) -> bool:
        # (the protocol asks before each request: a stopped node sends
        # nothing; this transport never closes)
        return False

    def sendto(self, data: bytes, address: Any) -> None:
        if not self._queue:
            self._loop.call_soon(self._answer)
        self._queue.append((data, address))

    def _answer(self) -> None:
        queue, self._queue = self._queue, []
        started = time.process_time()
        answers = []
        for data, address in queue:
            _, msg_id, (_, args) = decode(data)
            body = {"records": [self._records[args[1]]], "nodes": [], "more": False}
            answers.append((encode_response(msg_id, body), address))
        self.peer_seconds += time.process_time() - started
        for datagram, address in answers:
            self._protocol.datagram_received(datagram, address)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "sockname" else default

    def close(self) -> None:
        pass


class SocketPeers:
    """``--sockets``: ``PEERS`` UDP sockets on 127.0.0.1, read by the loop,
    each answering a find_values request as a holder of the key would (one
    record). An answer's body is packed once per request body (a lookup's
    requests of a key all carry the same), so that the peers' own work per
    request is small; it is timed apart (``peer_seconds``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, records: dict[bytes, Any]) -> None:
        self._loop = loop
        self._records = records
        self._bodies: dict[bytes, bytes] = {}
        self.peer_seconds = 0.0
        self.sockets: list[socket.socket] = []
        try:
            for _ in range(PEERS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sockets.append(sock)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                loop.add_reader(sock.fileno(), self._serve, sock)
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname() for sock in self.sockets]

    def _serve(self, sock: socket.socket) -> None:
        started = time.process_time()
        bodies = self._bodies
        # (bounded: what one wake-up finds, at most a batch's worth)
        for _ in range(256):
            try:
                data, address = sock.recvfrom(65536)
            except BlockingIOError:
                break
            body = bodies.get(data[HEADER_SIZE:])
            if body is None:
                _, _, (_, args) = decode(data)
                answer = {"records": [self._records[args[1]]], "nodes": [], "more": False}
                body = bodies[data[HEADER_SIZE:]] = pack_response(answer)
            sock.sendto(frame_response(data[1:HEADER_SIZE], body), address)
        self.peer_seconds += time.process_time() - started

    def close(self) -> None:
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets = []


async def measure(
    backend: str,
    lookups: int,
    repeat: int,
    profile: bool,
    verify: str = "cached",
    banded: bool = False,
    count_only: bool = False,
    frozen_clock: bool = False,
    sockets: bool = False,
) -> list[float]:
    keys = [f"profile-{index}" for index in range(KEYS)]
    # (the time limits only guard against a hang: under an instruction
    # counter a phase runs ~50x slower and would be cut short by them)
    warm_seconds, phase_seconds = (COUNT_ONLY_SECONDS,) * 2 if count_only else (10.0, 60.0)
    records = [
        Record.create(PUBLISHER, digest(key), f"value-{index}".encode())
        for index, key in enumerate(keys)
    ]
    config = QueryConfig(default_timeout=5.0)
    node = DhtNode(
        config=config,
        queries=QueryManager(
            config, core=new_core(backend), clock=FrozenClock() if frozen_clock else None
        ),
        storage=bench.NullStorage(),
        verifier=bench._verifier(verify),
    )
    wire = {digest(key): record.to_wire() for key, record in zip(keys, records, strict=True)}
    loop = asyncio.get_running_loop()
    transport: AnsweringTransport | SocketPeers
    if sockets:
        transport = SocketPeers(loop, wire)
        try:
            await node.listen(0, "127.0.0.1")
        except BaseException:
            transport.close()
            raise
        protocol = node._protocol()
        addresses = transport.addresses
    else:
        protocol = node._create_protocol()
        node.protocol = protocol
        transport = AnsweringTransport(loop, protocol, wire)
        protocol.connection_made(transport)
        node.transport = transport
        addresses = [("127.0.0.1", 5000 + index) for index in range(PEERS)]
    for address in addresses:
        protocol.router.add_contact(Node(os.urandom(20), *address))
    try:
        if banded:
            # (a book of its own, fed once, for the lookups to read: the
            # protocol's own estimators, fed by the answers, left as they are)
            banded_book = new_peer_book(backend)
            now = node.clock.now()
            for i, address in enumerate(addresses):
                srtt = 0.02 + 0.18 * i / (PEERS - 1)
                banded_book.answered(address, srtt, True, now)
            protocol.peers = banded_book
        expected = [[(PUBLISHER.key_id, record.data)] for record in records]
        op = bench.by_key(bench.get_all_lookup(node, keys, expected), KEYS)
        drain = bench.DRAIN_SECONDS
        await closed_loop(  # warm-up
            op, concurrency=64, max_count=2_000, max_seconds=warm_seconds, drain_seconds=drain
        )
        per_lookup = []
        profiler = cProfile.Profile() if profile else None
        for _ in range(repeat):
            transport.peer_seconds = 0.0
            with gc_quiet():
                started = time.process_time()
                if profiler is not None:
                    profiler.enable()
                phase = await closed_loop(
                    op,
                    concurrency=64,
                    max_count=lookups,
                    max_seconds=phase_seconds,
                    drain_seconds=drain,
                )
                if profiler is not None:
                    profiler.disable()
                spent = time.process_time() - started - transport.peer_seconds
            if phase.ok != phase.count:
                raise RuntimeError(f"lookups failed: {dict(phase.failures)}")
            per_lookup.append(spent / phase.count * 1e6)
    finally:
        node.stop()
        transport.close()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    return per_lookup


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--backend", choices=("rust", "python"), default="rust")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="add a cProfile listing")
    parser.add_argument(
        "--verify", choices=(*bench.VERIFY_MODES, "all"), default="cached", help="see above"
    )
    parser.add_argument("--banded", action="store_true", help="see above")
    parser.add_argument(
        "--sockets",
        action="store_true",
        help="the client on a real UDP socket (the batched path), the peers real sockets "
        "in this process: see above",
    )
    parser.add_argument(
        "--count-only",
        action="store_true",
        help="phases bounded by their count alone (an hour's guard): for an instruction "
        "counter such as callgrind, under which the time limits would cut them short",
    )
    parser.add_argument(
        "--frozen-clock",
        action="store_true",
        help="the node's clock stands still and its timers never fire: instruction counts "
        "that depend on the code alone (with --count-only, under callgrind)",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        const="find_values",
        choices=SERVED_RPCS,
        help="CPU per request of this RPC served (find_values: of one record; find_value: "
        "of a plain value) instead of per lookup",
    )
    args = parser.parse_args(argv)
    if args.serve:
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            samples = runner.run(
                measure_serving(args.backend, args.lookups, args.repeat, args.profile, args.serve)
            )
        print(
            f"{args.serve} served, {args.loop}/{args.backend}: median "
            f"{statistics.median(samples):.1f} us/request (min {min(samples):.1f}, max "
            f"{max(samples):.1f}, {args.repeat} x {args.lookups} requests)"
        )
        return 0
    if args.verify == "all":
        return _compare_verify(args)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        samples = runner.run(
            measure(
                args.backend,
                args.lookups,
                args.repeat,
                args.profile,
                args.verify,
                args.banded,
                args.count_only,
                args.frozen_clock,
                args.sockets,
            )
        )
    print(
        f"get_all client CPU, {args.loop}/{args.backend}/{args.verify}"
        f"{'/banded' if args.banded else ''}{'/frozen' if args.frozen_clock else ''}"
        f"{'/sockets' if args.sockets else ''}: "
        f"median {statistics.median(samples):.1f} us/lookup "
        f"(min {min(samples):.1f}, max {max(samples):.1f}, {args.repeat} x "
        f"{args.lookups} lookups; the fake peers' work excluded)"
    )
    return 0


class _Sink:
    """A transport that sends nothing: what ``measure_serving`` times is the
    node's work up to ``sendto``."""

    def __init__(self) -> None:
        self.sent = 0

    def is_closing(self) -> bool:
        return False

    def sendto(self, data: bytes, address: Any) -> None:
        self.sent += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "sockname" else default

    def close(self) -> None:
        pass


#: the RPCs ``--serve`` times: ours, and stock ``Server.get``'s
SERVED_RPCS = ("find_values", "find_value")


async def measure_serving(
    backend: str, requests: int, repeat: int, profile: bool, rpc: str = "find_values"
) -> list[float]:
    """``--serve``: CPU per ``rpc`` request served (a client's request of a
    key the node holds one record of, as a ``bench dht`` holder serves; for
    ``find_value``, one plain value), datagrams fed to the protocol one by
    one with no socket; the median of ``repeat`` runs of ``requests``."""
    if rpc not in SERVED_RPCS:
        raise InvalidArgumentError(f"rpc must be one of {SERVED_RPCS}, got {rpc!r}")
    config = QueryConfig(default_timeout=5.0)
    node = DhtNode(config=config, queries=QueryManager(config, core=new_core(backend)))
    protocol = node._create_protocol()
    node.protocol = protocol
    sink = _Sink()
    protocol.connection_made(sink)
    node.transport = sink
    for index in range(PEERS):
        protocol.router.add_contact(Node(os.urandom(20), "127.0.0.1", 5000 + index))
    keys = [digest(f"profile-{index}") for index in range(KEYS)]
    now = node.clock.now()
    for index, key in enumerate(keys):
        if rpc == "find_value":
            node.storage[key] = f"value-{index}"
        else:
            node.records.put(key, Record.create(PUBLISHER, key, f"value-{index}".encode()), now)
    asker = os.urandom(20)
    bodies = [pack_request(rpc, (asker, key)) for key in keys]
    per_request = []
    profiler = cProfile.Profile() if profile else None
    for _ in range(repeat):
        # (client message ids: served without the asker's verification ping)
        datagrams = [
            (
                frame_request(os.urandom(16) + CLIENT_PAD, bodies[index % KEYS]),
                ("127.0.0.2", 6000 + index % 64),
            )
            for index in range(requests)
        ]
        received = protocol.datagram_received
        sent = sink.sent
        with gc_quiet():
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            for datagram, address in datagrams:
                received(datagram, address)
            if profiler is not None:
                profiler.disable()
            spent = time.process_time() - started
        if sink.sent - sent != requests:
            raise RuntimeError(f"{requests - sink.sent + sent} requests were not answered")
        per_request.append(spent / requests * 1e6)
    # (every key's answer kept: what was timed is the engine's own path,
    # not the protocol's answer made afresh per request)
    kept = protocol.packed_value_answers if rpc == "find_value" else protocol.packed_answers
    if len(kept) != min(KEYS, requests):
        raise RuntimeError(f"{len(kept)} of {min(KEYS, requests)} keys' {rpc} answers were kept")
    node.stop()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    return per_request


def _compare_verify(args: argparse.Namespace) -> int:
    """Each verification mode ``--repeat`` times, interleaved (A B C C B A
    ...), one run of ``--lookups`` each; the medians and the cached and
    cold modes' cost in client CPU against unchecked."""
    modes = list(bench.VERIFY_MODES)
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        for round_ in range(args.repeat):
            for mode in modes if round_ % 2 == 0 else reversed(modes):
                samples[mode] += runner.run(measure(args.backend, args.lookups, 1, False, mode))
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    base = medians["unchecked"]
    for mode in modes:
        values = samples[mode]
        print(
            f"get_all client CPU, {args.loop}/{args.backend}/{mode}: median "
            f"{medians[mode]:.1f} us/lookup (min {min(values):.1f}, max {max(values):.1f}); "
            f"{medians[mode] / base - 1:+.1%} vs unchecked"
        )
    return 0


if __name__ == "__main__":
    # run as the module of its own name (``python -m`` makes this one
    # ``__main__``): the network workers import hooks and classes by name
    from dhtquery.bench import run

    sys.exit(run("profile", sys.argv[1:]))
