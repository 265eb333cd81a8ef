"""The ``audit`` interceptor: one audit entry for every step a session takes.

Which entry each hook appends (hashes and references only, see :class:`AuditEvent`):

- an agent run (the ``agent_run`` hook): ``agent_decision``: ``answer`` with the hash of
  its typed output, or ``handoff`` to the target agent with the hash of the payload, keyed
  by the run's first step;
- a model call: ``model_call`` with the hashes of the prompt (the request's messages) and
  the output, the model, the tokens, and what the model chose this turn (``answer``, or the
  tools it called, a handoff being the call of its transfer tool);
- a tool call: ``tool_call`` with the hash of its arguments and its status (``ok`` or the
  error's type), the approval it ran under; refused before it ran: ``policy_refusal``
  (scopes, a policy, a person's rejection); a policy asking a person first: ``approval``
  with status ``required``;
- a handoff (``handoff``: source, target, payload hash), a workflow effect (``effect``);
- a state write (``state_write``: the key, the hash of the value, ``ok`` or ``conflict``);
  any other state operation (``state_read``: the operation, the hash of the value read;
  the session reading a decided human task too);
- a person's decision on a human task, when it is made (the ``human_decision`` hook, run
  by the inbox around the write, whether the session ever resumes or not):
  ``human_decision`` (``approval`` for a tool approval) with the action as status, who
  decided as actor, the task id, its kind and the hash of the decision; a decision whose
  write fails (the task was decided meanwhile) appends nothing;
- a new workflow version seen for a tenant: ``config_change``.

Each entry carries the session id and step key (a decision: the task's), and the trace id
when tracing put one in the session's headers. Steps replayed from the journal pass no
interceptor, so a resumed session appends nothing twice. A step's entry joins the store's
next group commit together with the journal record of its step (``wait=False``): auditing
adds no commit of its own to a session's steps. A decision's entry is committed before the
person is told the decision is recorded (no journal write follows to carry it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoy._errors import (
    ApprovalRequired,
    PolicyDenied,
    SessionTerminated,
    StateConflict,
    ToolDenied,
)
from convoy.audit._event import AuditEvent, AuditKind, digest, encode_event
from convoy.audit._log import AuditLog
from convoy.audit._step_digests import prompt_digest, response_digest
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunInput,
    DecisionInput,
    EffectInput,
    HandoffInput,
    Interceptor,
    ModelCallInput,
    Next,
    SessionEnd,
    SessionInput,
    StateInput,
    ToolCallInput,
)
from convoy.models._messages import ModelResponse

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.hitl._task import HumanTask
    from convoy.stores._protocol import Store

#: What an entry is appended for: each has the step's ``session`` and ``key``.
_Step = (AgentRunInput | ModelCallInput | ToolCallInput | HandoffInput | EffectInput |
         StateInput)

#: The session header tracing keeps its W3C ``traceparent`` in.
TRACE_HEADER = "convoy.trace"
_CONFIG_NAMESPACE = "convoy.audit.config"
_NONE: dict[str, str] = {}


def _trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id in a session's headers, if tracing put one there."""
    trace = headers.get(TRACE_HEADER)
    return trace.split("-")[1] if trace is not None and trace.count("-") == 3 else None


def _status(e: BaseException | None) -> str:
    return "ok" if e is None else type(e).__name__


def _outcome(e: BaseException) -> bool:
    """Whether an exception is how the step ended (an error, a terminal reason), not the
    engine parking the session or a cancellation: the step ends later, and is audited
    then."""
    return isinstance(e, (Exception, SessionTerminated))


