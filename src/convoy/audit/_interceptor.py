"""The ``audit`` interceptor: one audit entry for every step a session takes.

- Every step a session journals has its entry, made from its journal record
  (:mod:`convoy.audit._journal` says which entry each record makes): a model call
  (the hashes of its prompt and output, what the agent chose: an answer, a tool, a
  handoff), a tool call (its arguments' hash and its status; refused: ``policy_refusal``,
  or ``approval`` ``required``), a handoff, a state read or write, a ``ctx.step``, a signal
  received. The interceptor hooks no step: it adds a journal tap to each session run (a
  session hook), which keeps the records the run writes (as tuples of their fields,
  :data:`~convoy.audit._journal.Kept`); when the run ends they are
  queued for the engine's sealer (:mod:`convoy.audit._sealer`), which makes their entries
  and appends them in batches, in commits of its own,
  moving the session's audit cursor (a compare-and-set: sealed once, whoever seals). A run
  that is killed queues nothing: the run that resumes the session makes the entries of
  the records after the cursor first. Steps replayed from the journal are not written
  again, so a resumed session appends nothing twice.
- A person's decision on a human task, when it is made (the ``human_decision`` hook, run
  by the inbox around the write, whether the session ever resumes or not):
  ``human_decision`` (``approval`` for a tool approval) with the action as status, who
  decided as actor, the task id, its kind and the hash of the decision; a decision whose
  write fails (the task was decided meanwhile) appends nothing.
- A new workflow version seen for a tenant: ``config_change``.
- A session that ends cancelled (``engine.cancel``, ``convoy cancel``), when its run
  ends: ``session`` with status ``cancelled``, who cancelled it as actor (the error
  record's ``by``), the workflow as target.

Each entry carries the session id and step key (a decision: the task's), and the id of the
session's trace, the one ``convoy trace`` shows (live tracing's, kept in the session's
headers; else its caller's, from its ``traceparent`` header; else its own, derived from its
id).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from convoy._errors import StoreError, UserError
from convoy._trace_context import trace_id_of
from convoy.audit._event import AuditEvent, AuditKind, digest
from convoy.audit._journal import JournalEntries, Kept, name_redactor, time_text
from convoy.audit._log import AuditLog
from convoy.audit._sealer import (
    AUDIT_CURSOR,
    IN_STORE,
    Queued,
    Sealer,
    cursor_time,
    past_count,
    subject_macs,
)
from convoy.interceptors._base import (
    DecisionInput,
    Interceptor,
    Next,
    SessionEnd,
    SessionInput,
)
from convoy.stores._protocol import AuditSeal
from convoy.stores._rows import DamagedRow

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.hitl._task import HumanTask

_CONFIG_NAMESPACE = "convoy.audit.config"
#: How many times a workflow's audited version is read and moved before a session gives up
#: (other engines, running other versions, moved it each time).
_VERSION_TRIES = 5
log = logging.getLogger("convoy.audit")


class AuditInterceptor(Interceptor):
    """Appends an audit entry for every step (see the module docstring).

    Args:
        key_path: the Ed25519 key file that signs checkpoints (created ``0600`` on first
            use); only :attr:`log` uses it, appending needs no key.
        flush_every: a run that has held this many records queues them for the sealer
            instead of at its end, and the sealer seals as soon as this many wait: a long
            run's memory and the log's lag behind it stay bounded.
        seal_every: the longest the sealer waits before it seals what runs queued (in
            seconds): how far the log may lag the journal while the engine runs.
    """

    stage = "audit"

    def __init__(self, *, key_path: str | Path | None = None,
                 flush_every: int = 1024, seal_every: float = 0.25) -> None:
        if flush_every < 1:
            raise UserError(f"AuditInterceptor: flush_every must be >= 1, got {flush_every}")
        if not (isinstance(seal_every, (int, float)) and math.isfinite(seal_every)
                and seal_every > 0):
            raise UserError("AuditInterceptor: seal_every must be a number of seconds > 0, "
                            f"got {seal_every!r}")
        self.key_path = key_path
        self.flush_every = flush_every
        self.seal_every = float(seal_every)
        self._sealer: Sealer | None = None
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
        name_redactor()  # (the names entries hold are masked: refused without the extra)
        self._engine = engine  # its key ring is read per run (a subject's hash key)
        self._sealer = Sealer(engine.store, clock=engine.clock, mac_of=self._recovered_mac,
                              interval=self.seal_every,
                              batch=self.flush_every)
        self._log = AuditLog(engine.store, key_path=self.key_path, clock=engine.clock,
                             before_read=self._sealer.flush)
        await self._sealer.start()

    async def close(self) -> None:
        if self._sealer is not None:
            await self._sealer.close()
            self._sealer = None

    @property
    def sealer(self) -> Sealer | None:
        """What seals this engine's runs' entries (``None`` before the engine opens)."""
        return self._sealer

    async def sealed(self) -> None:
        """Seal every entry this engine's runs have queued (the log lags them by up to
        ``seal_every`` seconds otherwise)."""
        if self._sealer is not None:
            await self._sealer.flush()

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        i = input.info
        store = self.log.store
        sealer = self._sealer
        assert sealer is not None
        seen = (i.tenant, i.workflow, i.version)
        if seen not in self._versions:
            # Claimed before the store is asked: sessions that start together while it
            # answers append one change, not one each.
            self._versions.add(seen)
            try:
                await self._version_seen(input)
            except BaseException:
                self._versions.discard(seen)  # (the next session asks again)
                raise
        if i.replay:  # ``convoy replay`` writes nothing
            return await next(input)
        try:
            mac = None if i.subject is None else await self._mac(i.tenant, i.subject)
        except DamagedRow as e:
            # One subject's key that does not open (edited): the session's damage, not
            # the engine's (which escalates a session it cannot read). Its run goes on
            # unaudited; its records stay past its cursor, unsealed until the key is
            # repaired and the session runs again (its escalation answered 'retry'),
            # whose run seals them from the journal.
            log.warning("audit: session %s: %s: this run is not audited; its records are "
                        "sealed from the journal by the session's next run, once the key is "
                        "repaired", i.session_id, e)
            return await next(input)
        tap = _RunTap(sealer, i.tenant, i.session_id, trace_id_of(input.headers, i.session_id),
                      flush_every=self.flush_every, mac=mac)
        cursor = -math.inf
        header = input.headers.get(AUDIT_CURSOR)
        journal = input.journal
        if journal or header is not None:  # an earlier run's records, sealed or not
            # (queued here and not sealed yet: this run's seal goes after that one's)
            tap.cursor_text = sealer.queued_cursor(i.session_id) or \
                await store.audit_cursor(i.session_id)
            if tap.cursor_text is not None:
                cursor = cursor_time(tap.cursor_text)
            elif header is not None and header != IN_STORE:
                cursor = cursor_time(header)  # an earlier Convoy's cursor (or a retry's copy)
        if journal:
            tap.recover(r for r in journal.values() if r.at > cursor)
        last = max((r.at for r in journal.values()), default=-math.inf) if journal else \
            -math.inf
        if cursor > last:
            # Ahead of every record (its record was dropped by a person's retry of an
            # escalated step; a retry copied its session's headers; an earlier Convoy
            # wrote a clock's time): this run's records, stamped after the journal's last,
            # may fall below it. Every record is audited, so the cursor moves back to the
            # last one.
            tap.last_at = last
            tap.queue(tap.take_records(), repr(last))
        input.journal_taps.append(tap.__call__)  # (a bound method: called without
        # the lookup of ``__call__`` a call of the tap itself makes, on every record)
        end = await next(input)
        if end.status == "interrupted" and (end.error or {}).get("type") == "LeaseLost":
            # Another engine took the session over: it seals these from the journal.
            return end
        records = tap.take_records()
        ended = (self._cancelled(input, end),) if end.status == "cancelled" else ()
        after = None if tap.last_at is None else time_text(tap.last_at)
        if records or ended or (after is not None and after != tap.cursor_text):
            # The records are committed already (a tap sees a record once written): the
            # sealer makes and appends their entries with its next batch, in a commit of
            # its own.
            tap.queue(records, after, ended)
        if end.status != "completed":  # it runs again: its next run reads the cursor
            input.headers[AUDIT_CURSOR] = IN_STORE
        return end

    async def _version_seen(self, input: SessionInput) -> None:
        """Append a ``config_change`` if the session's workflow version is not the one its
        tenant's log last recorded: in the transaction that records the new one, and only
        if the recorded one is still what was read (a compare-and-set), so engines that
        see a new version at once append it once."""
        i = input.info
        store = self.log.store
        key = f"{i.tenant}/{i.workflow}"
        for _ in range(_VERSION_TRIES):
            before = await store.kv_get(_CONFIG_NAMESPACE, key)
            if before == i.version:
                return
            event = AuditEvent(kind="config_change", status="ok", at=self.log.clock(),
                               session_id=i.session_id, actor=i.workflow, target="workflow",
                               hashes={"config": digest(i.version)},
                               refs={"version": i.version,
                                     "trace_id": trace_id_of(input.headers, i.session_id),
                                     **({} if before is None else {"previous": before})})
            try:
                [moved] = await store.audit_seal([AuditSeal(
                    namespace=_CONFIG_NAMESPACE, tenant=i.tenant, session_id=key,
                    before=before, after=i.version, bodies=[event.encode()])])
            except StoreError as e:
                # (a log whose count was lowered by hand refuses every append, for good:
                # said as its damage, as its seals are, and the session runs on)
                damaged = None if e.transient else await past_count(store, i.tenant)
                if damaged is None:
                    raise
                log.warning("audit: the config_change of workflow %r version %r was not "
                            "appended: %s", i.workflow, i.version, damaged)
                self._versions.discard((i.tenant, i.workflow, i.version))
                return
            if moved:
                return
        # (engines running other versions moved it every time: the log has their changes,
        # and this version's is appended by the next session that finds it changed)
        log.warning("audit: the version of workflow %r of tenant %r changed %d times while "
                    "it was read; its config_change for %r is left to a later session",
                    i.workflow, i.tenant, _VERSION_TRIES, i.version)
        self._versions.discard((i.tenant, i.workflow, i.version))

    def _cancelled(self, input: SessionInput, end: SessionEnd) -> bytes:
        """The entry of a session's end by a cancel: who cancelled it (as its error record
        says), the workflow as target."""
        i = input.info
        by = (end.error or {}).get("by")
        return AuditEvent(kind="session", status="cancelled", at=self.log.clock(),
                          session_id=i.session_id, actor=by if isinstance(by, str) else None,
                          target=i.workflow,
                          refs={"trace_id": trace_id_of(input.headers, i.session_id)}).encode()

    async def _mac(self, tenant: str, subject: str | None) -> bytes | None:
        """The key a data subject's session's hashes are keyed with (``None``: none)."""
        keys = self._engine.keys if self._engine is not None else None
        if subject is None or keys is None:
            return None
        key = await keys.load(tenant, subject, create=False)
        return None if key is None else key.mac

    async def _recovered_mac(self, tenant: str, subject: str | None) -> bytes | None:
        """:meth:`_mac` for a dead sealer's session, which this engine did not run: one of
        a data subject needs the master key (its records are sealed under it)."""
        keys = self._engine.keys if self._engine is not None else None
        return await subject_macs(keys)(tenant, subject)

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        refs = {"task_id": input.task_id, "task_kind": input.kind,
                "trace_id": trace_id_of(input.headers, input.session_id)}
        kind: AuditKind = "approval" if input.kind == "approval" else "human_decision"
        mac = await self._mac(input.tenant, input.subject)
        event = AuditEvent(kind=kind, status=input.action, at=input.at,
                           session_id=input.session_id, step_key=input.step_key,
                           actor=input.by, target=input.task_id,
                           hashes={"decision": digest(dict(input.decision), mac)}, refs=refs)
        # What this engine's runs queued goes first (the step that asked, before the
        # answer: decisions come at a person's pace, a seal costs them nothing).
        await self.sealed()
        # Appended by the write of the decision, in its transaction: both land, or neither
        # (a write that fails, the task decided meanwhile, appends nothing).
        input.audit.append(event.encode())
        return await next(input)


class _RunTap(JournalEntries):
    """The journal tap of one audited run: its records (:class:`JournalEntries`), queued
    for the sealer (which makes their entries) with the move of the session's cursor,
    chained: a run's seals move it one after the other from :attr:`cursor_text`, the
    session's sealed cursor as the run found it."""

    __slots__ = ("cursor_text", "sealer", "tenant")

    def __init__(self, sealer: Sealer, tenant: str, session_id: str, trace_id: str | None,
                 *, flush_every: int, mac: bytes | None) -> None:
        super().__init__(session_id, trace_id, flush_every=flush_every, mac=mac)
        self.sealer = sealer
        self.tenant = tenant
        self.cursor_text: str | None = None

    def full(self) -> None:
        self.queue(self.take_records(), repr(self.last_at))

    def queue(self, records: list[Kept], after: str | None,
              ended: tuple[bytes, ...] = ()) -> None:
        """Queue the entries of ``records`` (and ``ended``) with the move of the cursor to
        ``after`` (the ``repr`` of a record's time; ``None``: where it is)."""
        before = self.cursor_text
        if after is None:
            after = before or repr(-math.inf)
        self.sealer.submit(Queued(tenant=self.tenant, session_id=self.session_id,
                                  before=before, after=after, records=records,
                                  trace_id=self.trace_id, mac=self.mac, ended=ended,
                                  tail=self._tail))
        self.cursor_text = after
