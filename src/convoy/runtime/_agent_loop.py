"""The agent loop: model turns, tool calls, worker delegations and handoffs.

Every model call, tool call and handoff is a journaled step of the session, run through the
interceptor chain of its kind. Mistakes a model can fix (invalid output, an unknown tool, an
undeclared handoff target, invalid arguments or payload) go back to it as messages, within
bounded budgets; past them the run fails with a typed error. A tool that fails (raises,
times out, is refused by its open breaker, or by the tool guard for a scope the agent
lacks) is reported to the model as that, within its own budget (``Agent.tool_failures``);
past it the run fails with the tool's own error.

People: a tool call a policy sends for approval parks the session on an approval task and
runs once approved (:mod:`convoy.hitl._approve`); an agent with escalation rules hands a
failed run to a person instead of failing (:mod:`convoy.hitl._escalate`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from hashlib import blake2b as _blake2b
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json

from convoy._errors import (
    AgentTurnsExhausted,
    ApprovalRequired,
    CircuitOpenError,
    HandoffError,
    OutputValidationError,
    SessionTerminated,
    StepError,
    ToolError,
    UserError,
)
from convoy._text import readable_validation_error
from convoy.definitions._agent import Agent, AgentLinks, render_input
from convoy.definitions._calls import InvalidCall, check_call
from convoy.definitions._tools import ToolContext
from convoy.durability._executor import fingerprint
from convoy.hitl._approve import approve_then_call
from convoy.hitl._escalate import Leg, escalated, escalates, reviews
from convoy.interceptors._base import (
    AgentRunEnd,
    AgentRunEnded,
    AgentRunInput,
    HandoffInput,
    ModelCallInput,
    ToolCallInput,
    ended_earlier,
)
from convoy.models._messages import Message, ModelRequest, ModelResponse, ToolCall
from convoy.runtime._concurrency import concurrently
from convoy.security._provenance import (
    DEVELOPER,
    HUMAN,
    MODEL,
    MODEL_TAINTED,
    from_agent,
    from_tool,
    input_provenance,
    ledger,
    note_grounded,
    note_untrusted,
    tainted,
)
from convoy.state._access import ToolAccess

if TYPE_CHECKING:
    from convoy.runtime._context import Context
    from convoy.runtime._session import SessionState
    from convoy.security._provenance import Provenance

log = logging.getLogger("convoy")
#: How long an agent run took, for its session's run taps (tests inject a clock).
perf_ns = time.perf_counter_ns
_new_tuple = tuple.__new__


def _decode_response(text: str) -> ModelResponse:
    return ModelResponse.from_dict(from_json(text))


def _encode_response(resp: ModelResponse) -> str:
    return to_json(resp.to_dict()).decode()


def _response_spend(resp: ModelResponse) -> tuple[int, int, float]:
    return resp.usage.input_tokens, resp.usage.output_tokens, resp.cost


def _messages_fingerprint(messages: list[Message]) -> str:
    # Assistant turns and tool results come from journaled steps, which replay as recorded;
    # the texts (instructions, input, repair prompts, tool outputs) are what can change.
    # (``fingerprint`` inlined: this runs on every model step.)
    return _blake2b("\x1f".join([m.content or "" for m in messages]).encode(),
                    digest_size=16).hexdigest()


async def run_agent(ctx: Context, agent: Agent[Any, Any], value: Any, *,
                    routed: bool = False, sender: str = "") -> Any:
    """Run ``agent`` in scope ``ctx`` until it produces a valid output.

    ``routed`` marks a run a model asked for (a delegation); such runs, and every handoff,
    take part in loop detection. Runs your workflow code asks for explicitly do not.
    ``sender``: the agent that delegated this run (the input's provenance).
    """
    s = ctx.session
    s.check_depth(agent.name, ctx.depth)
    if s.last_known is not agent:
        s.know(agent)
    try:
        value = agent.coerce_input(value)
    except ValidationError as e:
        raise UserError(f"input for agent {agent.name!r} does not match its input type "
                        f"{agent.input_type.__name__}: {readable_validation_error(e)}") from None
    source: Agent[Any, Any] | None = None
    handoff_key: str | None = None
    while True:  # one iteration per agent; a handoff switches agent and goes round again
        messages: list[Message] = []
        if source is not None:  # who sent the input (its provenance): the handoff's source
            sender = source.name
        try:
            tap = s.run_tap
            if tap is None:
                done, result = await _leg(ctx, agent, value, routed, messages, source,
                                          handoff_key, sender)
            else:  # (told here, not by a coroutine around the run: no frame of its own)
                key = ctx.peek_key()
                # (a first run replays nothing: no call to ask its executor)
                replaying = s.resumed and getattr(s.executor, "replaying", False)
                t = perf_ns()
                try:
                    done, result = await _leg(ctx, agent, value, routed, messages, source,
                                              handoff_key, sender, tapped=False)
                except BaseException as e:
                    _tell(tap, ctx, key, agent, replaying, None, e, perf_ns() - t)
                    raise
                # (``_tell``, inlined: this runs on every agent run)
                ns = perf_ns() - t
                ended: AgentRunEnded = _new_tuple(AgentRunEnded, (
                    ctx, key, agent, replaying, replaying and ended_earlier(ctx, key),
                    None if done else result[0], None, ns))
                try:
                    tap(ended)
                except Exception:
                    _tap_raised(ended)
        except (Exception, SessionTerminated) as e:
            rules = agent.escalation or s.runtime.escalation
            if rules is None or not escalates(rules, e):
                raise
            # A failure the rules name goes to a person, who decides how to go on.
            done, result = await escalated(ctx, agent, rules, _again(
                ctx, agent, value, messages, source, handoff_key, sender), messages, error=e)
        else:
            rules = agent.escalation or s.runtime.escalation
            if rules is not None and rules.confidence_below is not None and \
                    reviews(rules, done, result):
                done, result = await escalated(ctx, agent, rules, _again(
                    ctx, agent, value, messages, source, handoff_key, sender), messages,
                    outcome=(done, result))
        if done:
            return result
        routed = True  # whatever comes next was chosen by a model: a handoff
        source = agent
        agent, value, handoff_key = result


def _leg(ctx: Context, agent: Agent[Any, Any], value: Any, routed: bool,
         messages: list[Message], source: Agent[Any, Any] | None, handoff_key: str | None,
         sender: str, note: str | None = None, *,
         tapped: bool = True) -> Awaitable[tuple[bool, Any]]:
    """One agent's turns on ``value`` (into ``messages``), until it answers or hands off:
    through the agent chain when interceptors hook agent runs, else straight to the turns.
    ``note``: a reviewer's comment, for a run a person asked for. ``tapped=False``: the
    caller tells the session's run taps (:func:`_tell`). (Not a coroutine itself: it costs
    no frame of its own on every agent run.)"""
    s = ctx.session
    rendered = render_input(value)
    if routed:
        s.note_input(agent.name, rendered)
    system = agent.render_instructions(value)
    if messages:
        messages.clear()
    if system:
        messages.append(Message(role="system", content=system, provenance=DEVELOPER))
    messages.append(Message(role="user", content=rendered, provenance=input_provenance(
        s, value, rendered, sender)))
    if note:
        messages.append(Message(role="user", content=f"A reviewer's note: {note}",
                                provenance=HUMAN))
    chain = s.runtime.agent_chain
    if chain.call is agent_turns:  # no agent hooks: no input to build
        if s.run_tap is None or not tapped:
            return _loop(ctx, agent, messages)
        return _tapped(ctx, agent, _loop(ctx, agent, messages))
    run = _chained(chain.call(AgentRunInput(
        session=s, key=ctx.peek_key(), agent=agent, messages=messages, depth=ctx.depth,
        handoff_from=source, handoff_key=handoff_key,
        replaying=getattr(s.executor, "replaying", False), context=ctx)))
    return run if s.run_tap is None or not tapped else _tapped(ctx, agent, run)


async def _tapped(ctx: Context, agent: Agent[Any, Any],
                  run: Awaitable[tuple[bool, Any]]) -> tuple[bool, Any]:
    """``run``, and the session's run taps told when it ends (:class:`AgentRunEnded`).
    A tap that raises is logged, and changes nothing of the run's end."""
    s = ctx.session
    tap = s.run_tap
    assert tap is not None
    key = ctx.peek_key()
    replaying = getattr(s.executor, "replaying", False)
    t = perf_ns()
    try:
        done, result = await run
    except BaseException as e:
        _tell(tap, ctx, key, agent, replaying, None, e, perf_ns() - t)
        raise
    _tell(tap, ctx, key, agent, replaying, None if done else result[0], None, perf_ns() - t)
    return done, result


