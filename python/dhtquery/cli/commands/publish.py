"""``dhtquery publish``: join, store and announce the packages of a catalog file, leave."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final

import typer

from ...dht import Publisher
from ...query import QueryConfig
from ...registry import Package
from ..common import (
    BOOTSTRAP_TIMEOUT,
    Address,
    BootstrapOption,
    BootstrapTimeoutOption,
    CliError,
    KeyOption,
    LogLevelOption,
    addresses,
    client_node,
    drain_requests,
    load_publisher,
    plural,
    publish_packages,
    read_catalog,
    run_async,
    set_level,
)

__all__ = ["PUBLISH_LINGER", "publish"]


#: Seconds a ``publish`` process stays up after its stores, for the gossip it
#: started to be answered (it returns sooner once no request is pending).
PUBLISH_LINGER: Final = 2.0


def publish(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON file: a list of package objects")],
    bootstrap: BootstrapOption = [],  # noqa: B006
    bootstrap_timeout: BootstrapTimeoutOption = BOOTSTRAP_TIMEOUT,
    host: Annotated[str | None, typer.Option(help="interface for this client node")] = None,
    linger: Annotated[
        float, typer.Option(min=0.0, help="max seconds to stay up for gossip after storing")
    ] = PUBLISH_LINGER,
    key: KeyOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Publish the packages of FILE to the network.

    FILE holds a JSON list of objects shaped like Package.to_record():
    namespace, name, version, title (required), description, categories,
    tags, license, authors; "hash" may be omitted (it is computed) and, if
    given, must match. This process is a node that joins, stores, waits for
    its announcements to go out, and stops: the packages then live on the
    network's nodes.

    Every package is signed with the publisher key of --key FILE (or the
    DHTQUERY_KEY variable, or the file dhtquery keygen writes by default):
    its namespaces belong to that key.
    """
    set_level(ctx, log_level)
    peers = addresses(bootstrap)
    if not peers:
        raise typer.BadParameter("at least one is needed", param_hint="'--bootstrap'")
    packages = read_catalog(file)
    if not packages:
        print(f"published nothing: {file} holds no packages")
        return
    publisher = load_publisher(key)
    print(f"signing with key {publisher.key_id}")
    results = run_async(_publish(peers, host, packages, linger, bootstrap_timeout, publisher))
    failed = 0
    for package, held in results:
        if isinstance(held, str):
            failed += 1
            print(f"FAILED {package.id}@{package.version}: {held}")
        else:
            verb = "holds" if held == 1 else "hold"
            print(f"published {package.id}@{package.version} ({plural(held, 'node')} {verb} it)")
    if failed:
        raise CliError(f"{failed} of {plural(len(results), 'package')} were not published", 1)
    print(f"published {plural(len(results), 'package')} from {file}")


async def _publish(
    peers: Sequence[Address],
    host: str | None,
    packages: Sequence[Package],
    linger: float,
    wait: float,
    publisher: Publisher,
) -> list[tuple[Package, int | str]]:
    async with client_node(peers, host, QueryConfig(), wait) as registry:
        results = await publish_packages(registry, packages, publisher)
        await drain_requests(registry.node, linger)
        return results
