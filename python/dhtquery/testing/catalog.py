"""The one catalog generator of the demo, the benches and the tests:
schema-valid packages, the same list for the same arguments.

Two vocabularies (``style``), each drawing exactly what its first user drew
before they were merged, so earlier catalogs (and bench figures) still hold:

``"themed"`` (the demo's)
    one of 14 categories per package in turn, with the category's own name
    stems, nouns and tags: readable results.
``"zipf"`` (the registry bench's)
    words, tags and categories drawn with a skew (word ``k`` with weight
    ``1 / (k + 3)``: a few common, many rare), as in real registries, so text
    queries hit postings of realistic sizes.

Both then give no tag to more than ``max_per_tag`` packages (a node holds at
most ``MAX_RECORDS_PER_KEY`` records under one tag key; ``None``: no cap) and
add an older version of ``older_share`` of the packages.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from typing import Final, Literal

import semver

from ..dht import MAX_RECORDS_PER_KEY, Publisher
from ..errors import InvalidArgumentError
from ..registry import STANDARD_CATEGORIES, Package, PackageId

__all__ = [
    "BENCH_SEED",
    "DEMO_SEED",
    "MAX_PACKAGES_PER_TAG",
    "CatalogStyle",
    "generate_catalog",
]

CatalogStyle = Literal["themed", "zipf"]
#: The demo's seed (``dhtquery demo --seed``).
DEMO_SEED: Final = 7
#: The registry bench's seed.
BENCH_SEED: Final = 20_240_604
#: A tag key holds at most MAX_RECORDS_PER_KEY records per node; the default
#: cap leaves room for a few records published by hand.
MAX_PACKAGES_PER_TAG: Final = MAX_RECORDS_PER_KEY - 6


class _TagCap:
    """Gives no tag to more than ``limit`` packages (``None``: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.use: dict[str, int] = {}

    def __call__(self, tags: Iterable[str]) -> list[str]:
        # sorted: a set's order changes from one process to the next
        limit = self.limit
        kept = [t for t in sorted(set(tags)) if limit is None or self.use.get(t, 0) < limit]
        for tag in kept:
            self.use[tag] = self.use.get(tag, 0) + 1
        return kept


def generate_catalog(
    count: int,
    seed: int = DEMO_SEED,
    *,
    style: CatalogStyle = "themed",
    max_per_tag: int | None = MAX_PACKAGES_PER_TAG,
    older_share: float = 0.0,
) -> list[Package]:
    """``count`` packages with distinct ids, then an older version of
    ``int(count * older_share)`` of them (newest versions first)."""
    if not isinstance(count, int) or count < 0:
        raise InvalidArgumentError(f"count must be an int >= 0, got {count!r}")
    if max_per_tag is not None and max_per_tag < 0:
        raise InvalidArgumentError(f"max_per_tag must be >= 0 or None, got {max_per_tag!r}")
    if not 0.0 <= older_share <= 1.0:
        raise InvalidArgumentError(f"older_share must be in [0, 1], got {older_share!r}")
    draw = _STYLES.get(style)
    if draw is None:
        raise InvalidArgumentError(f"style must be one of {', '.join(_STYLES)}, got {style!r}")
    rng = random.Random(seed)
    packages = draw(rng, count, _TagCap(max_per_tag))
    return packages + _older_versions(rng, packages, int(count * older_share))


def _older_versions(rng: random.Random, packages: list[Package], count: int) -> list[Package]:
    if count == 0:
        return []
    older = []
    for package in rng.sample(packages, count):
        version = package.version
        if version.major == 0 and version.minor == 0 and version.patch == 0:
            continue
        previous = semver.Version.parse(
            f"{version.major}.{version.minor}.{version.patch - 1}"
            if version.patch
            else f"{max(0, version.major - 1)}.9.9"
            if version.minor == 0
            else f"{version.major}.{version.minor - 1}.9"
        )
        older.append(
            Package(
                package.id,
                previous,
                package.title,
                package.description,
                package.categories,
                package.tags,
                package.license,
                package.authors,
            )
        )
    return older


# -- "themed": the demo's catalog ----------------------------------------------

_NAMESPACES: Final = (
    "acme", "openlab", "pyfolk", "datalabs", "netcraft", "quantum", "pixelworks",
    "toolsmith", "cloudnine", "ferrous", "northwind", "bluebird", "lattice", "orbital",
)  # fmt: skip

# category -> (name stems, nouns for titles, tags)
_CATEGORY_WORDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "audio": (
        ("wave", "synth", "opus", "mixer", "sample", "beat", "tone", "midi"),
        ("audio decoder", "synthesizer", "sound mixer", "MIDI toolkit", "resampler"),
        ("audio", "dsp", "midi", "codec", "synth", "streaming", "mp3", "flac", "realtime"),
    ),
    "cli": (
        ("args", "prompt", "term", "shell", "flag", "clap", "color", "spinner"),
        ("argument parser", "terminal toolkit", "progress bar", "shell completion"),
        ("cli", "terminal", "ansi", "argparse", "tui", "completion", "color", "prompt"),
    ),
    "crypto": (
        ("cipher", "hash", "sign", "vault", "seal", "keyring", "nonce", "argon"),
        ("hash function", "signature library", "key store", "TLS helper", "cipher suite"),
        ("crypto", "sha256", "ed25519", "aes", "tls", "hashing", "keys", "blake3", "argon2"),
    ),
    "data": (
        ("frame", "csv", "parquet", "arrow", "json", "yaml", "schema", "table"),
        ("dataframe library", "CSV parser", "JSON parser", "schema validator", "serializer"),
        ("json", "csv", "parquet", "arrow", "serde", "yaml", "schema", "etl", "msgpack"),
    ),
    "database": (
        ("sql", "pg", "redis", "kv", "orm", "query", "migrate", "pool"),
        ("database client", "SQL builder", "ORM", "connection pool", "migration tool"),
        ("sql", "postgres", "sqlite", "redis", "orm", "kv-store", "migrations", "pool"),
    ),
    "devtools": (
        ("lint", "fmt", "build", "profile", "trace", "debug", "bench", "doc"),
        ("linter", "code formatter", "build tool", "profiler", "tracing library"),
        ("lint", "format", "build", "profiling", "tracing", "debugging", "docs", "ci"),
    ),
    "embedded": (
        ("mcu", "gpio", "hal", "rtos", "spi", "uart", "flash", "boot"),
        ("hardware abstraction layer", "GPIO driver", "RTOS kernel", "bootloader"),
        ("embedded", "no-std", "arm", "risc-v", "gpio", "rtos", "firmware", "i2c"),
    ),
    "game": (
        ("sprite", "ecs", "physics", "tile", "pathfind", "shader", "engine", "input"),
        ("game engine", "entity component system", "physics engine", "tile map editor"),
        ("gamedev", "ecs", "physics", "2d", "3d", "sprites", "pathfinding", "engine"),
    ),
    "graphics": (
        ("render", "raster", "vector", "mesh", "pixel", "image", "svg", "font"),
        ("image decoder", "vector renderer", "font rasterizer", "mesh toolkit"),
        ("graphics", "image", "png", "svg", "opengl", "vulkan", "fonts", "gpu", "webgpu"),
    ),
    "ml": (
        ("tensor", "neural", "grad", "infer", "embed", "token", "learn", "model"),
        ("tensor library", "neural network toolkit", "tokenizer", "inference server"),
        ("ml", "tensor", "neural-network", "nlp", "inference", "onnx", "autograd", "gpu"),
    ),
    "networking": (
        ("http", "socket", "dns", "quic", "mesh", "proxy", "rpc", "packet"),
        ("HTTP client", "DNS resolver", "QUIC transport", "RPC framework", "proxy server"),
        ("http", "async", "dns", "quic", "tcp", "udp", "p2p", "rpc", "websocket", "dht"),
    ),
    "science": (
        ("linalg", "stats", "ode", "fft", "sparse", "units", "geo", "bio"),
        ("linear algebra library", "statistics toolkit", "FFT library", "ODE solver"),
        ("math", "statistics", "linear-algebra", "fft", "simulation", "numerics", "geo"),
    ),
    "testing": (
        ("mock", "fuzz", "snap", "prop", "assert", "fixture", "bench", "cover"),
        ("mocking library", "fuzzer", "snapshot tester", "property tester"),
        ("testing", "mocking", "fuzzing", "snapshot", "property-testing", "coverage"),
    ),
    "web": (
        ("router", "template", "session", "cookie", "rest", "graphql", "static", "form"),
        ("web framework", "HTTP router", "template engine", "GraphQL server", "REST toolkit"),
        ("web", "http", "router", "templates", "graphql", "rest", "middleware", "wasm"),
    ),
}
_SUFFIXES: Final = ("", "-rs", "-py", "-core", "-lite", "-kit", "-x", "-utils", "2", "-ng")
_TITLE_ADJECTIVES: Final = (
    "Fast", "Tiny", "Safe", "Async", "Minimal", "Zero-copy", "Portable", "Simple",
    "Robust", "Typed", "Lightweight", "Streaming",
)  # fmt: skip
_QUALITIES: Final = (
    "with no unsafe code", "for async runtimes", "with a tiny footprint",
    "that streams results", "with first-class types", "built for throughput",
    "with zero dependencies", "for embedded and server use",
)  # fmt: skip
_THEMED_LICENSES: Final = (
    "MIT", "Apache-2.0", "MIT OR Apache-2.0", "BSD-3-Clause", "MPL-2.0", "ISC",
)  # fmt: skip
_AUTHORS: Final = (
    "Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
    "Donald Knuth", "Margaret Hamilton", "Ken Thompson", "Radia Perlman", "Leslie Lamport",
    "Frances Allen", "John Backus", "Katherine Johnson", "Tony Hoare",
)  # fmt: skip


