"""Structured concurrency for workflow branches: one task group, ordered results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from typing import TypeVar

from convoy._errors import SessionTerminated
from convoy.durability._signals import SessionInterrupted

T = TypeVar("T")


async def concurrently(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Await all, in a task group: results in order; the first failure cancels the rest."""
    if len(aws) == 1:
        return [await aws[0]]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_as_coro(aw)) for aw in aws]
    except BaseExceptionGroup as eg:
        raise _first(eg) from None
    return [t.result() for t in tasks]


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw


def leaves(eg: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The errors in ``eg`` and in the groups it holds, in order."""
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from leaves(e)
        else:
            yield e


def _first(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a failed group: a session signal first, then the first."""
    found = list(leaves(eg))
    # Control signals first (a lost lease or store failure, then a session limit), then
    # the branch's own errors; a branch that parked matters only if nothing else failed.
    for kind in (SessionInterrupted, SessionTerminated, Exception):
        for e in found:
            if isinstance(e, kind):
                return e
    return found[0]
