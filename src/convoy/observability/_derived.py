"""A session's spans derived from its journal, for ``convoy trace`` of a session whose spans
were not kept (run without tracing to the store, or left out by sampling).

Every journal record is a step, with when it began (:attr:`~convoy.stores.StepRecord.began`)
and when it was written: the derivation needs nothing recorded while the session ran. What
it gives, as :func:`~convoy.observability._spans.load_chunks` gives stored spans:

* the session's span (``invoke_workflow WORKFLOW``), from its creation to its end (or its
  last record, if it has not ended);
* an ``invoke_agent AGENT`` span for each stretch of consecutive steps one agent took,
  ended by its handoff (the next agent's span links to the handoff's and the source
  agent's, and says who handed over) or a step of the workflow's own; a worker agent's
  (its steps keyed under a step of the agent that called it) under the caller's;
* a span per step in its agent's, or the session's: ``chat MODEL`` (the model that
  answered, as journaled), ``execute_tool TOOL``, ``handoff A -> B``, ``state.OP KIND``,
  ``step NAME``, ``wait SIGNAL``, with its key, tokens, cost and error kind (a state
  operation's namespace and key when its target, ``OP NAMESPACE/KEY``, says where the
  namespace ends: no other ``/``).

Every span has ``convoy.derived``. Span ids are derived from the trace id and the step key,
so every reading gives the same ids (:func:`trace_ids`: the trace is the one live tracing
kept in the session's ``convoy.trace`` header, else its caller's, from its ``traceparent``
header, else its own). What only a live trace records is not here: state versions, spans
of the user's own code, content; the spans of a retried step's attempts are kept as they
run (:class:`~convoy.observability._tracing.AttemptSpans`), under the step's derived
span. A record of a Convoy that did not keep when a step began is an instant at its time.
Error messages are not shown for a data subject's session
(:data:`~convoy.privacy._withheld.WITHHELD`); what live tracing redacts goes through the
``redact`` given (``convoy trace``: the default redactor).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from convoy._trace_context import decision_span_id, step_span_id, trace_ids
from convoy._trace_context import derived_id as _id
from convoy.hitl._inbox import ESCALATED
from convoy.hitl._task import DEADLINE, INBOX
from convoy.observability._scrub import bounded
from convoy.observability._spans import BUDGET_EXHAUSTED, finish_reason
from convoy.observability._unhooked import DRAWN, wait_family
from convoy.privacy._seal import is_sealed
from convoy.privacy._withheld import WITHHELD
from convoy.resilience._classify import ERROR_KINDS, budget_refused, error_kind_of
from convoy.stores._protocol import SessionRow, StepRecord
from convoy.stores._rows import damaged

_MESSAGE_LIMIT = 500
# A state read and write of a human task (what its deadline decides is no person's).
_INBOX_GET, _INBOX_SET = f"get {INBOX}/", f"set {INBOX}/"
_RUNNING = ("pending", "running", "waiting")


#: Seconds since the epoch past which a stored time is not one Convoy wrote (year 5138).
_LATEST = 1e11


def _ns(seconds: float, what: str) -> int:
    """``seconds`` in nanoseconds; a time out of range is a damaged value of ``what``."""
    if not -_LATEST < seconds < _LATEST:  # (NaN too)
        raise damaged(what, f"its stored time {seconds!r} is out of range")
    return max(round(seconds * 1e9), 0)


def _span(name: str, trace_id: str, span_id: str, parent: str | None, start: int, end: int,
          status: str, attrs: dict[str, Any], message: str | None = None,
          links: list[dict[str, Any]] | None = None, kind: str = "internal") -> dict[str, Any]:
    return {"name": name, "trace_id": trace_id, "span_id": span_id, "parent_id": parent,
            "start": start, "end": max(end, start), "kind": kind, "status": status,
            "attrs": {**attrs, "convoy.derived": True}, "message": message,
            "links": links or [], "events": []}


def _value(result: str | None) -> Any:
    if not result:
        return None
    try:
        return json.loads(result)
    except ValueError:  # (sealed: a data subject's, its key destroyed or not given)
        return None


def _index(key: str) -> int:
    """The position of step ``key`` in its scope (``-1``: a key Convoy did not write)."""
    last = key.rpartition("/")[2]
    return int(last) if last.isdigit() else -1


def _same(text: str) -> str:
    return text


class _Derivation:
    def __init__(self, row: SessionRow, subject: bool,
                 redact: Callable[[str], str]) -> None:
        self.row = row
        self.subject = subject
        self.redact = redact
        self.trace_id, self.root_id, self.parent_id = trace_ids(row.header_map, row.id)
        self.spans: list[dict[str, Any]] = []

    def error(self, attrs: dict[str, Any], record: Any, fallback: str) -> tuple[str, str, str]:
        """``(status, status message, error message)`` of a failed step or session; sets
        ``error.type``."""
        error = record if isinstance(record, dict) else {}
        kind = error_kind_of(error) or fallback
        attrs["error.type"] = kind
        if budget_refused(error):  # (as live spans mark it)
            attrs[BUDGET_EXHAUSTED] = True
        message = WITHHELD if self.subject else \
            bounded(str(error.get("message", "")), self.redact, _MESSAGE_LIMIT)
        return "error", f"{kind}: {message}" if message else kind, message

    def step(self, r: StepRecord, parent: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {"convoy.step.key": r.key}
        value = _value(r.result)
        kind, target = r.kind, r.target
        span_kind = "internal"
        if kind == "model":
            answer = value if isinstance(value, dict) else {}
            failure = answer.get("attrs") if r.status == "failed" else None
            # The model of the call that answered, as its adapter named itself (after a
            # failover, the fallback's); of a failed call, the one that failed (kept with
            # its error). Named as live spans name a model: ``provider:name``.
            model = failure.get("model") if isinstance(failure, dict) else answer.get("model")
            name = "chat"
            attrs.update({"gen_ai.operation.name": "chat", "gen_ai.agent.name": target})
            if isinstance(model, str) and model:
                provider, _, bare = model.partition(":")
                if not bare:
                    provider, bare = "convoy", model
                name = f"chat {bare}"
                attrs.update({"gen_ai.provider.name": provider, "gen_ai.request.model": bare})
                if r.status == "completed":
                    attrs["gen_ai.response.model"] = model
            finish = answer.get("finish")
            if isinstance(finish, str) and finish:
                attrs["gen_ai.response.finish_reasons"] = [finish_reason(finish)]
            span_kind = "client"
        elif kind == "tool":
            name = f"execute_tool {target}"
            attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": target,
                          "gen_ai.tool.type": "function"})
            if r.agent:
                attrs["gen_ai.agent.name"] = r.agent
        elif kind == "handoff":
            name = f"handoff {r.agent} -> {target}"
            attrs.update({"gen_ai.agent.name": r.agent or "", "convoy.handoff.to": target})
        elif kind == "state":
            op, _, rest = target.partition(" ")  # (``OP NAMESPACE/KEY``)
            name = f"state.{op} {self.redact(rest.split('/', 1)[0].split(':', 1)[0])}".rstrip()
            attrs["convoy.state.op"] = op
            if rest.count("/") <= 1:  # (else the target does not say where the namespace
                namespace, _, key = rest.partition("/")  # ends: neither, not a wrong one)
                attrs["convoy.state.namespace"] = self.redact(namespace)
                if key:
                    attrs["convoy.state.key"] = self.redact(key)
        elif kind == "wait":
            # A watch (a person's task, a state key) is named by its namespace, as live.
            name = f"wait {self.redact(wait_family(target))}"
            attrs["convoy.signal.name"] = self.redact(target)
            if r.began and r.status != "started":
                attrs["convoy.wait.seconds"] = round(max(r.at - r.began, 0.0), 6)
        else:
            name = f"step {self.redact(target)}"
            attrs["convoy.step.name"] = self.redact(target)
            if target in DRAWN:
                attrs["convoy.step.drawn"] = True
        if r.input_tokens or r.output_tokens:
            attrs["gen_ai.usage.input_tokens"] = r.input_tokens
            attrs["gen_ai.usage.output_tokens"] = r.output_tokens
        if r.cost:
            attrs["convoy.cost_usd"] = r.cost
        if r.config:
            attrs["convoy.agent.config"] = r.config
        message = None
        if r.status == "completed":
            status = "ok"
        elif r.status == "failed" and isinstance(value, dict) and \
                value.get("type") == "ApprovalRequired":  # (it waits for a person: no error)
            status = "unset"
            attrs["convoy.approval.required"] = True
        elif r.status == "failed":
            status, message, text = self.error(
                attrs, value, "sealed" if is_sealed(r.result) else "unknown")
        else:  # started, no outcome (yet: a wait open, a call cut short)
            status = "unset"
            attrs["convoy.step.status"] = r.status
        what = f"session {self.row.id!r} step {r.key!r}"
        end = _ns(r.at, what)
        start = _ns(r.began, what) if r.began else end
        span = _span(name, self.trace_id, step_span_id(self.trace_id, r.key), parent, start,
                     end, status, attrs, message, kind=span_kind)
        if status == "error":  # (as live spans record the exception that failed a step)
            error = value if isinstance(value, dict) else {}
            span["events"].append({"name": "exception", "time": end, "attrs": {
                "exception.type": str(error.get("type") or attrs["error.type"]),
                "exception.message": text}})
        self.spans.append(span)
        return span

    def derive(self, records: Sequence[StepRecord],
               tasks: Sequence[str] = ()) -> list[dict[str, Any]]:
        row = self.row
        steps = sorted(records, key=lambda r: (r.at, r.key))
        # An agent's run takes its steps in one scope of the session's step tree (the
        # ``ctx.run`` that started it: ``2/0``, ``2/1``, ...; a handoff's target goes on in
        # the same scope): the agent run going on in each scope, and the one each
        # journaled key belongs to. Runs in other scopes (``ctx.gather``, another
        # ``ctx.run``) are other runs, however their steps interleave in time.
        current: dict[str, dict[str, Any]] = {}
        handed: dict[str, tuple[str, str, str]] = {}  # scope -> (source, its span, handoff)
        owner: dict[str, dict[str, Any]] = {}
        runs: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # scope -> (first index, run)
        placed: list[tuple[str, dict[str, Any]]] = []  # (scope, span) to put in a parent
        # an agent run's span id -> (its span, its last step's)
        last: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        decided: set[str] = set()
        for stored in tasks:
            self.decided(stored, decided)
        for r in steps:
            if r.kind == "state" and r.status == "completed" and \
                    r.target.startswith(_INBOX_GET):
                self.decision(r, decided)
            name = r.taken_by
            scope = r.key.rpartition("/")[0]
            if name is None:  # a step of the workflow's own
                placed.append((scope, self.step(r, self.root_id)))
                continue
            run = current.get(scope)
            if run is None or run["attrs"]["gen_ai.agent.name"] != name or \
                    "convoy.handoff.to" in run["attrs"]:
                run = current[scope] = self.agent(name, r, handed.pop(scope, None))
                placed.append((scope, run))
                runs.setdefault(scope, []).append((_index(r.key), run))
            span = self.step(r, run["span_id"])
            owner[r.key] = run
            self.widen(run, span)
            last[run["span_id"]] = (run, span)
            if r.kind == "handoff" and r.status == "completed":
                run["attrs"]["convoy.handoff.to"] = r.target
                handed[scope] = (name, run["span_id"], span["span_id"])

        def holder(scope: str) -> dict[str, Any] | None:
            """The agent run that took the step ``scope`` is under (a worker's run, the
            steps a tool took: the calling agent's), if any: the run that journaled that
            step, else (a worker's call is not journaled itself) the run of the scope
            around it that had begun by then."""
            while scope:
                if scope in owner:
                    return owner[scope]
                around = scope.rpartition("/")[0]
                at = _index(scope)
                began = [run for first, run in runs.get(around, ()) if first <= at]
                if began:
                    return began[-1]
                scope = around
            return None

        for scope, span in placed:
            parent = holder(scope)
            if parent is not None:
                span["parent_id"] = parent["span_id"]
            seen: set[str] = set()
            while parent is not None and parent["span_id"] not in seen:  # (and its callers)
                seen.add(parent["span_id"])
                self.widen(parent, span)
                parent = holder(parent["attrs"]["convoy.step.key"].rpartition("/")[0])
        agents = {run["span_id"]: run for run, _ in last.values()}
        for run in agents.values():  # (1: a run of the workflow's; its workers' 2, ...)
            depth, up, seen = 1, run["parent_id"], {run["span_id"]}
            while up in agents and up not in seen:
                seen.add(up)
                depth += 1
                up = agents[up]["parent_id"]
            run["attrs"]["convoy.agent.depth"] = depth
        for run, step in last.values():
            if step["status"] == "error":
                # The run ended in its last step's failure (one that failed before it,
                # a tool's error the model answered, is the step's, not the run's).
                run["status"] = "error"
                run["attrs"]["error.type"] = step["attrs"]["error.type"]
                if step["attrs"].get(BUDGET_EXHAUSTED):
                    run["attrs"][BUDGET_EXHAUSTED] = True
                run["message"] = step["message"]
                run["events"] = [dict(e) for e in step["events"]]  # (its exception)
            elif step["status"] == "unset":
                run["status"] = "unset"  # (cut short, or waiting in its last step)
        begin = _ns(row.created, f"session {row.id!r}")
        end = max([_ns(row.finished or 0.0, f"session {row.id!r}"),
                   *(s["end"] for s in self.spans), begin])
        for s in self.spans:
            begin = min(begin, s["start"])
        sid = self.redact(row.id)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": self.redact(row.workflow),
            "convoy.workflow.version": row.version, "convoy.tenant": self.redact(row.tenant),
            "gen_ai.conversation.id": sid, "convoy.session.id": sid,
            "convoy.session.status": row.status}
        message = None
        if row.status == "completed":
            status = "ok"
        elif row.status in _RUNNING:
            status = "unset"
        else:
            fallback = row.status if row.status in ERROR_KINDS else \
                "sealed" if is_sealed(row.error) else "unknown"
            error = row.error_record
            status, message, text = self.error(attrs, error, fallback)
        root = _span(f"invoke_workflow {attrs['gen_ai.workflow.name']}", self.trace_id,
                     self.root_id, self.parent_id, begin, end, status, attrs, message)
        if status == "error":  # (as live tracing records how the session failed)
            root["events"].append({"name": "exception", "time": end, "attrs": {
                "exception.type": str((error if isinstance(error, dict) else {}).get("type")
                                      or attrs["error.type"]),
                "exception.message": text}})
        spans = [root, *self.spans]
        spans.sort(key=lambda s: (s["start"], s["end"]))
        return spans

    def decision(self, r: StepRecord, decided: set[str]) -> None:
        """The ``human_decision`` span of a decision on a human task the session read back
        (a ``state.get`` of its task in the inbox, after its wait)."""
        read = _value(r.result)
        stored = read.get("value") if isinstance(read, dict) else None
        if isinstance(stored, str):
            self.decided(stored, decided)

    def decided(self, stored: str, decided: set[str]) -> None:
        """The ``human_decision`` span of the decision a version of a human task holds
        (``stored``: its JSON, as the inbox keeps it), once per decision, as live tracing
        records it when the person makes it (the same span id): at its time, under the
        session's span. (A sealed task, a data subject's read without the master key, a
        task no person decided: none.)"""
        task = _value(stored)
        if not isinstance(task, dict) or not isinstance(task.get("decision"), dict):
            return
        decision: dict[str, Any] = task["decision"]
        task_id, at, action = task.get("id"), decision.get("at"), decision.get("action")
        if not isinstance(task_id, str) or not isinstance(at, int | float) or \
                isinstance(at, bool) or not isinstance(action, str) or \
                decision.get("by") == DEADLINE:
            return
        span_id = decision_span_id(self.trace_id, task_id, at)
        if span_id in decided:
            return
        decided.add(span_id)
        when = _ns(at, f"session {self.row.id!r} human task {task_id!r}")
        sid = self.redact(self.row.id)
        attrs = {"convoy.task.id": self.redact(task_id),
                 "convoy.task.kind": str(task.get("kind", "")),
                 "convoy.decision.action": action,
                 "convoy.step.key": task_id.rpartition(":")[2],
                 "gen_ai.conversation.id": sid, "convoy.session.id": sid}
        if task_id.endswith(":" + ESCALATED):  # (the session's escalation: its step's key)
            history = task.get("history")
            step = history.get("step") if isinstance(history, dict) else None
            if isinstance(step, str):
                attrs["convoy.step.key"] = step
            else:  # (it escalated outside a step)
                del attrs["convoy.step.key"]
        self.spans.append(_span("human_decision", self.trace_id, span_id, self.root_id, when,
                                when, "ok", attrs))

    @staticmethod
    def widen(span: dict[str, Any], child: dict[str, Any]) -> None:
        """Make agent span ``span`` hold ``child``."""
        span["start"] = min(span["start"], child["start"])
        span["end"] = max(span["end"], child["end"])

    def agent(self, name: str, first: StepRecord,
              handed: tuple[str, str, str] | None) -> dict[str, Any]:
        """The span of an agent's run whose first step is ``first`` (``handed``: the run
        and the handoff that started it), under the session's until it is placed."""
        attrs: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent",
                                 "gen_ai.agent.name": name, "convoy.step.key": first.key}
        links: list[dict[str, Any]] = []
        if handed is not None:
            source, source_span, handoff_span = handed
            attrs["convoy.handoff.from"] = source
            # (mirrored as attributes, as live spans do: not every backend keeps links)
            attrs["convoy.handoff.source_span_id"] = source_span
            attrs["convoy.handoff.span_id"] = handoff_span
            links = [{"trace_id": self.trace_id, "span_id": source_span,
                      "attrs": {"convoy.link": "handoff_source"}},
                     {"trace_id": self.trace_id, "span_id": handoff_span,
                      "attrs": {"convoy.link": "handoff"}}]
        at = _ns(first.began or first.at, f"session {self.row.id!r} step {first.key!r}")
        span = _span(f"invoke_agent {name}", self.trace_id,
                     _id(self.trace_id, "agent", first.key), self.root_id, at, at, "ok",
                     attrs, links=links)
        self.spans.append(span)
        return span


