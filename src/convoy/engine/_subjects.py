"""The engine's side of data subjects: erase, export, and purge by age."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from convoy._errors import (
    AuditError,
    JournalError,
    StoreError,
    SubjectErased,
    UnknownSubject,
    UserError,
)
from convoy._text import plural
from convoy.engine._cancel import checked_by
from convoy.engine._tenancy import DEFAULT_TENANT, check_tenant
from convoy.privacy._subjects import (
    compact_after,
    erase_plan,
    erase_subject,
    export_subject,
    purge_older_than,
    retention_age,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from convoy.audit._event import AuditEvent
    from convoy.engine._engine import Engine
    from convoy.privacy._keys import KeyRing
    from convoy.stores._protocol import Erasure, SessionRow

log = logging.getLogger("convoy.audit")

class SubjectRights:
    """:meth:`erase`, :meth:`export` and :meth:`purge` of :class:`~convoy.Engine`."""

    def _keyring(self, what: str) -> KeyRing:
        keys = _engine(self).keys
        if keys is None:
            raise UserError(f"{what} needs the master key: set $CONVOY_MASTER_KEY_FILE to "
                            "the key file the subjects' keys were made with (in Python: "
                            "Engine(master_key=...))")
        return keys

    async def erase_plan(self, subject: str, *, tenant: str = DEFAULT_TENANT
                         ) -> tuple[list[SessionRow], bool]:
        """What :meth:`erase` would delete, writing nothing (the engine may be read-only):
        the sessions that name the subject, and whether its key is held. Raises as
        :meth:`erase` does for a subject that is unknown or was erased already."""
        check_tenant(tenant)
        _check_name(subject)
        keys = self._keyring("erasing a subject")
        engine = _engine(self)
        await engine.open()
        return await erase_plan(keys.store, keys, tenant, subject)

    async def erase(self, subject: str, *, tenant: str = DEFAULT_TENANT,
                    by: str | None = None) -> Erasure:
        """Erase a data subject: destroy its key, delete every session that names it (with
        its journal, signals and the shared-state versions it wrote), record the erasure
        (with a keyed fingerprint of the subject, not its name; in the audit log too, when
        the tenant has one, with ``by``, who erases, as its actor) and compact the store
        (SQLite: no deleted row is left in its files; PostgreSQL: ``VACUUM FULL`` of the
        tables and of the planner statistics' catalog, its WAL and backups aside; a role
        that may not rewrite that catalog is warned, once, of what an administrator must
        run).

        Raises:
            SubjectErased: the subject was erased already and nothing names it since (a
                repeated request: nothing is written; the error says which erasure, when).
            UserError: the subject is unknown, no master key is
                configured (or not the store's), or another engine is running one of the
                subject's sessions (nothing is deleted: erase again once it ended).
            StoreError: erased, but the store could not be compacted (another process
                held it): ``convoy db compact`` finishes it. Or the store failed before
                (sealing what a killed run left unsealed): nothing is erased.
            AuditError: erased, but the tenant's audit log (whose count was edited)
                could not take the erasure's entry: ``convoy audit verify`` says where.
        """
        check_tenant(tenant)
        _check_name(subject)
        _check_by(by)
        keys = self._keyring("erasing a subject")
        engine = _engine(self)
        await engine.open()
        # What stopped engine processes left unsealed, as a purge seals it (the subject's
        # sessions among them: the erasure deletes their journal), their markers removed;
        # none of it is erased, so nothing stops the erasure (a cutoff before any session).
        await _stopped_sealers_sealed(engine, -math.inf, None)
        await _sealed_first(engine, keys, tenant, subject)
        entry = await _entry_maker(engine, tenant, by)
        try:
            event = await erase_subject(keys.store, keys, tenant, subject, audit=entry)
        except SubjectErased:  # (a repeated request: an erasure killed before its
            await _owed_compaction(engine)  # compaction left the deleted rows in the files)
            raise
        for ic in engine.runtime.interceptors:  # cached answers given to the subject
            forget = getattr(ic, "forget_subject", None)
            if forget is not None:
                forget(tenant, subject)
        damaged = None if entry is not None else await _audit(engine, event, by)
        refused = None if damaged is None else AuditError(
            f"erased (erasure #{event.seq}), but the erasure could not be appended to the "
            f"audit log: {damaged}")
        await compact_after(engine.store, f"erased subject {subject!r} of tenant {tenant!r} "
                            f"(erasure #{event.seq}: {plural(event.sessions, 'session')}, "
                            f"{plural(event.state_versions, 'state version')}, key "
                            f"{'destroyed' if event.key else 'absent'})", damaged)
        if refused is not None:  # (compacted first: no deleted row is left behind it)
            raise refused
        return event

    async def export(self, subject: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
        """Everything the store holds about a data subject of ``tenant``, as JSON data
        (the right of access): sessions with inputs, outputs and every step, the
        shared-state versions they wrote, and ``copies``: what other sessions of the
        tenant hold of the subject's data. A value that also holds another subject's data
        is withheld (``{"sealed": true, "withheld": ...}``).

        Raises:
            UserError: the subject is unknown (or erased), or no master key is configured.
        """
        check_tenant(tenant)
        _check_name(subject)
        keys = self._keyring("exporting a subject")
        engine = _engine(self)
        await engine.open()
        return await export_subject(engine.store, keys, tenant, subject)

    async def purge(self, older_than: float, *, tenant: str | None = None,
                    by: str | None = None) -> list[Erasure]:
        """Delete every finished session (of ``tenant``; ``None``: of every tenant) that
        finished more than ``older_than`` seconds ago (by the engine's clock), as
        :meth:`erase` does; one recorded :class:`~convoy.stores.Erasure` per tenant and
        batch (in the audit log, where the tenant has one, with ``by``, who purges, as
        its actor). Subject keys are kept. The audit entries of runs that stopped engine
        processes had not sealed are sealed first, from the journal the purge deletes.

        Raises:
            UserError: some of those are data subjects' sessions, which need the master
                key this engine has not (nothing is purged)."""
        if tenant is not None:
            check_tenant(tenant)
        _check_by(by)
        older_than = retention_age(older_than)  # (before anything is sealed)
        engine = _engine(self)
        await engine.open()
        now = engine.clock()  # (one cutoff, for what must be sealed and what is purged)
        await _stopped_sealers_sealed(engine, now - older_than, tenant)
        inline: set[str] = set()  # (tenants whose purges appended their entries)

        async def entry_of(t: str) -> Callable[[Erasure], bytes] | None:
            entry = await _entry_maker(engine, t, by)
            if entry is not None:
                inline.add(t)
            return entry

        events = await purge_older_than(engine.store, older_than, now, tenant=tenant,
                                        audit=entry_of)
        damaged: list[AuditError] = []
        for event in events:  # (each tenant's entry, whatever another tenant's log holds)
            if event.tenant in inline:
                continue
            if (error := await _audit(engine, event, by)) is not None:
                damaged.append(error)
        logs = AuditError("; and ".join(map(str, damaged))) if damaged else None
        if not events:
            await _owed_compaction(engine)  # (of an erasure or purge killed before it)
        else:
            await compact_after(engine.store, f"purged "
                                f"{plural(sum(e.sessions for e in events), 'session')} by age",
                                logs)
        if logs is not None:  # (compacted first: no deleted row is left behind it)
            raise AuditError(f"purged, but {plural(len(damaged), 'purge')} could not be "
                             f"appended to {'its' if len(damaged) == 1 else 'their'} audit "
                             f"log: {logs}")
        return events


async def _owed_compaction(engine: Engine) -> None:
    """Compact the store if an erasure or purge committed and its process was killed (or
    its compaction refused) before it compacted: the rows it deleted are still in the
    store's files (SQLite's free pages and WAL: a subject's wrapped key, the plain data of
    sessions without a subject) until a compaction (:data:`~convoy.stores._protocol.
    COMPACTION_OWED` says so)."""
    from convoy.stores._protocol import COMPACTION_OWED

    owed = await engine.store.kv_get(*COMPACTION_OWED)
    if owed is not None:
        await compact_after(engine.store, f"nothing more was erased or purged (erasure #{owed} "
                            "was, and its compaction was left undone)")


def _check_by(by: object) -> None:
    """Who erases or purges, as the audit entry's actor: a name as cancel's ``by=`` is
    (``None``: nobody named)."""
    if by is not None and not isinstance(by, str):
        raise UserError(f"by= names who erases or purges (a string, recorded as the audit "
                        f"entry's actor), got {by!r}")
    if by is not None:
        checked_by(by, "erases or purges")


def _check_name(subject: object) -> None:
    """A subject to erase or export is named by a string (the name sessions gave it): any
    other value failed deep inside with Python's ``TypeError``."""
    if not isinstance(subject, str):
        raise UserError(f"a subject is a string (the name sessions gave it), got "
                        f"{type(subject).__name__} {subject!r}")


async def _audited(engine: Engine, tenant: str) -> bool:
    """Whether ``tenant`` has an audit log, or this engine's runs append to one."""
    from convoy.audit._interceptor import AuditInterceptor

    return any(isinstance(ic, AuditInterceptor) for ic in engine.runtime.interceptors) \
        or await engine.store.audit_size(tenant) > 0


async def _sealed_first(engine: Engine, keys: KeyRing, tenant: str, subject: str) -> None:
    """Before an erasure deletes a subject's sessions, seal into the tenant's audit log the
    records of theirs it does not hold yet: those of a run killed before its seal, which
    a resume or the next engine's recovery would have sealed from the journal the erasure
    deletes (hashes only, keyed with the subject's key: the entries say what was done, not
    what it held). A store error stops the erasure, with nothing erased. (The erasure
    reads its plan again after this, which may take a while: a session of the subject
    made meanwhile is erased too.)"""
    from convoy.audit._interceptor import AuditInterceptor
    from convoy.audit._sealer import Sealer, subject_macs

    try:
        rows, _ = await erase_plan(keys.store, keys, tenant, subject)
    except (UnknownSubject, SubjectErased):
        return  # (the erasure says so)
    if not rows or not await _audited(engine, tenant):
        return
    sealer = None
    said = ""  # (a damaged log's warning, said once)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor):
            try:
                await ic.sealed()  # (what its runs queued goes first)
            except AuditError as e:  # (a damaged log, maybe another tenant's: it does
                said = str(e)  # not hold up an erasure)
                log.warning("audit: %s", said)
            sealer = ic.sealer
    if sealer is None:
        sealer = Sealer(engine.store, clock=engine.clock, mac_of=subject_macs(keys))
    for row in rows:
        try:
            await sealer.seal_row(row)
        except JournalError as e:  # (its own damage: no seal reads it better; it is
            # erased all the same)
            log.warning("audit: session %s: its records cannot be sealed before its "
                        "erasure: %s", row.id, e)
        except AuditError as e:  # (the log's damage: every session would meet it)
            if str(e) != said:
                log.warning("audit: the records of %s cannot be sealed before the "
                            "erasure: %s", plural(len(rows), "session"), e)
            return


async def _stopped_sealers_sealed(engine: Engine, cutoff: float,
                                  tenant: str | None) -> None:
    """Before a purge deletes sessions by age, seal what engine processes that stopped
    (killed, crashed, their machine gone) had queued and not sealed, as ``convoy audit
    seal`` does and an engine with the audit interceptor when it opens the store: the
    purge deletes the journal those entries are sealed from. What this engine's own runs
    queued goes first. Of the sessions the purge deletes (of ``tenant``, ``None``: any,
    finished before ``cutoff``), data subjects' ones left unsealed that need the master key,
    which this engine has not, stop the purge before it deletes anything
    (:class:`UserError`), and so do ones whose seal the store refused for now (a lock held
    too long, a lost connection: :class:`StoreError`); others (kept: unfinished, younger,
    another tenant's) are warned about and left for a later seal (an erasure calls it
    with a ``cutoff`` before any session: it deletes none of them, so only a store that
    fails stops it). A seal a damaged log
    refuses does not hold the purge up, as it does not hold up an erasure (each is warned
    about)."""
    from convoy.audit._interceptor import AuditInterceptor
    from convoy.audit._sealer import Sealer, dead_sealers, subject_macs
    from convoy.stores._protocol import UNFINISHED

    alive: set[str] = set()  # (this engine's own sealers: alive whatever the clock says)
    for ic in engine.runtime.interceptors:
        if isinstance(ic, AuditInterceptor) and ic.sealer is not None:
            alive.add(ic.sealer.id)
            try:
                await ic.sealed()
            except AuditError as e:  # (a damaged log: said, and the purge goes on)
                log.warning("audit: %s", e)
    if all(s in alive for s, _ in await dead_sealers(engine.store, engine.clock())):
        return  # (one read of the sealers' markers: the common case)
    sealer = Sealer(engine.store, clock=engine.clock, mac_of=subject_macs(engine.keys))
    said: list[tuple[str, tuple[object, ...]]] = []  # (said only if the purge goes on:
    sealer.warn = lambda msg, *args: said.append((msg, args))  # else its error says it)
    await sealer.recover_dead(alive=alive)
    doomed = [(row, e) for row, e in sealer.left.values()
              if (tenant is None or row.tenant == tenant) and row.status not in UNFINISHED
              and row.finished is not None and row.finished < cutoff]
    keyless = [row for row, e in doomed if e is None]
    if keyless:
        raise UserError(
            f"nothing was purged: {plural(len(keyless), 'data subject session')} that a "
            "stopped engine process had not sealed into the audit log must be sealed "
            "first (a purge deletes the journal they are sealed from), under the master "
            "key: set $CONVOY_MASTER_KEY_FILE (or $CONVOY_MASTER_KEY; in Python: "
            "Engine(master_key=...)) and purge again")
    busy = [e for _, e in doomed if isinstance(e, StoreError) and e.transient]
    if busy:
        raise StoreError(
            f"nothing was purged: the store did not take the seal of "
            f"{plural(len(busy), 'session')} that a stopped engine process had not sealed "
            f"into the audit log (a purge deletes the journal they are sealed from): "
            f"{busy[0]}; purge again once the store answers", transient=True) from busy[0]
    for msg, args in said:
        log.warning(msg, *args)


async def _entry_maker(engine: Engine, tenant: str, by: str | None
                       ) -> Callable[[Erasure], bytes] | None:
    """What makes the audit entry of an erasure or purge of ``tenant``, for the store to
    append in the purge's own transaction (a process killed after the purge committed left
    an erasure the log never heard of, and a repeated request is answered "erased
    already"); ``None`` if the tenant has no audit log, or one whose count was edited
    (:func:`~convoy.audit._sealer.past_count`: it refuses every append, and would refuse
    the erasure with it; :func:`_audit` appends after the purge and reports the damage)."""
    from convoy.audit._sealer import past_count

    if not await _audited(engine, tenant) or \
            await past_count(engine.store, tenant) is not None:
        return None

    def entry(event: Erasure) -> bytes:
        return _erasure_event(event, by).encode()

    return entry


def _erasure_event(event: Erasure, by: str | None) -> AuditEvent:
    """The audit entry of an erasure or purge (references, never the subject's name: the
    keyed fingerprint and the counts)."""
    from convoy.audit._event import AuditEvent

    refs = {"reason": event.reason, "erasure": str(event.seq), "sessions": str(event.sessions),
            "state_versions": str(event.state_versions)}
    if event.subject_ref is not None:
        refs["subject_ref"] = event.subject_ref
    return AuditEvent(kind="erasure", status="ok", at=event.at, actor=by, refs=refs)


async def _audit(engine: Engine, event: Erasure, by: str | None = None
                 ) -> AuditError | None:
    """Append the erasure to the tenant's audit log when the tenant has one (entries hold
    references, never the subject's name: the keyed fingerprint and the counts). Nothing
    is removed from the log, so it still verifies. A log whose count was edited refuses
    it: that damage (:func:`~convoy.audit._sealer.past_count`) is returned, for the
    caller to raise once the store is compacted."""
    from convoy.audit._sealer import past_count

    store = engine.store
    if not await _audited(engine, event.tenant):
        return None
    try:
        await store.audit_append(event.tenant, [_erasure_event(event, by).encode()])
    except StoreError as e:
        damaged = None if e.transient else await past_count(store, event.tenant)
        if damaged is None:
            raise
        return damaged
    return None


def _engine(obj: SubjectRights) -> Engine:
    from convoy.engine._engine import Engine

    assert isinstance(obj, Engine)
    return obj


__all__ = ["SubjectRights"]