def _themed(rng: random.Random, count: int, cap: _TagCap) -> list[Package]:
    categories = sorted(_CATEGORY_WORDS)
    seen: set[PackageId] = set()
    packages: list[Package] = []
    attempt = 0
    while len(packages) < count:
        attempt += 1
        category = categories[len(packages) % len(categories)]
        stems, nouns, tags = _CATEGORY_WORDS[category]
        name = rng.choice(stems) + rng.choice(_SUFFIXES)
        if attempt > count * 4:  # the small name space is used up: number them
            name = f"{name}-{attempt}"
        package_id = PackageId(rng.choice(_NAMESPACES), name)
        if package_id in seen:
            continue
        seen.add(package_id)
        extra = rng.choice([c for c in categories if c != category])
        chosen_categories = [category, extra] if rng.random() < 0.3 else [category]
        chosen_tags = cap(rng.sample(tags, k=min(len(tags), rng.randint(1, 3))))
        noun = rng.choice(nouns)
        major = rng.choice((0, 0, 1, 1, 2, 3))
        version = semver.Version(major, rng.randint(0, 19), rng.randint(0, 30))
        packages.append(
            Package(
                package_id,
                version,
                f"{rng.choice(_TITLE_ADJECTIVES)} {noun}",
                f"A {noun} {rng.choice(_QUALITIES)}; part of the {package_id.namespace} "
                f"{category} collection.",
                tuple(chosen_categories),
                tuple(chosen_tags),
                rng.choice(_THEMED_LICENSES),
                tuple(rng.sample(_AUTHORS, k=rng.randint(1, 2))),
            )
        )
    return packages


