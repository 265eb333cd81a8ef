"""Per-session state: the step executor, limits, loop detection and running totals.

A running session holds this object, its coroutine and the messages of the agent turns in
flight, nothing else: its history lives in the store. On resume the journal is loaded once
and consumed step by step by the executor; when it is empty the session runs live again.

The wall-clock limit counts the session's *active* time: time spent running, on whatever
engine, and not time spent crashed, parked or queued (``Limits.max_age`` bounds the total
age). Replay applies no deadline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from convoy._errors import LimitExceeded, LoopDetected
from convoy.models._messages import Usage
from convoy.security._provenance import Taint

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.durability._executor import StepExecutor
    from convoy.engine._runtime import Runtime
    from convoy.interceptors._base import AgentRunEnded, SessionEnd

T = TypeVar("T")


class SessionState:
    """What one session needs while it runs. Shared by every :class:`Context` scope of it."""

    __slots__ = (
        "__weakref__", "_agents", "_pingpong", "_roots", "_seen", "body_end", "cost",
        "deadline", "end_taps", "executor", "floor", "grants", "grounded", "handoffs",
        "headers", "id", "input", "last_known", "output_json", "resumed", "run_tap",
        "runtime", "steps",
        "subject", "taint", "tenant", "usage", "version", "workflow", "written_headers",
    )
    #: How the workflow's own run ended, set (only through session hooks) as it returns to
    #: them; unset while it runs, so that a session without hooks pays nothing for it.
    body_end: SessionEnd

    def __init__(self, runtime: Runtime, session_id: str, tenant: str, workflow: str, *,
                 executor: StepExecutor, version: str = "1", active_s: float = 0.0,
                 created: float | None = None, replay_only: bool = False,
                 resumed: bool = False, headers: dict[str, str] | None = None,
                 agents: Sequence[Agent[Any, Any]] = (), subject: str | None = None) -> None:
        self.runtime = runtime
        #: The data subject the session is about (its personal data is sealed), or ``None``.
        self.subject = subject
        self.id = session_id
        self.tenant = tenant
        self.workflow = workflow
        self.version = version
        self.executor = executor
        self.resumed = resumed
        self.headers: dict[str, str] = headers if headers is not None else {}
        #: The headers as the store has them, once session hooks ran (``None`` before):
        #: headers a hook sets after the run are written with how it ended.
        self.written_headers: dict[str, str] | None = None
        #: Called when each agent run ends (the session hooks' ``run_taps``), ``None``
        #: for none.
        self.run_tap: Callable[[AgentRunEnded], None] | None = None
        #: The session hooks' ``end_taps`` lists (told once how the run ended is
        #: written), ``None`` without session hooks.
        self.end_taps: list[list[Callable[[SessionEnd], None]]] | None = None
        self.steps = 0
        #: The workflow's output and its JSON as it is written, once its run completed.
        self.output_json: tuple[Any, str] | None = None
        #: The totals the session had when this run began, ``(steps, input tokens, output
        #: tokens, cost)``, for a resumed run (``None``: a first run).
        self.floor: tuple[int, int, int, float] | None = None
        self.handoffs = 0
        self.usage = Usage()
        self.cost = 0.0
        self.deadline = None if replay_only else runtime.limits.deadline(
            active_s=active_s, created=created, now=runtime.clock())
        self._seen: set[tuple[str, int]] | None = None
        self._pingpong: deque[str] | None = None
        # Agents the session ran (and was given), in order; the name map is built from them
        # only when a handoff or worker named by string needs it.
        self._roots: list[Agent[Any, Any]] = list(agents)
        #: The agent :meth:`know` learnt last (the agent loop skips the call for it).
        self.last_known: Agent[Any, Any] | None = self._roots[-1] if self._roots else None
        self._agents: dict[str, Agent[Any, Any]] | None = None
        #: What people allowed this session past a limit (``"budget:<ledger>"``: one
        #: more budget's worth each), by name; ``None`` until the first grant.
        self.grants: dict[str, int] | None = None
        #: The session's input (the user's request, for the provenance policy).
        self.input: Any = None
        #: The untrusted content this session read; ``None`` until the first.
        self.taint: Taint | None = None
        #: Normalised outputs of trusted tools this session read (what grounds an
        #: argument besides the user's request: see ``convoy.security._policy``).
        self.grounded: list[str] | None = None

    def grant(self, name: str) -> None:
        """A person approved an escalation that asked for ``name`` (see
        :attr:`convoy.Escalated.grant`)."""
        if self.grants is None:
            self.grants = {}
        self.grants[name] = self.grants.get(name, 0) + 1

    def forget_loops(self) -> None:
        """A person approved going on past loop detection: start watching afresh."""
        self._seen = None
        self._pingpong = None

    def know(self, agent: Agent[Any, Any]) -> None:
        """Learn ``agent`` and every agent it holds; the first agent under a name stays."""
        roots = self._roots
        if roots and roots[-1] is agent:
            return
        roots.append(agent)
        self.last_known = agent
        if self._agents is not None:
            for a in agent.reachable():
                self._agents.setdefault(a.name, a)

    @property
    def agents(self) -> dict[str, Agent[Any, Any]]:
        """The agents this session knows, by name: what names in handoffs and workers
        resolve to (see :class:`~convoy.Agent`)."""
        if self._agents is None:
            known: dict[str, Agent[Any, Any]] = {}
            for root in self._roots:
                for a in root.reachable():
                    known.setdefault(a.name, a)
            self._agents = known
        return self._agents


    # -- limits and loops ----------------------------------------------------------------

    def count_step(self, key: str) -> None:
        self.steps += 1
        limits = self.runtime.limits
        if self.steps > limits.max_steps:
            raise LimitExceeded(f"session {self.id!r} reached max_steps={limits.max_steps} "
                                f"at step {key}")
        if self.deadline is not None and self.runtime.clock() > self.deadline:
            raise LimitExceeded(f"session {self.id!r} ran past its time limit "
                                f"({limits.describe_time()}) at step {key}")

    def check_depth(self, agent: str, depth: int) -> None:
        if depth > self.runtime.limits.max_depth:
            raise LimitExceeded(f"agent {agent!r} would run at depth {depth}, past "
                                f"max_depth={self.runtime.limits.max_depth}")

    def note_input(self, agent: str, rendered: str) -> None:
        """Loop detection: the same agent handed exactly the same input twice."""
        if not self.runtime.limits.detect_repeats:
            return
        sig = (agent, hash(rendered))
        if self._seen is None:
            self._seen = set()
        elif sig in self._seen:
            raise LoopDetected(f"agent {agent!r} was handed the same input a second time: "
                               f"{rendered[:120]!r}")
        self._seen.add(sig)

    def note_handoff(self, source: str, target: str) -> None:
        limits = self.runtime.limits
        self.handoffs += 1
        if self.handoffs > limits.max_handoffs:
            raise LimitExceeded(f"session {self.id!r} reached max_handoffs="
                                f"{limits.max_handoffs} ({source!r} -> {target!r})")
        n = 2 * limits.max_ping_pong
        trail = self._pingpong
        if trail is None:
            trail = self._pingpong = deque(maxlen=n + 1)
        if not trail:
            trail.append(source)
        trail.append(target)
        if len(trail) == n + 1:
            a, b = trail[0], trail[1]
            if a != b and all(x == (a if i % 2 == 0 else b) for i, x in enumerate(trail)):
                raise LoopDetected(f"agents {a!r} and {b!r} handed over to each other "
                                   f"{limits.max_ping_pong} times in a row")
