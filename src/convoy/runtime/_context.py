"""The context a workflow receives: every step goes through it.

Determinism rules (a resumed session re-runs your workflow code and must ask for the same
steps in the same tree positions):

* Call models, tools and agents only through ``ctx.run`` / patterns.
* Use ``ctx.now()`` instead of ``time.time()``, ``ctx.random()`` instead of ``random``,
  ``ctx.uuid()`` instead of ``uuid.uuid4()``, ``ctx.sleep()`` instead of ``asyncio.sleep``,
  and ``ctx.step(name, fn)`` for any other I/O. Each is journaled and replays its value.
* Run branches concurrently only with ``ctx.gather`` (each branch gets its own position in
  the step tree, whatever order the scheduler runs them in).
"""

from __future__ import annotations

import asyncio
import json
import random as _random
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy._errors import SessionTerminated
from convoy.interceptors._base import EffectInput

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.runtime._session import SessionState

T = TypeVar("T")
OutT = TypeVar("OutT")


class Context:
    """A position in a session's step tree. Create children with :meth:`gather`."""

    __slots__ = ("_n", "_prefix", "depth", "session")

    def __init__(self, session: SessionState, prefix: str = "", depth: int = 0) -> None:
        self.session = session
        self._prefix = prefix
        self._n = 0
        self.depth = depth

    @property
    def session_id(self) -> str:
        return self.session.id

    @property
    def tenant(self) -> str:
        return self.session.tenant

    def next_key(self) -> str:
        key = f"{self._prefix}{self._n}"
        self._n += 1
        return key

    def child(self, *, deeper: bool = True) -> Context:
        """A new scope at the next position of this one (one agent level down if
        ``deeper``; concurrent branches of :meth:`gather` stay at the same depth)."""
        return Context(self.session, self.next_key() + "/", self.depth + deeper)

    # -- agents --------------------------------------------------------------------------

    async def run(self, agent: Agent[Any, OutT], input: Any) -> OutT:
        """Run ``agent`` on ``input`` (validated into its input type) and return its typed
        output (or, after handoffs, the output of the agent that finished)."""
        from convoy.runtime._agent_loop import run_agent

        result: OutT = await run_agent(self.child(), agent, input)
        return result

    async def gather(self, *branches: Callable[[Context], Awaitable[T]]) -> list[T]:
        """Run branches concurrently, each in its own scope; results in argument order.

        If one branch fails the others are cancelled and its error is raised.
        """
        scopes = [self.child(deeper=False) for _ in branches]
        return await concurrently([b(c) for b, c in zip(branches, scopes, strict=True)])

    async def map(self, agent: Agent[Any, OutT], inputs: Sequence[Any]) -> list[OutT]:
        """Run ``agent`` on every input concurrently (fan-out); results in input order."""
        return await self.gather(*(_runner_for(agent, x) for x in inputs))

    # -- journaled effects ---------------------------------------------------------------

    async def step(self, name: str, fn: Callable[[], Awaitable[T]], *,
                   idempotent: bool = False) -> T:
        """Run ``fn`` once, durably: its JSON-able result is journaled and replayed.

        A non-idempotent step that was running when the process died is not re-run on
        resume: the session is escalated with an ``UnknownOutcomeError``.
        """
        s = self.session
        key = self.next_key()
        chain = s.runtime.effect_chain

        async def execute() -> T:
            out: T = await chain.call(EffectInput(session=s, key=key, name=name,
                                                  idempotent=idempotent, fn=fn))
            return out

        return await s.journaled(key, "effect", name, execute, json.dumps, json.loads,
                                 effect=not idempotent, idempotent=idempotent)

    async def now(self) -> float:
        """Wall-clock time (seconds since the epoch), journaled."""
        return await self.step("clock", _now, idempotent=True)

    async def random(self) -> float:
        """A random float in [0, 1), journaled."""
        return await self.step("random", _rand, idempotent=True)

    async def uuid(self) -> str:
        """A random UUID4 string, journaled."""
        return await self.step("uuid", _uuid4, idempotent=True)

    async def sleep(self, seconds: float) -> None:
        """A durable timer: after a restart the session sleeps only for what is left."""
        wake_at = await self.step("timer", _at(seconds), idempotent=True)
        delay = wake_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def _now() -> float:
    return time.time()


async def _rand() -> float:
    return _random.random()


async def _uuid4() -> str:
    return str(_uuid.uuid4())


def _at(seconds: float) -> Callable[[], Awaitable[float]]:
    async def wake_at() -> float:
        return time.time() + seconds

    return wake_at


def _runner_for(agent: Agent[Any, OutT], value: Any) -> Callable[[Context], Awaitable[OutT]]:
    async def branch(ctx: Context) -> OutT:
        return await ctx.run(agent, value)

    return branch


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


def _first(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a failed group: a session signal first, then the first."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                walk(e)
            else:
                leaves.append(e)

    walk(eg)
    for e in leaves:
        if isinstance(e, SessionTerminated):
            return e
    return leaves[0]
