"""Two metadata-store idioms the cluster code uses in several places."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from storage.metadata import BadVersionError, MetadataStore, NoNodeError


async def delete_if_mine(store: MetadataStore, path: str,
                         is_mine: Callable[[bytes], bool]) -> None:
    """Delete the node at `path` only if its value says it is ours (and it did not change
    meanwhile: the delete is conditional on the version read)."""
    found = await store.get(path)
    if found is None or not is_mine(found.value):
        return
    with contextlib.suppress(NoNodeError, BadVersionError):  # gone or replaced meanwhile
        await store.delete(path, expected_version=found.version)


async def gather(deferreds: list[defer.Deferred[Any]]) -> list[Any]:
    """Results of Deferreds run together, in order; the first failure is raised as itself."""
    if not deferreds:
        return []
    try:
        return await defer.gatherResults(deferreds, consumeErrors=True)
    except defer.FirstError as error:
        error.subFailure.raiseException()
        raise  # not reached: raiseException always raises