class AuditInterceptor(Interceptor):
    """Appends an audit entry for every step (see the module docstring).

    Args:
        key_path: the Ed25519 key file that signs checkpoints (created ``0600`` on first
            use); only :attr:`log` uses it, appending needs no key.
    """

    stage = "audit"

    def __init__(self, *, key_path: str | Path | None = None) -> None:
        self.key_path = key_path
        self._log: AuditLog | None = None
        self._store: Store | None = None
        self._clock: Callable[[], float] = time.time
        self._versions: set[tuple[str, str, str]] = set()

    @property
    def log(self) -> AuditLog:
        """The audit logs of the engine's store (once the engine is open)."""
        if self._log is None:
            raise RuntimeError("the audit interceptor is not started: open the engine first")
        return self._log

    async def start(self, engine: Engine) -> None:
        self._log = AuditLog(engine.store, key_path=self.key_path, clock=engine.clock)
        self._store, self._clock = engine.store, engine.clock

    def _append(self, step: _Step, kind: AuditKind, status: str, actor: str | None = None,
                target: str | None = None, hashes: dict[str, str] | None = None,
                refs: dict[str, str] | None = None) -> None:
        """Append the entry of ``step`` (its session and step key, not its
        :class:`~convoy.interceptors.StepInfo`: this runs for every step)."""
        session = step.session
        trace = _trace_id(session.headers)
        if trace is not None:
            refs = {**refs, "trace_id": trace} if refs else {"trace_id": trace}
        store = self._store
        if store is None:
            raise RuntimeError("the audit interceptor is not started: open the engine first")
        # ``AuditEvent(...).encode()``, without building the event: this runs for every step.
        body = encode_event(kind, status, self._clock(), session.id, step.key, actor, target,
                            hashes or _NONE, refs or _NONE)
        store.audit_append(session.tenant, (body,), wait=False)

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        i = input.info
        seen = (i.tenant, i.workflow, i.version)
        if seen not in self._versions:
            store = self.log.store
            before = await store.kv_get(_CONFIG_NAMESPACE, f"{i.tenant}/{i.workflow}")
            if before != i.version:
                event = AuditEvent(kind="config_change", status="ok", at=self.log.clock(),
                                   session_id=i.session_id, actor=i.workflow, target="workflow",
                                   hashes={"config": digest(i.version)},
                                   refs={"version": i.version, **({} if before is None else
                                                                  {"previous": before})})
                self.log.append(i.tenant, [event], wait=False)
                store.kv_put(_CONFIG_NAMESPACE, f"{i.tenant}/{i.workflow}", i.version)
            self._versions.add(seen)
        return await next(input)

    async def agent_run(self, input: AgentRunInput,
                        next: Next[AgentRunInput, AgentRunEnd]) -> AgentRunEnd:
        try:
            end = await next(input)
        except BaseException as e:
            if _outcome(e) and not getattr(input.session.executor, "replaying", False):
                self._append(input, "agent_decision", _status(e), actor=input.agent.name)
            raise
        # A run whose end came from the journal (a resume replaying it) was audited when it
        # ended the first time.
        if not getattr(input.session.executor, "replaying", False):
            if end.handoff is not None:
                self._append(input, "agent_decision", "handoff", actor=input.agent.name,
                             target=end.handoff.name, hashes={"payload": digest(end.payload)},
                             refs={} if end.handoff_key is None else
                             {"handoff_step": end.handoff_key})
            else:
                self._append(input, "agent_decision", "answer", actor=input.agent.name,
                             hashes={"output": digest(end.output)})
        return end

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        prompt = prompt_digest(input.request.messages)
        try:
            response = await next(input)
        except BaseException as e:
            if _outcome(e):
                self._append(input, "model_call", _status(e), actor=input.agent.name,
                             hashes={"prompt": prompt})
            raise
        calls = [c.name for c in response.tool_calls]
        decision = ",".join(calls) if calls else "answer"
        self._append(input, "model_call", "ok", actor=input.agent.name,
                     target=response.model or None,
                     hashes={"output": response_digest(response), "prompt": prompt},
                     refs={"decision": decision,
                           "tokens": f"{response.usage.input_tokens}+"
                                     f"{response.usage.output_tokens}"})
        return response

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        hashes = {"args": digest(input.args)}
        refs = {} if input.approval is None else {"approval": input.approval}
        kind: AuditKind = "tool_call"
        try:
            result = await next(input)
        except ApprovalRequired:
            self._append(input, "approval", "required", actor=input.agent.name,
                         target=input.tool.name, hashes=hashes, refs=refs)
            raise
        except (ToolDenied, PolicyDenied) as e:
            status = getattr(e, "reason", None) or type(e).__name__
            self._append(input, "policy_refusal", str(status), actor=input.agent.name,
                         target=input.tool.name, hashes=hashes, refs=refs)
            raise
        except BaseException as e:
            if _outcome(e):
                self._append(input, kind, _status(e), actor=input.agent.name,
                             target=input.tool.name, hashes=hashes, refs=refs)
            raise
        self._append(input, kind, "ok", actor=input.agent.name, target=input.tool.name,
                     hashes={**hashes, "result": digest(result)}, refs=refs)
        return result

    async def handoff(self, input: HandoffInput, next: Next[HandoffInput, Any]) -> Any:
        try:
            payload = await next(input)
        except BaseException as e:
            if _outcome(e):
                self._append(input, "handoff", _status(e), actor=input.source.name,
                             target=input.target.name, hashes={"payload": digest(input.payload)})
            raise
        self._append(input, "handoff", "ok", actor=input.source.name,
                     target=input.target.name, hashes={"payload": digest(payload)})
        return payload

    async def effect(self, input: EffectInput, next: Next[EffectInput, Any]) -> Any:
        try:
            result = await next(input)
        except BaseException as e:
            if _outcome(e):
                self._append(input, "effect", _status(e), target=input.name)
            raise
        self._append(input, "effect", "ok", target=input.name,
                     hashes={"result": digest(result)})
        return result

    async def state_op(self, input: StateInput, next: Next[StateInput, Any]) -> Any:
        target = f"{input.namespace}/{input.state_key}" if input.state_key else input.namespace
        if input.op == "set":
            hashes = {"value": digest(input.value or "")}
            try:
                written = await next(input)
            except StateConflict:
                self._append(input, "state_write", "conflict", actor=input.agent,
                             target=target, hashes=hashes)
                raise
            except BaseException as e:
                if _outcome(e):
                    self._append(input, "state_write", _status(e), actor=input.agent,
                                 target=target, hashes=hashes)
                raise
            self._append(input, "state_write", "ok", actor=input.agent, target=target,
                         hashes=hashes, refs={"version": str(getattr(written, "version", ""))})
            return written
        try:
            result = await next(input)
        except BaseException as e:
            if _outcome(e):
                self._append(input, "state_read", _status(e), actor=input.agent,
                             target=target, refs={"op": input.op})
            raise
        value = getattr(result, "value", None)
        self._append(input, "state_read", "ok", actor=input.agent, target=target,
                     hashes={} if value is None else {"value": digest(value)},
                     refs={"op": input.op,
                           "version": str(getattr(result, "version", "") or "")})
        return result

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        written = await next(input)  # a write that fails decided nothing: no entry
        refs = {"task_id": input.task_id, "task_kind": input.kind}
        trace = _trace_id(input.headers)
        if trace is not None:
            refs["trace_id"] = trace
        kind: AuditKind = "approval" if input.kind == "approval" else "human_decision"
        event = AuditEvent(kind=kind, status=input.action, at=input.at,
                           session_id=input.session_id, step_key=input.step_key,
                           actor=input.by, target=input.task_id,
                           hashes={"decision": digest(dict(input.decision))}, refs=refs)
        # Committed before the person is told it is done (no journal write follows to
        # carry it, as it does for a step's entry).
        await self.log.append(input.tenant, [event])
        return written
