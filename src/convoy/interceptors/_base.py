"""The interceptor chain: the single extension point around every step and session.

Each kind of step (a shared-state operation too) has a typed input (one dataclass per
kind) and a method on :class:`Interceptor`; an interceptor overrides the methods it cares
about and calls ``next(input)`` to continue down the chain (or does not, to
short-circuit). Every input carries a :class:`StepInfo` (``input.info``).
:meth:`Interceptor.session_run` wraps a whole run of a session (a start, or a resume
after a crash or a wait) and may set :attr:`SessionInput.headers`, which are persisted
with the session, so a trace id or an audit cursor survives a resume.
:meth:`Interceptor.agent_run` wraps one invocation of an agent (its model turns and tool
calls, until it answers or hands the session over): not a step of its own, the span its
steps nest in. :meth:`Interceptor.human_decision` wraps a person's decision on a human
task, when the person makes it (the inbox runs it around the write; no session runs).

Order is explicit: every interceptor has a :attr:`~Interceptor.stage`; the engine sorts the
chain by stage, outermost first (:data:`STAGES`), keeping the given order within a stage:

    timing → trace → audit → policy → custom → step_timeout → route → cache → fallback
    → retry → attempt → deployment → breaker → budget → rate_limit → bulkhead → timeout
    → accounting → fault → (adapter)

so a cache hit costs nothing, every retry attempt (seen one by one at ``attempt``, where
tracing and metrics record it) is routed to a deployment of its model,
passes that deployment's breaker, reserves budget, takes a rate-limit token and gets its
own timeout, and injected faults look like the adapter's own. Journaling sits outside the
chain: a step already in the journal is replayed without running any interceptor, so a
resumed session pays nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeVar

from convoy.models._messages import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from pydantic import BaseModel

    from convoy.definitions._agent import Agent
    from convoy.definitions._tools import Tool, ToolContext
    from convoy.engine._engine import Engine
    from convoy.hitl._task import Action, HumanTask, TaskKind
    from convoy.models._base import Model
    from convoy.models._messages import Message
    from convoy.runtime._context import Context
    from convoy.runtime._session import SessionState
    from convoy.stores._protocol import StepRecord

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

Stage = Literal["timing", "trace", "audit", "policy", "custom", "step_timeout", "route",
                "cache", "fallback", "retry", "attempt", "deployment", "breaker", "budget",
                "rate_limit", "bulkhead", "timeout", "accounting", "fault"]
#: Stages, outermost first. The engine sorts interceptors by stage (stable).
STAGES: tuple[Stage, ...] = (
    "timing", "trace", "audit", "policy", "custom", "step_timeout", "route", "cache",
    "fallback", "retry", "attempt", "deployment", "breaker", "budget", "rate_limit", "bulkhead",
    "timeout", "accounting", "fault")
_RANK = {s: i for i, s in enumerate(STAGES)}


@dataclass(slots=True, frozen=True, kw_only=True)
class StepInfo:
    """Who and where a step is: what tracing, audit and policies key on."""

    session_id: str
    tenant: str
    workflow: str
    version: str
    key: str
    kind: str
    target: str
    agent: str | None
    attempt: int
    resumed: bool
    headers: Mapping[str, str]


def _info(session: SessionState, key: str, kind: str, target: str, agent: str | None,
          attempt: int = 0) -> StepInfo:
    return StepInfo(session_id=session.id, tenant=session.tenant, workflow=session.workflow,
                    version=session.version, key=key, kind=kind, target=target, agent=agent,
                    attempt=attempt, resumed=session.resumed, headers=session.headers)


@dataclass(slots=True, kw_only=True)
class AgentRunInput:
    """One invocation of an agent: its model turns, tool calls and worker delegations,
    until it answers or hands the session over (then the target's run is the next one).

    ``key`` is the position of the run's first step. ``messages`` are what the agent
    starts from (its instructions and input). ``handoff_from`` is the agent that handed
    the session over to this one, at the handoff step ``handoff_key``. ``replaying``: the
    session is still replaying its journal as this run starts (a resume), so its first
    steps come from the journal and pass no interceptor.
    """

    session: SessionState
    key: str
    agent: Agent[Any, Any]
    messages: list[Message]
    depth: int
    handoff_from: Agent[Any, Any] | None = None
    handoff_key: str | None = None
    replaying: bool = False
    context: Context = field(repr=False)

    @property
    def info(self) -> StepInfo:
        """Who and where this run is (``kind`` ``"agent"``, ``target`` the agent)."""
        return _info(self.session, self.key, "agent", self.agent.name, self.agent.name)


@dataclass(slots=True, frozen=True, kw_only=True)
class AgentRunEnd:
    """How an agent run ended: its typed ``output``, or a ``handoff`` to another agent
    with the ``payload`` it receives (at the handoff step ``handoff_key``)."""

    output: Any = None
    handoff: Agent[Any, Any] | None = None
    payload: Any = None
    handoff_key: str | None = None


class AgentRunEnded(NamedTuple):
    """An agent run that ended, as the run taps of its session see it
    (:attr:`SessionInput.run_taps`): after it answered, handed over or raised.

    ``key`` is the position of the run's first step and ``context`` the scope it ran in.
    ``replaying``: the run began replaying the journal (a resumed session).
    ``ended_earlier``: an earlier run of the session ended this agent run (its last step
    came from the journal), and told the taps of that run then: leave it out to count each
    run once (a run that began replaying and went on past the journal, after a park or a
    crash, had not ended: it is not one). ``handoff``: the agent it handed the session to;
    ``error``: what it raised: an :class:`Exception` for a failure (one that escalates to
    a person too), or not one for a run that parked (``Parked``: a person's approval), was
    cancelled or was cut short. ``nanoseconds``: how long it ran, by
    ``time.perf_counter_ns``.
    """

    context: Context
    key: str
    agent: Agent[Any, Any]
    replaying: bool
    ended_earlier: bool
    handoff: Agent[Any, Any] | None
    error: BaseException | None
    nanoseconds: int

    @property
    def session(self) -> SessionState:
        """The session the run belongs to."""
        return self.context.session


def ended_earlier(context: Context, key: str) -> bool:
    """Whether the agent run that began at step ``key`` in scope ``context``, which began
    replaying the journal (a resumed session) and has just ended, was ended by an earlier
    run of its session: whether its last step came from the journal.

    A run ends right after its last step (its answer, its handoff, the step it failed
    at), with nothing awaited in between: the run of the session that journaled that step
    ended the agent run too, however long after it crashed. A run whose last step is new
    (taken by this run: it had parked, or a crash cut it short) had not ended. What else
    the journal holds says nothing about this run: a later record may be a concurrent
    branch's, and a crash during the next agent's first model call leaves nothing after
    it. (A crash in the instant between the commit of the last step and the end of the
    run leaves the same journal as one a moment later: it counts as ended.)"""
    executor = context.session.executor
    recorded = getattr(executor, "recorded", None)
    head, sep, n = context.peek_key().rpartition("/")  # (the key after its last step)
    last = int(n) - 1
    if recorded is None or last < int(key.rpartition("/")[2]):
        # (another executor; a run that took no step)
        return bool(getattr(executor, "replaying", False))
    return bool(recorded(f"{head}{sep}{last}"))


@dataclass(slots=True, kw_only=True)
class ModelCallInput:
    """One call to a model endpoint on behalf of an agent."""

    session: SessionState
    key: str
    agent: Agent[Any, Any]
    model: Model
    request: ModelRequest

    @property
    def info(self) -> StepInfo:
        """Who and where this call is, for tracing, audit and policies."""
        return _info(self.session, self.key, "model", self.agent.name, self.agent.name,
                     self.request.attempt)


@dataclass(slots=True, kw_only=True)
class ToolCallInput:
    """One call of a tool with already-validated arguments.

    ``approval`` is the id of the approval task a person approved this call in, when the
    call runs after one (see :func:`convoy.approved`)."""

    session: SessionState
    key: str
    agent: Agent[Any, Any]
    tool: Tool
    args: BaseModel
    context: ToolContext[Any]
    approval: str | None = None

    @property
    def info(self) -> StepInfo:
        """Who and where this call is, for tracing, audit and policies."""
        return _info(self.session, self.key, "tool", self.tool.name, self.agent.name)


@dataclass(slots=True, kw_only=True)
class HandoffInput:
    """One agent handing the session over to another, with a validated payload."""

    session: SessionState
    key: str
    source: Agent[Any, Any]
    target: Agent[Any, Any]
    payload: Any

    @property
    def info(self) -> StepInfo:
        """Who and where this handoff is; ``target`` is the receiving agent."""
        return _info(self.session, self.key, "handoff", self.target.name, self.source.name)


@dataclass(slots=True, kw_only=True)
class EffectInput:
    """A workflow-level effect: one ``ctx.step(name, fn)``.

    ``ctx.now``, ``ctx.random``, ``ctx.uuid``, ``ctx.sleep`` and ``ctx.wait_for`` are
    journaled by the step executor directly and do not pass through the chain.
    """

    session: SessionState
    key: str
    name: str
    idempotent: bool
    fn: Callable[[], Awaitable[Any]]

    @property
    def info(self) -> StepInfo:
        """Who and where this effect is; ``target`` is the step's name."""
        return _info(self.session, self.key, "effect", self.name, None)


StateOp = Literal["get", "set", "history", "keys", "watch"]


@dataclass(slots=True, kw_only=True)
class StateInput:
    """One operation on shared state (``ctx.state(...)`` or a tool's ``ctx.state(...)``).

    ``namespace`` and ``state_key`` name the key (``state_key`` is empty for ``keys``);
    ``value`` is the JSON text a ``set`` writes, against ``expected_version``; a ``watch``
    asks for a signal at the first version past ``after_version``; ``limit`` bounds a
    ``history``. ``key`` names the writer: the operation's own journaled step in workflow
    code, ``"<tool call's step>#<n>"`` for the n-th operation inside a tool call.
    Raising from ``next`` (or not calling it) fails the operation; a stale ``set`` raises
    :class:`~convoy.StateConflict` out of ``next``.
    """

    session: SessionState
    key: str
    op: StateOp
    namespace: str
    state_key: str = ""
    value: str | None = None
    expected_version: int | None = None
    agent: str | None = None
    after_version: int = 0
    limit: int | None = None

    @property
    def info(self) -> StepInfo:
        """Who and where this operation is; ``target`` is ``"<op> <namespace>/<key>"``."""
        return _info(self.session, self.key, "state", state_target(self.op, self.namespace,
                                                                   self.state_key), self.agent)


def state_target(op: str, namespace: str, key: str) -> str:
    """How a state operation is named in the journal and in :class:`StepInfo`."""
    return f"{op} {namespace}/{key}" if key else f"{op} {namespace}"


@dataclass(slots=True, frozen=True, kw_only=True)
class SessionInfo:
    """The session a run belongs to."""

    session_id: str
    tenant: str
    workflow: str
    version: str
    resumed: bool
    """The run continues a session that has journaled steps (after a crash or a wait)."""
    replay: bool
    """``engine.replay``: nothing is executed, every step comes from the journal."""
    subject: str | None = None
    """The data subject the session names, if any (see ``engine.run(..., subject=...)``)."""


@dataclass(slots=True, kw_only=True)
class SessionInput:
    """One run of a session. ``headers`` are persisted with the session: set them before
    calling ``next``, or after it returned (they are then written with how the run ended,
    in the same commit), and they are there again when the session resumes."""

    info: SessionInfo
    input: Any
    headers: dict[str, str] = field(default_factory=dict)
    proceed: Callable[[SessionInput], Awaitable[SessionEnd]] = field(repr=False)
    """Runs the workflow (the end of the chain); interceptors call ``next``, not this."""
    journal: Mapping[str, StepRecord] = field(default_factory=dict, repr=False)
    """The records the session had journaled when this run began (by step key; empty
    for a first run): a resumed run replays them."""
    journal_taps: list[Callable[[StepRecord], None]] = field(default_factory=list,
                                                             repr=False)
    """Called with every record this run journals, once it is written (a write that
    fails is not seen): add one before calling ``next``. Records replayed from the journal
    are not written again, so not seen. A plain function (called, not awaited: an
    ``async`` one is refused); one that raises is logged, and the step goes on as
    journaled."""
    run_taps: list[Callable[[AgentRunEnded], None]] = field(default_factory=list,
                                                            repr=False)
    """Called when an agent run of this run of the session ends (:class:`AgentRunEnded`):
    add one before calling ``next``. Cheaper than an ``agent_run`` hook (no layer around
    each run) for what only needs to know that runs ended: ``Metrics`` counts them so. A
    plain function (an ``async`` one is refused); one that raises is logged."""
    end_taps: list[Callable[[SessionEnd], None]] = field(default_factory=list, repr=False)
    """Called once how this run ended is written, with a copy of the end whose ``status``
    is the one written: ``pending`` when the store failed to write it (``error`` is the
    store's: the session runs again later) or the run was interrupted, ``running`` when
    another engine took the session over; a ``waiting`` end's ``error`` says what it waits
    for. Add one before calling ``next``, or after it returned; every hook's are told, also
    when a hook ends the run without calling ``next``. Not called when the write itself
    raised, nor for a replay (it writes nothing). A plain function: an ``async`` one added
    before ``next`` refuses the run, added after it is logged and not called; one that
    raises is logged."""


@dataclass(slots=True, kw_only=True)
class SessionEnd:
    """How a run of a session ended: a terminal status, or ``waiting`` (parked) or
    ``interrupted`` (the run stopped without an outcome; the session resumes later)."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class DecisionInput:
    """A person's decision on a human task, as it is made (``engine.inbox.answer``,
    ``approve``, ``edit``, ``reject``, ``convoy inbox``): not a step of the session, which
    may be parked, or never resume. ``next`` writes it (and answers an escalated session);
    a task decided meanwhile makes ``next`` raise :class:`~convoy.UserError`. Raising
    before ``next`` refuses the decision: nothing is written.

    ``step_key`` is the task's position in the session (the step that escalated, for an
    escalated session; ``None`` if it escalated outside a step); ``decision`` is the
    decision as the task records it (JSON: action, value, by, comment, at), the value
    audit hashes; ``at`` is when it was made (the engine's clock); ``headers`` are the
    session's persisted headers (its trace, see :class:`SessionInput`).
    """

    tenant: str
    session_id: str
    step_key: str | None
    task_id: str
    kind: TaskKind
    action: Action
    by: str
    decision: Mapping[str, Any]
    at: float
    headers: Mapping[str, str]
    proceed: Callable[[DecisionInput], Awaitable[HumanTask]] = field(repr=False)
    """Writes the decision (the end of the chain); interceptors call ``next``."""
    subject: str | None = None
    """The data subject the session names, if any."""
    audit: list[bytes] = field(default_factory=list, repr=False)
    """Encoded audit entries (:class:`~convoy.audit.AuditEvent`) to append to the tenant's
    log with the decision, in the transaction that writes it: add them before calling
    ``next``; a write that fails appends none."""


Next = Callable[[I], Awaitable[O]]


class Interceptor:
    """Base class: every method passes through. Override what you need.

    ``stage`` places the interceptor in the chain (see :data:`STAGES`); interceptors you
    write are ``"custom"`` unless they say otherwise.
    """

    stage: Stage = "custom"
    #: The hooks (method names) this instance does not need although its class overrides
    #: them (a configuration that has nothing to do there): the chains skip them, as they
    #: skip the methods it does not override. Read when the engine is made.
    unhooked: frozenset[str] = frozenset()

    def unhooked_in(self, interceptors: Sequence[Interceptor]) -> frozenset[str]:
        """The hooks this instance skips in an engine whose interceptors are
        ``interceptors`` (:attr:`unhooked`, unless a class knows more from the rest of the
        chain: a per-attempt hook where nothing retries). Read when the engine is made."""
        return self.unhooked

    async def start(self, engine: Engine) -> None:
        """Called once when the engine opens, after its store: load persisted state
        (``engine.store``), start exporters."""

    async def close(self) -> None:
        """Called once when the engine closes, before its store: flush and release."""

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        """Around one run of a session (its start, or a resume)."""
        return await next(input)

    async def agent_run(self, input: AgentRunInput,
                        next: Next[AgentRunInput, AgentRunEnd]) -> AgentRunEnd:
        """Around one invocation of an agent (see :class:`AgentRunInput`). Runs again for
        an agent whose run a resumed session replays (``input.replaying``)."""
        return await next(input)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        """Around one model call (each attempt, when a retry interceptor is outside this one).
        Return the response, or raise a :class:`~convoy.ModelError` to fail the call."""
        return await next(input)

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        """Around one call of a tool, with arguments already validated. Return its result; the
        agent loop validates and journals it."""
        return await next(input)

    async def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        """Around one handoff from ``input.source`` to ``input.target``; return the payload
        (possibly changed) the target receives."""
        return await next(input)

    async def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        """Around one workflow-level effect (``ctx.step``). Clock reads, random numbers, sleeps
        and waits are journaled by the executor and do not pass here."""
        return await next(input)

    async def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        """Around one operation on shared state: a read, a compare-and-set write (a stale
        one raises :class:`~convoy.StateConflict` out of ``next``), a history or key
        listing, or the watch of a durable wait for a change."""
        return await next(input)

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        """Around a person's decision on a human task, when it is made (see
        :class:`DecisionInput`); returns the task as written. Runs only on decisions."""
        return await next(input)


def ordered(interceptors: Sequence[Interceptor]) -> list[Interceptor]:
    """The chain in stage order, outermost first (stable within a stage)."""
    for ic in interceptors:
        if ic.stage not in _RANK:
            raise ValueError(f"interceptor {type(ic).__name__} has unknown stage "
                             f"{ic.stage!r}; stages: {', '.join(STAGES)}")
    return sorted(interceptors, key=lambda ic: _RANK[ic.stage])


class Chain(Generic[I, O]):
    """A composed chain for one step kind. Pass-through interceptors are skipped entirely,
    so an empty chain costs one function call."""

    __slots__ = ("call",)

    def __init__(self, method: str, interceptors: Sequence[Interceptor],
                 terminal: Callable[[I], Awaitable[O]]) -> None:
        call: Callable[[I], Awaitable[O]] = terminal
        base = getattr(Interceptor, method)
        for ic in reversed(interceptors):
            bound = getattr(ic, method)
            if getattr(type(ic), method) is base or method in ic.unhooked_in(interceptors):
                continue
            call = _link(bound, call)
        self.call = call


def _link(bound: Callable[[Any, Any], Awaitable[Any]],
          nxt: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    # A plain function, not a coroutine: each link costs one call, not an extra frame.
    def step(input: Any) -> Awaitable[Any]:
        return bound(input, nxt)

    return step