# -- "zipf": the registry bench's catalog --------------------------------------


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Vocabulary of package names, titles and descriptions: words a registry of
# libraries is made of, so text queries hit postings of realistic sizes.
_WORDS: Final = _split(
    "async alpha array audio auth avro backup base batch bench binary bit bloom buffer build "
    "bytes cache canvas cassandra channel chart chess chunk cipher circuit cli client cloud "
    "cluster codec color compiler compress config console core cpu crawler cron crypto csv "
    "cuda dag dashboard data date debug decimal deploy diff digest discord dns docker docs dom "
    "driver dsp ecdsa edge editor email emulator encoder engine entity env etl event fast fft "
    "file filter finance flag flow font form format fractal frame fuzz game geo git gpu graph "
    "grid grpc gzip hash heap http image index ini input ipc jit job json jwt kafka kernel key "
    "lambda layout lexer lint list lock log lua macro mail map markdown math matrix media mesh "
    "metric midi mock model mqtt music mutex neural nlp noise oauth orm packet parser path pdf "
    "physics pipe pixel plot plugin pool port printer probe proto proxy queue radio random "
    "raster raft redis regex render report rest retry ring router rpc rust sat scheduler schema "
    "search semver serde server shader shell signal sim sketch slug socket solver sort sound "
    "spark spline sql sqlite stack stats storage stream string sync synth table task template "
    "tensor term test text theme thread tile time timer token toml trace tree tui udp unicode "
    "uuid vector video vm wasm watch wave web websocket wiki window worker xml yaml zip"
)
_ADJECTIVES: Final = _split(
    "fast tiny simple safe lazy smart pure micro mini rapid robust modern lightweight "
    "streaming portable minimal embedded secure scalable reactive typed zero-copy incremental"
)
_NOUNS: Final = _split(
    "library toolkit framework engine wrapper binding helper utility runtime backend "
    "implementation client server parser generator"
)
_FIRST: Final = _split(
    "Ada Ali Ana Ben Chen Dana Eli Eva Femi Hana Ivan Jo Kai Lea Li Mia Noor Omar Paz Raj "
    "Sam Sara Tom Uma Vera Wei Yuki Zoe"
)
_LAST: Final = _split(
    "Abe Baker Cruz Diaz Evans Fox Garcia Hill Ito Jones Khan Lee Moreau Nagy Okafor Park "
    "Quinn Rossi Silva Tanaka Ueda Vogel Wong Xu Young Zhang"
)
_LICENSES: Final = ("MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0", "MPL-2.0", "ISC", "UNLICENSED")
# After the registry's STANDARD_CATEGORIES, a few custom ones.
_CUSTOM_CATEGORIES: Final = ("blockchain", "robotics", "bioinfo", "iot", "finance")


