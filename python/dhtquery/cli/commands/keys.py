"""``dhtquery keygen`` (a publisher key file) and ``dhtquery trust`` (pin a
namespace to a publisher key, or list the trust store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ...dht import Publisher
from ...errors import InvalidArgumentError, KeyFileError
from ..common import CliError, LogLevelOption, default_key_path, set_level, trust_path, trust_store

__all__ = ["keygen", "trust"]


def keygen(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="where to write the key (default: the user config directory)"),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Make a publisher key (Ed25519) and write it to FILE, mode 0600.

    A key file is never overwritten. Publish with it (dhtquery publish --key
    FILE, or DHTQUERY_KEY=FILE): the namespaces you publish into belong to
    its public key, which is printed (others pin it with dhtquery trust).
    """
    set_level(ctx, log_level)
    path = default_key_path() if file is None else file
    if file is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    publisher = Publisher.generate()
    try:
        publisher.save(path)
    except KeyFileError as exc:
        raise CliError(str(exc), 1) from None
    print(f"wrote {path} (mode 0600)")
    print(f"public key {publisher.key_id}")


def trust(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Argument(help="the package namespace")] = None,
    key: Annotated[
        str | None, typer.Argument(help="the publisher's public key (64 hex digits)")
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Pin NAMESPACE to the publisher key KEY; with no arguments, list the
    trust store.

    Packages of a pinned namespace are accepted only when signed by its
    key; another key publishing into it is refused and reported. A
    namespace not pinned is trusted to the first key seen publishing into
    it (search --strict accepts pinned namespaces only). The store is a
    JSON file (DHTQUERY_TRUST_FILE, default: the user config directory).
    """
    set_level(ctx, log_level)
    store = trust_store()
    if namespace is None:
        pins = store.pins()
        if not pins:
            print(f"no namespace trusted yet ({trust_path()})")
        for name, pin in sorted(pins.items()):
            how = "pinned" if pin.pinned else "first use"
            print(f"{name}  {pin.key.hex()}  {how}")
        return
    if key is None:
        raise CliError("trust NAMESPACE KEY: the key is missing (64 hex digits)", 2)
    try:
        before = store.pin(namespace, key)
    except InvalidArgumentError as exc:
        raise CliError(str(exc), 2) from None
    if before is not None and before.key.hex() != key.strip().lower():
        how = "pinned" if before.pinned else "trusted on first use"
        print(f"replaced: {namespace} was {how} to {before.key.hex()}")
    print(f"pinned {namespace} to {key.strip().lower()} ({trust_path()})")