def _tell(tap: Callable[[AgentRunEnded], None], ctx: Context, key: str,
          agent: Agent[Any, Any], replaying: bool, handoff: Agent[Any, Any] | None,
          error: BaseException | None, ns: int) -> None:
    """Tell ``tap`` an agent run ended (:class:`AgentRunEnded`); one that raises is
    logged, and changes nothing of the run's end."""
    # (``tuple.__new__``: the fields in order, without the Python frame of the named
    # tuple's own ``__new__``; this runs on every agent run)
    ended: AgentRunEnded = _new_tuple(AgentRunEnded, (
        ctx, key, agent, replaying, replaying and ended_earlier(ctx, key), handoff, error, ns))
    try:
        tap(ended)
    except Exception:
        _tap_raised(ended)


def _tap_raised(ended: AgentRunEnded) -> None:
    from convoy.privacy._withheld import log_raised

    log_raised(log, "a run tap raised on the end of the run of agent %s at step %s of "
               "session %s; the run ends as it did", ended.agent.name, ended.key,
               ended.session.id, of_subject=ended.session.subject is not None)


def run_tap_of(taps: Sequence[Callable[[AgentRunEnded], None]]
               ) -> Callable[[AgentRunEnded], None]:
    """One run tap that tells each of ``taps`` in turn: one that raises is logged, and the
    others are told all the same."""
    if len(taps) == 1:
        return taps[0]
    every = tuple(taps)

    def tell(ended: AgentRunEnded) -> None:
        for tap in every:
            try:
                tap(ended)
            except Exception:
                _tap_raised(ended)

    return tell


