"""The ``audit`` interceptor: one audit entry for every step a session takes.

- Every step a session journals has its entry, made from the journal record as it is
  written (:mod:`convoy.audit._journal` says which entry each record makes): a model call
  (the hashes of its prompt and output, what the agent chose: an answer, a tool, a
  handoff), a tool call (its arguments' hash and its status; refused: ``policy_refusal``,
  or ``approval`` ``required``), a handoff, a state read or write, a ``ctx.step``, a signal
  received. The interceptor hooks no step: it adds a journal tap to each session run (a
  session hook); the run's entries are appended when it ends, in the commit that records
  how it ended, with the session's audit cursor (:data:`AUDIT_CURSOR`). A run that is
  killed appends nothing: the run that resumes the session appends the entries of the
  records after the cursor first. Steps replayed from the journal are not written again,
  so a resumed session appends nothing twice.
- A person's decision on a human task, when it is made (the ``human_decision`` hook, run
  by the inbox around the write, whether the session ever resumes or not):
  ``human_decision`` (``approval`` for a tool approval) with the action as status, who
  decided as actor, the task id, its kind and the hash of the decision; a decision whose
  write fails (the task was decided meanwhile) appends nothing.
- A new workflow version seen for a tenant: ``config_change``.
- A session that ends cancelled (``engine.cancel``, ``convoy cancel``), when its run
  ends: ``session`` with status ``cancelled``, who cancelled it as actor (the error
  record's ``by``), the workflow as target.

Each entry carries the session id and step key (a decision: the task's), and the trace id
when tracing put one in the session's headers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from convoy._errors import UserError
from convoy.audit._event import AuditEvent, AuditKind, digest
from convoy.audit._journal import JournalEntries
from convoy.audit._log import AuditLog
from convoy.interceptors._base import (
    DecisionInput,
    Interceptor,
    Next,
    SessionEnd,
    SessionInput,
)

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.hitl._task import HumanTask

#: The session header tracing keeps its W3C ``traceparent`` in.
TRACE_HEADER = "convoy.trace"
_CONFIG_NAMESPACE = "convoy.audit.config"
#: The session header that says up to when the session's journal records have their audit
#: entries: the time of the last record audited (the records a session journals are
#: stamped in increasing time, whichever engine writes them). A bare number, as earlier
#: versions wrote it (a clock's time), so engines of both can run one store.
AUDIT_CURSOR = "convoy.audit"


def _cursor(text: str | None) -> float:
    """The time of an audit cursor header (``-inf``: none, every record is after it)."""
    try:
        return float(text) if text is not None else -math.inf
    except ValueError:
        return -math.inf


def _sampled_flag(traceparent: str) -> bool:
    """The sampled bit of a ``traceparent``'s flags (as ``convoy.observability`` reads
    it; not imported from there, which imports the stores that import this package)."""
    try:
        return bool(int(traceparent[-2:], 16) & 1)
    except ValueError:
        return False


def _trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id in a session's headers, if tracing put one there."""
    trace = headers.get(TRACE_HEADER)
    if trace is None or trace.count("-") != 3 or not _sampled_flag(trace):
        return None  # no trace, or a session sampling left untraced
    return trace.split("-")[1]