def _namespaces(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        kind = rng.random()
        if kind < 0.4:
            name = f"{rng.choice(_FIRST).lower()}{rng.choice(_LAST).lower()}"
        elif kind < 0.7:
            name = f"{rng.choice(_WORDS)}-labs"
        else:
            name = f"{rng.choice(_WORDS)}{rng.choice(('io', 'hq', 'dev', 'org', 'rs', 'py'))}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _zipf(rng: random.Random, count: int, cap: _TagCap) -> list[Package]:
    namespaces = _namespaces(rng, max(20, count // 25))
    words = list(_WORDS)
    rng.shuffle(words)
    weights = [1.0 / (rank + 3) for rank in range(len(words))]
    tags = words[:160]
    tag_weights = weights[:160]
    categories = list(STANDARD_CATEGORIES) + list(_CUSTOM_CATEGORIES)
    category_weights = [1.0] * len(STANDARD_CATEGORIES) + [0.15] * len(_CUSTOM_CATEGORIES)

    packages: list[Package] = []
    ids: set[tuple[str, str]] = set()
    while len(packages) < count:
        parts = rng.choices(words, weights, k=rng.choice((1, 2, 2, 3)))
        name = "-".join(dict.fromkeys(parts))
        namespace = rng.choice(namespaces)
        if (namespace, name) in ids:
            continue
        ids.add((namespace, name))
        topic = " ".join(dict.fromkeys(rng.choices(words, weights, k=2)))
        adjective, noun = rng.choice(_ADJECTIVES).capitalize(), rng.choice(_NOUNS)
        title = f"{adjective} {name.replace('-', ' ')} {noun}"
        description = (
            f"A {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} for {topic}, with "
            f"{' and '.join(dict.fromkeys(rng.choices(words, weights, k=3)))} support."
        )
        major = rng.choice((0, 0, 1, 1, 1, 2, 3))
        version = semver.Version(major, rng.randrange(20), rng.randrange(30))
        packages.append(
            Package(
                PackageId(namespace, name),
                version,
                title,
                description,
                categories=tuple(
                    rng.sample(
                        rng.choices(categories, category_weights, k=3), k=rng.choice((1, 1, 2))
                    )
                ),
                tags=tuple(cap(rng.choices(tags, tag_weights, k=rng.randint(1, 5)))),
                license=rng.choice(_LICENSES),
                authors=(f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",),
            )
        )
    return packages


_STYLES: Final[dict[str, Callable[[random.Random, int, _TagCap], list[Package]]]] = {
    "themed": _themed,
    "zipf": _zipf,
}


def namespace_publisher(namespace: str) -> Publisher:
    """The demo's and the benchmarks' key for ``namespace``: the same in
    every process, so packages of one namespace published from several
    nodes have one owner. Derived from a public seed, so anyone can sign
    with it: for local demos and benchmarks only, never a real network."""
    return Publisher(hashlib.sha256(f"dhtquery-demo-namespace-{namespace}".encode()).digest())