def _again(ctx: Context, agent: Agent[Any, Any], value: Any, messages: list[Message],
           source: Agent[Any, Any] | None, handoff_key: str | None, sender: str) -> Leg:
    """The leg again, as a person asked for it (loop detection does not count it)."""
    def leg(note: str | None) -> Awaitable[tuple[bool, Any]]:
        return _leg(ctx, agent, value, False, messages, source, handoff_key, sender, note)

    return leg


async def _chained(end: Awaitable[AgentRunEnd]) -> tuple[bool, Any]:
    e = await end
    if e.handoff is None:
        return True, e.output
    return False, (e.handoff, e.payload, e.handoff_key)


async def agent_turns(i: AgentRunInput) -> AgentRunEnd:
    """The end of the agent chain: the agent's model turns."""
    done, result = await _loop(i.context, i.agent, i.messages)
    if done:
        return AgentRunEnd(output=result)
    target, payload, key = result
    return AgentRunEnd(handoff=target, payload=payload, handoff_key=key)



async def _loop(ctx: Context, agent: Agent[Any, Any], messages: list[Message]) -> tuple[bool, Any]:
    """Model turns of one agent: ``(True, output)`` or ``(False, (target, payload,
    handoff step key))``."""
    s = ctx.session
    # Names fail here, before the agent's first model call.
    links = agent.static_links or agent.links(s.agents)
    invalid_outputs = 0
    mistakes = 0
    failures = 0
    for _turn in range(agent.max_turns):
        resp = await model_step(ctx, agent, messages, repairs=invalid_outputs)
        usage, total = resp.usage, s.usage  # ``s.add_spend``, inlined: once per model step
        total.input_tokens += usage.input_tokens
        total.output_tokens += usage.output_tokens
        s.cost += resp.cost
        if not resp.tool_calls:
            try:
                out = agent.parse_output(resp.text)
            except ValueError as e:
                invalid_outputs += 1
                if invalid_outputs > agent.output_retries:
                    raise OutputValidationError(
                        f"agent {agent.name!r} gave invalid output {invalid_outputs} times; "
                        f"last error: {e}") from None
                messages.append(Message(role="assistant", content=resp.text,
                                        provenance=_said(s, messages)))
                messages.append(Message(role="user", content=_repair_prompt(agent, str(e)),
                                        provenance=DEVELOPER))
                continue
            if tainted(s, messages):  # an answer built from untrusted content
                ledger(s).add_derived(_plain(out), from_agent(agent.name, True))
            return True, out
        messages.append(Message(role="assistant", content=resp.text,
                                tool_calls=list(resp.tool_calls), provenance=_said(s, messages)))
        turn = await _dispatch(ctx, agent, links, resp.tool_calls, messages)
        if turn.handoff is not None:
            return False, turn.handoff
        if turn.mistakes:
            mistakes += turn.mistakes
            if mistakes > agent.handoff_retries:
                raise HandoffError(
                    f"agent {agent.name!r} made {mistakes} invalid tool calls or handoffs; "
                    f"last: {turn.last_mistake}", retryable=False)
        if turn.last_failure is not None:
            failures += turn.failures
            if failures > agent.tool_failures:
                # The tool's own error says why (timed out, breaker open, raised): it
                # ends the run typed as that, not as a mistake of the model.
                raise turn.last_failure
    # A failure of this agent's run, not a session limit: the workflow may catch it. It is
    # derived from the journaled turns alone, so a replay raises it again at this point.
    raise AgentTurnsExhausted(
        f"agent {agent.name!r} reached max_turns={agent.max_turns} in session {s.id!r} "
        "without a final answer", agent=agent.name, max_turns=agent.max_turns,
        transcript=[m.to_dict() for m in messages])


