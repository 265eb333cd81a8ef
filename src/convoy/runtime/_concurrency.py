"""Structured concurrency for workflow branches: one task group, ordered results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from typing import TypeVar, cast

from convoy._errors import SessionTerminated
from convoy.durability._signals import Parked, SessionInterrupted

T = TypeVar("T")


async def concurrently(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Await all, in a task group: results in order; the first failure cancels the rest.

    A branch that parks (waits for a timer or a signal) does not cancel the others: they
    go on until each ends or parks too, so the steps they started are journaled with their
    outcome, and then the whole parks (:func:`_parked_together`). Cancelling them would
    leave a step ``started`` with no outcome, which its next run must escalate, and the
    session's result would depend on whether a wait parked or was waited out in process.
    """
    if len(aws) == 1:
        return [await aws[0]]
    parked: list[tuple[int, Parked]] = []
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_branch(aw, i, parked)) for i, aw in enumerate(aws)]
    except BaseExceptionGroup as eg:
        raise _first(eg) from None
    if parked:
        raise _parked_together(parked)
    return [t.result() for t in tasks]


async def _branch(aw: Awaitable[T], i: int, parked: list[tuple[int, Parked]]) -> T:
    try:
        return await aw
    except Parked as p:  # (kept, not raised: a raise would cancel the other branches)
        parked.append((i, p))
        return cast(T, None)  # (never read: the whole parks)


def _parked_together(parked: list[tuple[int, Parked]]) -> Parked:
    """How the whole waits when branches parked: woken at the earliest of their timers (a
    sleep's, a wait's timeout), or by any signal one of them waits for (the store wakes a
    session for each of its wait's names); a signal one branch waits for wakes the whole,
    and that branch takes it as the others park again."""
    if len(parked) == 1:
        return parked[0][1]
    parked.sort(key=lambda ip: ip[0])
    wakes = [p.wake_at for _, p in parked if p.wake_at is not None]
    return Parked(wake_at=min(wakes) if wakes else None,
                  wait_names=[n for _, p in parked for n in p.wait_names])


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
    # the branch's own errors.
    for kind in (SessionInterrupted, SessionTerminated, Exception):
        for e in found:
            if isinstance(e, kind):
                return e
    return found[0]