def journal_spans(row: SessionRow, records: Sequence[StepRecord], *,
                  subject: bool | None = None,
                  redact: Callable[[str], str] | None = None,
                  tasks: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The spans of session ``row`` derived from its journal ``records`` (see the module
    docstring), oldest first. ``subject``: whether it is a data subject's session (its
    error messages withheld); by default, whether the row names one. ``redact``: what
    live tracing's redactor goes over (the session id and tenant, a step's and a signal's
    name, error messages) goes through it (default: nothing is redacted). ``tasks``: the
    versions of the session's human tasks (:func:`task_keys` names them), whose decisions
    are ``human_decision`` spans whether the session read them back or not."""
    return _Derivation(row, row.subject is not None if subject is None else subject,
                       redact or _same).derive(records, tasks)


def task_keys(session_id: str, records: Sequence[StepRecord]) -> list[str]:
    """The inbox keys of the human tasks of a session: those its journal says it created,
    and the one that answers it when it escalated (kept by the inbox, not journaled)."""
    return list(dict.fromkeys([*(r.target[len(_INBOX_SET):] for r in records
                                 if r.kind == "state" and r.target.startswith(_INBOX_SET)),
                               f"{session_id}:{ESCALATED}"]))


__all__ = ["journal_spans", "task_keys"]