def _said(s: SessionState, messages: list[Message]) -> Provenance:
    """The provenance of a model's turn: tainted once it read untrusted content."""
    return MODEL_TAINTED if tainted(s, messages) else MODEL


def _plain(value: Any) -> Any:
    """A value as JSON-like data, for the taint ledger."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _repair_prompt(agent: Agent[Any, Any], error: str) -> str:
    schema = json.dumps(agent.output_schema) if agent.output_schema else "plain text"
    return (f"Your answer did not match the required output. Errors: {error}. "
            f"Reply with only a JSON object matching this schema: {schema}")


def _tool_error(call: ToolCall, text: str) -> Message:
    return Message(role="tool", tool_call_id=call.id, content=json.dumps({"error": text}))


def _tool_failure(call: ToolCall, e: StepError) -> Message:
    """What the model is told about a tool that failed: timed out, unavailable (its
    breaker is open), or the error it raised. Derived from the journaled error alone, so
    a replay tells the model the same."""
    body: dict[str, Any]
    if isinstance(e, CircuitOpenError):
        body = {"error": f"tool {call.name!r} is unavailable right now ({e}); answer without "
                         "it or try it again later", "unavailable": True}
    elif isinstance(e, ToolError) and e.timeout:
        body = {"error": f"tool {call.name!r} timed out: {e}", "timed_out": True,
                "retryable": True}
    else:
        body = {"error": str(e)}
        if e.details:  # e.g. a state conflict: the current value, to decide again on
            body.update(e.details)
    return Message(role="tool", tool_call_id=call.id, content=json.dumps(body))


class _Turn:
    """The outcome of one turn's tool calls."""

    __slots__ = ("failures", "handoff", "last_failure", "last_mistake", "mistakes")

    def __init__(self) -> None:
        self.handoff: tuple[Agent[Any, Any], Any, str] | None = None
        self.mistakes = 0  # invalid calls: unknown names, invalid arguments or payloads
        self.last_mistake = ""
        self.failures = 0  # valid calls whose tool failed, timed out or was refused
        self.last_failure: StepError | None = None