class AuditInterceptor(Interceptor):
    """Appends an audit entry for every step (see the module docstring).

    Args:
        key_path: the Ed25519 key file that signs checkpoints (created ``0600`` on first
            use); only :attr:`log` uses it, appending needs no key.
        flush_every: a run that has held this many entries appends them (with the
            session's cursor) with its next commit instead of at its end: a long run's
            memory and the log's lag behind it stay bounded.
    """

    stage = "audit"

    def __init__(self, *, key_path: str | Path | None = None,
                 flush_every: int = 1024) -> None:
        if flush_every < 1:
            raise UserError(f"AuditInterceptor: flush_every must be >= 1, got {flush_every}")
        self.key_path = key_path
        self.flush_every = flush_every
        self._log: AuditLog | None = None
        self._engine: Engine | None = None
        self._versions: set[tuple[str, str, str]] = set()

    @property
    def log(self) -> AuditLog:
        """The audit logs of the engine's store (once the engine is open)."""
        if self._log is None:
            raise RuntimeError("the audit interceptor is not started: open the engine first")
        return self._log

    async def start(self, engine: Engine) -> None:
        self._log = AuditLog(engine.store, key_path=self.key_path, clock=engine.clock)
        self._engine = engine  # its owner id is read at each run's end (it may be set later)

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        i = input.info
        store = self.log.store
        seen = (i.tenant, i.workflow, i.version)
        if seen not in self._versions:
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
        if i.replay:  # ``convoy replay`` writes nothing
            return await next(input)
        def flush() -> None:
            """Append what the run holds with its next commit, and move the cursor there
            (both fenced on this engine's lease, in that commit)."""
            owner = self._owner()
            store.audit_append(i.tenant, entries.take(), wait=False,
                               fence=(i.session_id, owner))
            input.headers[AUDIT_CURSOR] = repr(entries.last_at)
            store.update_headers(i.session_id, owner, input.headers)

        entries = JournalEntries(i.session_id, _trace_id(input.headers),
                                 flush_every=self.flush_every, on_full=flush,
                                 mac=await self._mac(i.tenant, i.subject))
        cursor = _cursor(input.headers.get(AUDIT_CURSOR))
        if input.journal:  # what a run that was killed journaled after the cursor
            entries.recover(r for r in input.journal.values() if r.at > cursor)
        last = max((r.at for r in input.journal.values()), default=-math.inf)
        if cursor > last:
            # Ahead of every record (its record was dropped by a person's retry of an
            # escalated step; a retry copied its session's headers; an earlier Convoy
            # wrote a clock's time): this run's records, stamped after the journal's last,
            # may fall below it. Every record is audited, so the cursor moves back to the
            # last one, with this run's first commit.
            entries.last_at = last
            flush()
        input.journal_taps.append(entries)
        end = await next(input)
        if end.status == "interrupted" and (end.error or {}).get("type") == "LeaseLost":
            # Another engine took the session over: it appends these from the journal.
            return end
        bodies = entries.take()
        if end.status == "cancelled":
            bodies.append(self._cancelled(input, end))
        if bodies:
            # Both join the commit that records how the run ended (the records are
            # committed already, before this time): a run killed before it appends
            # nothing, and the run that resumes it appends its entries from the journal.
            # Fenced like that end: if another engine took the session over meanwhile
            # (this one's end is refused), nothing is appended, and that one appends them.
            store.audit_append(i.tenant, bodies, wait=False,
                               fence=(i.session_id, self._owner()))
            if end.status != "completed":  # a completed session never runs again
                input.headers[AUDIT_CURSOR] = repr(entries.last_at)
        return end

    def _cancelled(self, input: SessionInput, end: SessionEnd) -> bytes:
        """The entry of a session's end by a cancel: who cancelled it (as its error record
        says), the workflow as target."""
        i = input.info
        by = (end.error or {}).get("by")
        trace = _trace_id(input.headers)
        return AuditEvent(kind="session", status="cancelled", at=self.log.clock(),
                          session_id=i.session_id, actor=by if isinstance(by, str) else None,
                          target=i.workflow,
                          refs={} if trace is None else {"trace_id": trace}).encode()

    async def _mac(self, tenant: str, subject: str | None) -> bytes | None:
        """The key a data subject's session's hashes are keyed with (``None``: none)."""
        keys = self._engine.keys if self._engine is not None else None
        if subject is None or keys is None:
            return None
        key = await keys.load(tenant, subject, create=False)
        return None if key is None else key.mac

    def _owner(self) -> str:
        """The engine's owner id as it is now (an application may set it after opening)."""
        return self._engine.owner if self._engine is not None else ""

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        refs = {"task_id": input.task_id, "task_kind": input.kind}
        trace = _trace_id(input.headers)
        if trace is not None:
            refs["trace_id"] = trace
        kind: AuditKind = "approval" if input.kind == "approval" else "human_decision"
        mac = await self._mac(input.tenant, input.subject)
        event = AuditEvent(kind=kind, status=input.action, at=input.at,
                           session_id=input.session_id, step_key=input.step_key,
                           actor=input.by, target=input.task_id,
                           hashes={"decision": digest(dict(input.decision), mac)}, refs=refs)
        # Appended by the write of the decision, in its transaction: both land, or neither
        # (a write that fails, the task decided meanwhile, appends nothing).
        input.audit.append(event.encode())
        return await next(input)
