"""The context a workflow receives: every step goes through it.

Determinism rules (a resumed session re-runs your workflow code and must ask for the same
steps in the same tree positions):

* Call models, tools and agents only through ``ctx.run`` / patterns.
* Use ``await ctx.now()`` instead of ``time.time()``, ``await ctx.random()`` instead of
  ``random``, ``await ctx.uuid()`` instead of ``uuid.uuid4()``, ``await ctx.sleep(s)``
  instead of ``asyncio.sleep``, ``await ctx.wait_for(name, type)`` to wait for a signal,
  and ``await ctx.step(name, fn)`` for any other I/O. Each is journaled and replays its
  value; sleeps and waits are durable (a long one parks the session).
* Share state with other sessions through ``ctx.state(namespace)``: its reads and
  compare-and-set writes are journaled steps too (use a handle in the scope that made
  it; in a ``ctx.gather`` branch, make it from the branch's context).
* Run branches concurrently only with ``ctx.gather`` (each branch gets its own position in
  the step tree, whatever order the scheduler runs them in).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from convoy._adapters import adapter_for
from convoy._errors import UserError
from convoy._seconds import sleep_seconds, timeout_seconds
from convoy._text import check_name, check_storable_name
from convoy.durability._executor import decode_json, encode_json
from convoy.hitl._ask import _UNSET, HumanAnswer, ask_human
from convoy.hitl._task import OnDeadline, check_namespace
from convoy.interceptors._base import EffectInput
from convoy.runtime._agent_loop import run_agent
from convoy.runtime._concurrency import concurrently
from convoy.state._access import JournaledAccess
from convoy.state._handle import State
from convoy.stores._protocol import RESERVED_SIGNALS

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
        """The id of the session this context belongs to."""
        return self.session.id

    @property
    def tenant(self) -> str:
        """The tenant of the session (``engine.run(..., tenant=...)``)."""
        return self.session.tenant

    @property
    def position(self) -> str:
        """This scope's position in the step tree (``"2/0"``; ``""`` for the session's
        root): the steps it takes are keyed under it."""
        return self._prefix[:-1]

    def next_key(self) -> str:
        """Take the next position in this scope (``2``, ``2/0/1``): the key of the next step.
        Used by the agent loop and patterns; workflow code does not need it."""
        key = f"{self._prefix}{self._n}"
        self._n += 1
        return key

    def peek_key(self) -> str:
        """The key :meth:`next_key` will give next, without taking it."""
        return f"{self._prefix}{self._n}"

    def child(self, *, deeper: bool = True) -> Context:
        """A new scope at the next position of this one (one agent level down if
        ``deeper``; concurrent branches of :meth:`gather` stay at the same depth)."""
        return Context(self.session, self.next_key() + "/", self.depth + deeper)

    # -- agents --------------------------------------------------------------------------

    async def run(self, agent: Agent[Any, OutT], input: Any) -> OutT:
        """Run ``agent`` on ``input`` (validated into its input type) and return its typed
        output (or, after handoffs, the output of the agent that finished)."""
        result: OutT = await run_agent(self.child(), agent, input)
        return result

    async def gather(self, *branches: Callable[[Context], Awaitable[T]]) -> list[T]:
        """Run branches concurrently, each in its own scope; results in argument order.

        If one branch fails the others are cancelled and its error is raised. A branch
        that waits (a signal not sent yet, a sleep longer than the engine's
        ``park_after``) lets the others go on until each ends or waits too, so their
        steps end and are journaled; then the session parks, and wakes at the earliest
        of their timers or as soon as a signal any waiting branch waits for comes.
        """
        scopes = [self.child(deeper=False) for _ in branches]
        return await concurrently([b(c) for b, c in zip(branches, scopes, strict=True)])

    async def map(self, agent: Agent[Any, OutT], inputs: Sequence[Any]) -> list[OutT]:
        """Run ``agent`` on every input concurrently (fan-out); results in input order."""
        return await self.gather(*(_runner_for(agent, x) for x in inputs))

    # -- journaled effects ---------------------------------------------------------------

    async def step(self, name: str, fn: Callable[[], Any], *,
                   idempotent: bool = False) -> Any:
        """Run ``fn`` once, durably: its JSON-able result is journaled and replayed, and an
        exception it raises is journaled too and raised again, with its type, on replay.
        The step returns the result as its journaled JSON reads back, on its first run as
        on replay (a model or a dataclass is a dict, a tuple or a set a list, a date its
        ISO text): a workflow that resumes sees what it saw.

        ``fn`` takes no arguments. It may be an async function, a plain function (its
        return value is the step's value; it runs on the event loop, so keep it quick or
        make it async and use ``asyncio.to_thread``), or a plain function that returns an
        awaitable, such as ``lambda: fetch(x)`` (the awaitable is awaited). Anything else,
        such as a coroutine (``fetch(x)`` instead of ``lambda: fetch(x)``), is refused
        with a :class:`~convoy.UserError` before a step is taken.

        A non-idempotent step that was running when the process died is not re-run on
        resume: the session is escalated with an ``UnknownOutcomeError``.
        """
        fn = _step_function(name, fn)
        s = self.session
        key = self.next_key()
        s.count_step(key)
        chain = s.runtime.effect_chain

        async def execute() -> Any:
            return await chain.call(EffectInput(session=s, key=key, name=name,
                                                idempotent=idempotent, fn=fn))

        journaled: list[str] = []

        def encode(value: Any) -> str:
            text = encode_json(value)
            if type(value) not in _JSON_SCALARS:  # (read back as replay reads it)
                journaled.append(text)
            return text

        value = await s.executor.run_step(key, "effect", name, execute, encode,
                                          decode_json, effect=not idempotent,
                                          idempotent=idempotent)
        return decode_json(journaled[0]) if journaled else value

    async def now(self) -> float:
        """Wall-clock time (seconds since the epoch), journaled."""
        key = self.next_key()
        self.session.count_step(key)
        return await self.session.executor.now(key)

    async def random(self) -> float:
        """A random float in [0, 1), journaled."""
        key = self.next_key()
        self.session.count_step(key)
        return await self.session.executor.random(key)

    async def uuid(self) -> str:
        """A random UUID4 string, journaled."""
        key = self.next_key()
        self.session.count_step(key)
        return await self.session.executor.uuid(key)

    async def sleep(self, seconds: float) -> None:
        """A durable timer. A long sleep parks the session (status ``waiting``): it holds
        no coroutine, memory or concurrency slot, survives restarts, and the engine wakes
        it when the time comes. After a restart it sleeps only for what is left."""
        seconds = sleep_seconds(seconds, "ctx.sleep's seconds")
        key = self.next_key()
        self.session.count_step(key)
        await self.session.executor.sleep(key, seconds)

    @overload
    async def wait_for(self, name: str, type: type[T], *,
                       timeout: float | None = None) -> T: ...  # noqa: ASYNC109
    @overload
    async def wait_for(self, name: str, type: None = None, *,
                       timeout: float | None = None) -> Any: ...  # noqa: ASYNC109

    async def wait_for(self, name: str, type: Any = None, *,
                       timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Wait durably for the signal ``name`` (``engine.signal(session_id, name, payload)``
        or ``convoy signal``), validated into ``type``.

        The session parks while it waits (status ``waiting``); a signal sent before the
        wait is kept and consumed by it. Each signal is consumed by one wait. Past
        ``timeout`` seconds the wait raises :class:`~convoy.WaitTimeout`. A signal whose
        payload ``type`` does not validate is refused: consumed without ending the wait,
        with a warning logged (``convoy`` logger) that says why, and counted in the wait's
        journal record (``convoy sessions show`` prints it); the wait goes on for the
        next signal. (The sender is not told when it sends it: ``engine.signal`` does not
        know the type a session waits for.)
        """
        if not name:
            raise UserError("ctx.wait_for needs a signal name")
        check_name(name, "ctx.wait_for's signal name")  # (what a signal can be sent to)
        if name.startswith(RESERVED_SIGNALS):
            raise UserError(f"signal names starting {RESERVED_SIGNALS!r} are reserved for "
                            f"Convoy; ctx.wait_for({name!r}) cannot wait for one: pick "
                            "another name")
        timeout = timeout_seconds(timeout, "ctx.wait_for's timeout")
        key = self.next_key()
        self.session.count_step(key)
        executor = self.session.executor
        if type is None:
            payload = await executor.wait_for(key, name, timeout)
            read: Callable[[str], Any] = decode_json
        else:
            read = adapter_for(type).validate_json
            payload = await executor.wait_for(key, name, timeout, accept=read)
        try:  # (a payload taken now was checked; a journaled one may not read back)
            return read(payload)
        except Exception as e:
            raise executor.unreadable(key, name, e) from None


    # -- people ----------------------------------------------------------------------------

    async def ask_human(self, prompt: str, type: type[T], *, context: Any = None,
                        queue: str = "default", assignees: Sequence[str] = (),
                        deadline: float | None = None, on_deadline: OnDeadline = "fail",
                        default: Any = _UNSET, escalate_to: str = "escalations",
                        ) -> HumanAnswer[T]:
        """Ask a person a typed question and wait, durably, for the answer.

        The question becomes a task in the tenant's inbox (``convoy inbox``,
        ``engine.inbox``): ``prompt`` and ``context`` (any JSON-able value) are what the
        reviewer reads, ``type`` (a Pydantic model, ``bool``, a ``Literal``, ...) is what
        the answer must be (the CLI builds its form from it), ``queue`` and ``assignees``
        say who should answer. The session parks while it waits (no coroutine, memory or
        slot, for days if need be) and survives restarts; the answer wakes it, validated
        into ``type`` (an invalid one reopens the task with the error) and journaled with
        who gave it.

        Past ``deadline`` seconds, ``on_deadline`` decides: ``"fail"`` raises
        :class:`~convoy.HumanTimeout`, ``"default"`` answers ``default``, ``"escalate"``
        moves the task to the queue ``escalate_to`` and waits on.
        """
        answer: HumanAnswer[T] = await ask_human(
            self, prompt, type, context=context, queue=queue, assignees=assignees,
            deadline=deadline, on_deadline=on_deadline, default=default,
            escalate_to=escalate_to)
        return answer

    # -- shared state --------------------------------------------------------------------

    @overload
    def state(self, namespace: str | None = None, *, type: type[T]) -> State[T]: ...
    @overload
    def state(self, namespace: str | None = None, *, type: None = None) -> State[Any]: ...

    def state(self, namespace: str | None = None, *, type: Any = None) -> State[Any]:
        """A namespace of versioned shared state in the session's tenant: an entity such as
        ``"customer:42"``, a tenant-wide name, or (``None``) the session's own
        (``"session:<id>"``). Values are validated against ``type`` if given.

        Every read and write through the handle is a journaled step, so a resumed or
        replayed session sees exactly what it saw and never writes twice; every write is a
        compare-and-set (see :class:`~convoy.State`).
        """
        ns = f"session:{self.session.id}" if namespace is None else check_namespace(namespace)
        return State(ns, JournaledAccess(self), type)


def _runner_for(agent: Agent[Any, OutT], value: Any) -> Callable[[Context], Awaitable[OutT]]:
    async def branch(ctx: Context) -> OutT:
        return await ctx.run(agent, value)

    return branch


#: The types a step's value reads back from its JSON as it is (no copy is read back).
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _step_function(name: str, fn: Any) -> Callable[[], Awaitable[Any]]:
    """``fn`` as an async function of no arguments, or a UserError naming the step if it
    is not callable, or its name cannot be journaled (before anything runs)."""
    check_storable_name(name, "ctx.step's name")
    if inspect.iscoroutinefunction(fn):
        return fn  # type: ignore[no-any-return]
    if not callable(fn):
        if inspect.isawaitable(fn):
            raise UserError(f"ctx.step({name!r}, ...) needs a function, got an awaitable "
                            f"(a call already made): pass the function itself, or wrap "
                            f"the call, as in ctx.step({name!r}, lambda: fetch(x))")
        raise UserError(f"ctx.step({name!r}, ...) needs a function to call (async or "
                        f"plain, no arguments), got {type(fn).__name__}")

    async def call() -> Any:
        out = fn()
        return await out if inspect.isawaitable(out) else out

    return call