async def _dispatch(ctx: Context, agent: Agent[Any, Any], links: AgentLinks,
                    calls: list[ToolCall], messages: list[Message]) -> _Turn:
    """Run one turn's tool calls: a handoff, or replies appended to ``messages``."""
    turn = _Turn()
    replies: list[Message | None] = [None] * len(calls)
    workers: list[tuple[int, Agent[Any, Any], Any]] = []
    handoff: tuple[Agent[Any, Any], Any] | None = None
    alone = len(calls) == 1
    for i, call in enumerate(calls):
        try:
            checked = check_call(agent, links, call, alone=alone)
        except InvalidCall as e:
            replies[i] = _tool_error(call, str(e))
            turn.mistakes += 1
            turn.last_mistake = str(e)
            continue
        if checked.tool is not None:
            tool = checked.tool
            try:
                result = await tool_step(ctx, agent, tool, checked.value, messages)
            except (ToolError, CircuitOpenError) as e:
                replies[i] = _tool_failure(call, e)
                turn.failures += 1
                turn.last_failure = e
                continue
            content = tool.dump_result(result)
            prov = from_tool(tool.name, not tool.trusted)
            if prov.tainted:
                note_untrusted(ctx.session, content, prov)
            else:
                note_grounded(ctx.session, content)
            replies[i] = Message(role="tool", tool_call_id=call.id, content=content,
                                 provenance=prov)
        elif checked.agent is not None and checked.kind == "worker":
            workers.append((i, checked.agent, checked.value))
        elif checked.agent is not None:
            handoff = (checked.agent, checked.value)
    if workers:
        scopes = [ctx.child() for _ in workers]
        results = await concurrently([_run_worker(sc, w, p, agent.name)
                                      for sc, (_, w, p) in zip(scopes, workers, strict=True)])
        taint = ctx.session.taint
        for (i, w, _), out in zip(workers, results, strict=True):
            content = w.dump_output(out)
            replies[i] = Message(role="tool", tool_call_id=calls[i].id, content=content,
                                 provenance=from_agent(w.name, taint is not None and
                                                       taint.derived(content)))
    if handoff is not None:
        target, payload = handoff
        if tainted(ctx.session, messages):  # a payload built from untrusted content
            ledger(ctx.session).add_derived(_plain(payload), from_agent(agent.name, True))
        key = await handoff_step(ctx, agent, target, payload)
        turn.handoff = (target, payload, key)
        return turn
    messages.extend(m for m in replies if m is not None)
    return turn


async def _run_worker(scope: Context, worker: Agent[Any, Any], payload: Any,
                      sender: str) -> Any:
    return await run_agent(scope, worker, payload, routed=True, sender=sender)


# -- the three step kinds of an agent run -----------------------------------------------


def model_step(ctx: Context, agent: Agent[Any, Any], messages: list[Message], *,
               repairs: int = 0) -> Awaitable[ModelResponse]:
    """Take the next step key for a model call and return the journaled step; the caller
    adds the response's spend to the session's totals (:func:`_loop` does).

    Neither this nor the call it journals is a coroutine of its own: while a model call is
    in flight a session holds as few objects as it can for the cyclic GC to walk (a
    partial and its arguments, not a closure's function, cells and frames)."""
    s = ctx.session
    key = ctx.next_key()
    s.count_step(key)
    execute = partial(_call_model, s, agent, messages, key, repairs)
    return s.executor.run_step(
        key, "model", agent.name, execute, _encode_response, _decode_response,
        input_hash=_messages_fingerprint(messages), spend=_response_spend,  # agent: the target
        config=agent.config_id)


def _call_model(s: SessionState, agent: Agent[Any, Any], messages: list[Message], key: str,
                repairs: int) -> Awaitable[ModelResponse]:
    """A model step's call, through the model chain; made only when the step runs: a
    step served from the journal (resume, ``convoy replay``) needs neither the model nor
    its credentials. (Not a coroutine: the chain's own awaitable is the step's.)"""
    rt = s.runtime
    model = rt.model_for(agent)
    links = agent.static_links or agent.links(s.agents)
    req = ModelRequest(messages=list(messages), tools=links.tool_specs,
                       output_schema=agent.output_schema,
                       output_name=getattr(agent.output_type, "__name__", None),
                       settings=agent.model_settings, agent=agent.name, session_id=s.id,
                       step_key=key, repairs=repairs, tenant=s.tenant,
                       boundary=ledger(s).boundary if tainted(s, messages) else "")
    return rt.model_chain.call(ModelCallInput(session=s, key=key, agent=agent, model=model,
                                              request=req))


async def tool_step(ctx: Context, agent: Agent[Any, Any], tool: Any, args: Any,
                    messages: list[Message] | None = None) -> Any:
    """A tool call; one a policy sends to a person runs once they approved it (a new step
    carrying the approval; ``messages``, the conversation so far, go to the reviewer)."""
    try:
        return await _tool_call(ctx, agent, tool, args)
    except ApprovalRequired as e:
        def again(approved_args: Any, approval: str) -> Awaitable[Any]:
            return _tool_call(ctx, agent, tool, approved_args, approval)

        return await approve_then_call(ctx, agent, tool, args, e, again, messages or [])


async def _tool_call(ctx: Context, agent: Agent[Any, Any], tool: Any, args: Any,
                     approval: str | None = None) -> Any:
    s = ctx.session
    key = ctx.next_key()
    s.count_step(key)
    tctx = ToolContext(session_id=s.id, tenant=s.tenant, agent=agent.name, step_key=key,
                       idempotency_key=f"{s.id}:{key}", deps=s.runtime.deps,
                       _state=ToolAccess(s, key, agent.name))

    async def execute() -> Any:
        try:
            return await s.runtime.tool_chain.call(ToolCallInput(
                session=s, key=key, agent=agent, tool=tool, args=args, context=tctx,
                approval=approval))
        except ToolError as e:
            if not e.timeout and _timed_out(e):
                # Marked before the failure is journaled, so a replay sees it too.
                e.timeout = e.retryable = True
            raise

    return await s.executor.run_step(
        key, "tool", tool.name, execute, tool.dump_result, tool.load_result,
        effect=tool.writes, idempotent=tool.idempotent,
        input_hash=fingerprint(args.model_dump_json()), agent=agent.name,
        config=agent.config_id)


async def handoff_step(ctx: Context, source: Agent[Any, Any], target: Agent[Any, Any],
                       payload: Any) -> str:
    """Journal the handoff from ``source`` to ``target``; its step key."""
    s = ctx.session
    key = ctx.next_key()
    s.count_step(key)
    s.note_handoff(source.name, target.name)
    rendered = render_input(payload)

    async def execute() -> str:
        out = await s.runtime.handoff_chain.call(HandoffInput(
            session=s, key=key, source=source, target=target, payload=payload))
        return render_input(out)

    await s.executor.run_step(key, "handoff", target.name, execute, _ident, _ident,
                              input_hash=fingerprint(rendered), agent=source.name,
                              config=source.config_id)
    return key


def _timed_out(e: ToolError) -> bool:
    """Did this tool error come from a deadline: a timeout interceptor (which raises it
    while handling the ``CancelledError`` of its deadline), or the tool's own
    ``TimeoutError``?"""
    return isinstance(e.__context__, asyncio.CancelledError) or \
        isinstance(e.__cause__, TimeoutError)


def _ident(x: str) -> str:
    return x


__all__ = ["agent_turns", "model_step", "run_agent", "tool_step"]
