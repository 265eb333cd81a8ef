"""A store that seals the personal data of data subjects' sessions.

The engine writes and reads through this wrapper when a master key is configured; nothing
else changes. For a session that names a subject, the values that can hold personal data
are sealed (:mod:`convoy.privacy._seal`) on their way into the store and opened on their
way out: the session's input, output and error, the result of every journaled step (model
outputs, tool results, human answers, errors), and every shared-state version it writes.
Sessions without a subject pass through untouched (one dictionary lookup per write).

A session that reads a subject's shared state (any session: without a subject, or of
another one) holds that subject's data from then on: what it journals after the read (the
read itself, a lost compare-and-set's current value, the values it writes, its output and
error) is sealed again under that subject's key, outermost, so erasing the subject leaves
it unreadable. The store learns who reads from :data:`~convoy.state._reader.STATE_READER`;
a resumed session learns it again from its journal (a record it opens with another
subject's key). Only this process's sessions are tracked, and only while they run.

The spans the embedded trace store keeps for such a session (the chunks tracing writes with
the commit that ends each run) are sealed alike, under the same keys; a chunk written for a
session that is not running here (a person's decision on it) is sealed under the keys found
in its row and journal.

A value whose subject key was destroyed (an erased subject) stays sealed when read.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from convoy._errors import StoreError
from convoy.privacy._keys import KeyRing, SubjectKey
from convoy.privacy._seal import (
    is_sealed,
    seal,
    session_aad,
    signal_aad,
    spans_aad,
    state_aad,
    step_aad,
)
from convoy.state._reader import STATE_READER
from convoy.stores._protocol import (
    SEALED_SINCE,
    SPANS_NAMESPACE,
    NewSession,
    SessionFilter,
    SessionOutcome,
    SessionRow,
    Signal,
    StateEntry,
    StateWrite,
    StateWriteResult,
    StepRecord,
    Store,
    sealed_outer_labels,
)
from convoy.stores._rows import DamagedRow, LeftOut
from convoy.stores._subjects_sql import SubjectKeyGone

_OWN = frozenset({"inner", "keys", "_live", "_read", "_running", "_unopened",
                  "_ended_readers"})
#: How many ended sessions that read another subject's data are remembered as such
#: (:meth:`SealingStore.read_personal_data`).
ENDED_READERS = 4096
#: How many times a creation of a subject's sessions is sealed again under the subject's
#: key, as the store holds it now, after another process erased it as they started.
_KEY_ATTEMPTS = 5
#: How many times a signal is sealed again for a session that read another data subject's
#: data while it was being sealed, before the send is given up (a store error).
_SEAL_TRIES = 10


class SealingStore:
    """Wraps a :class:`~convoy.stores.Store`; every method it does not define is the inner
    store's own (so it is a ``Store`` wherever one is expected: see :func:`sealing`)."""

    def __init__(self, inner: Store, keys: KeyRing) -> None:
        self.inner = inner
        self.keys = keys
        # Sessions of a subject this process writes for: id -> (tenant, subject, key).
        self._live: dict[str, tuple[str, str, SubjectKey]] = {}
        # Sessions that read other subjects' data: id -> (tenant, {subject: key}).
        self._read: dict[str, tuple[str, dict[str, SubjectKey]]] = {}
        # Sessions whose run here read another subject's data and has ended since (the
        # last :data:`ENDED_READERS` of them): what is said of how it ended may quote it.
        self._ended_readers: OrderedDict[str, None] = OrderedDict()
        # Sessions whose run this process holds (with a subject or not): what is written
        # for one of them that is in neither map above holds nobody's personal data.
        self._running: set[str] = set()
        # Claimed rows returned unopened (a damaged sealed value): id -> why.
        self._unopened: dict[str, DamagedRow] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings of the store (its clock, timeouts) are the inner store's.
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    # -- sessions ----------------------------------------------------------------------

    def _seal_new(self, s: NewSession, key: SubjectKey) -> NewSession:
        assert s.subject is not None
        self._live[s.id] = (s.tenant, s.subject, key)
        return replace(s, input=seal(key, session_aad(s.tenant, s.id, "input"),
                                     s.input))

    def create_session(self, session: NewSession, *, owner: str | None,
                       lease_s: float) -> asyncio.Future[None]:
        if owner is not None:
            self._running.add(session.id)
        if session.subject is not None:
            session = self._seal_new(session, self.keys.cached(session.tenant,
                                                                session.subject))
        return self.inner.create_session(session, owner=owner, lease_s=lease_s)

    async def create_sessions(self, sessions: Sequence[NewSession], *,
                              owner: str | None = None, lease_s: float = 0.0) -> int:
        """Sealed under their subjects' keys, created only while the store holds those
        keys: a subject another process erased after its key was read here gets a new key
        and the sessions are sealed again (a few times at most: each needs another
        erasure of it as they start), never left naming an erased subject under its
        destroyed key."""
        for attempt in range(_KEY_ATTEMPTS):
            out = []
            for s in sessions:
                if s.subject is None:
                    out.append(s)
                    continue
                key = await self.keys.load(s.tenant, s.subject, create=True, fresh=True)
                assert key is not None
                out.append(replace(self._seal_new(s, key), subject_key=key.wrapped or None))
            try:
                return await self.inner.create_sessions(out, owner=owner, lease_s=lease_s)
            except SubjectKeyGone:
                if attempt == _KEY_ATTEMPTS - 1:
                    raise
                for s in sessions:  # (read again: erased, perhaps made again since)
                    if s.subject is not None:
                        self.keys.forget(s.tenant, s.subject)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open_row(self, row: SessionRow | None, *, track: bool = False
                        ) -> SessionRow | None:
        if row is None or (row.subject is None and not is_sealed(row.output)
                           and not is_sealed(row.error)):
            return row
        t, sid = row.tenant, row.id
        if row.subject is not None:
            key = await self.keys.load(row.tenant, row.subject, create=False)
            if key is None:
                return row
            if track:
                self._live[row.id] = (row.tenant, row.subject, key)
        # A row read to be acted on (``track``: it may be finished next, its error or
        # output built from what is read here) learns whose data it holds, so what is
        # written from it is sealed under their keys again.
        reader, own = (sid, row.subject) if track else (None, None)
        return replace(
            row, input=await self._open_text(t, session_aad(t, sid, "input"), row.input,
                                             reader=reader, own=own) or "",
            output=await self._open_text(t, session_aad(t, sid, "output"), row.output,
                                         reader=reader, own=own),
            error=await self._open_text(t, session_aad(t, sid, "error"), row.error,
                                        reader=reader, own=own))

    async def _open_text(self, tenant: str, aad: str, text: str | None, *,
                         reader: str | None = None, own: str | None = None) -> str | None:
        """``text`` opened layer by layer, each with the key of the subject it names (it
        stays sealed from a layer whose key was destroyed). A layer of another subject than
        ``own`` makes ``reader`` a reader of that subject's data."""
        layers, opened = await self.keys.peel(tenant, aad, text)
        if reader is not None:
            for subject, key in layers:
                if key is not None and subject != own:
                    self._reads(reader, tenant, subject, key)
        return opened

    def holds_personal_data(self, session_id: str) -> bool:
        """Whether the run of ``session_id`` here holds a data subject's data: its own
        subject's, or what it read of another's (shared state, a resumed journal)."""
        return session_id in self._live or session_id in self._read

    def read_personal_data(self, session_id: str) -> bool:
        """:meth:`holds_personal_data`, or the last run of ``session_id`` here, ended since,
        read another subject's data: an error raised as it ended may quote it (a session
        hook's, after ``next``)."""
        return self.holds_personal_data(session_id) or session_id in self._ended_readers

    def _drop_read(self, session_id: str) -> None:
        """The run of ``session_id`` here has ended: forget what it read (a later run
        learns it again from the journal), remembering that it read."""
        if self._read.pop(session_id, None) is None:
            return
        ended = self._ended_readers
        ended[session_id] = None
        ended.move_to_end(session_id)
        if len(ended) > ENDED_READERS:
            ended.popitem(last=False)

    def _reads(self, session_id: str, tenant: str, subject: str, key: SubjectKey) -> None:
        """``session_id`` read ``subject``'s data (nothing new if it is its own)."""
        live = self._live.get(session_id)
        if live is not None and live[1] == subject:
            return
        read = self._read.get(session_id)
        if read is None:
            self._read[session_id] = (tenant, {subject: key})
        else:
            read[1][subject] = key

    def _seal_read(self, session_id: str, aad: str, text: str) -> str:
        """``text`` sealed again under the key of each subject whose data the session read
        (outermost), if it read any."""
        read = self._read.get(session_id)
        if read is not None:
            for key in read[1].values():
                text = seal(key, aad, text)
        return text

    async def _open_rows(self, rows: Sequence[SessionRow], *,
                         left_out: list[LeftOut] | None = None, as_stored: bool = False,
                         track: bool = False) -> list[SessionRow]:
        """The rows opened (``track``: rows claimed to run, see :meth:`_open_row`). One
        with a damaged sealed value is, with ``left_out``, left out and added to it (a
        listing shows the rest), as the inner store does a damaged row; with
        ``as_stored``, kept as stored (sessions to run: a claimed one's damage is kept for
        :meth:`unopened`); otherwise its error goes on."""
        opened = []
        for r in rows:
            try:
                opened.append(cast(SessionRow, await self._open_row(r, track=track)))
            except DamagedRow as e:
                if left_out is not None:
                    left_out.append(LeftOut(row=e.what, problem=e.problem))
                elif as_stored:
                    opened.append(r)
                    if track:
                        self._unopened[r.id] = e
                else:
                    raise
        return opened

    async def claim(self, session_id: str, owner: str, lease_s: float, *,
                    tenant: str | None = None, waiting: bool = False) -> SessionRow | None:
        row = await (self.inner.claim(session_id, owner, lease_s, tenant=tenant, waiting=True)
                     if waiting else self.inner.claim(session_id, owner, lease_s, tenant=tenant))
        if row is None:
            return None
        self._running.add(row.id)
        return (await self._opened_claims([row], owner))[0]

    async def claim_runnable(self, owner: str, lease_s: float, *,
                             workflows: Mapping[str, str], limit: int,
                             tenant: str | None = None) -> list[SessionRow]:
        rows = await self.inner.claim_runnable(owner, lease_s, workflows=workflows,
                                               limit=limit, tenant=tenant)
        self._running.update(r.id for r in rows)
        return await self._opened_claims(rows, owner)

    async def _opened_claims(self, rows: Sequence[SessionRow], owner: str
                             ) -> list[SessionRow]:
        """Claimed rows, opened. A row with a damaged sealed value is returned as stored,
        and :meth:`unopened` says why (the engine escalates that session and runs the
        others). If the rows cannot be opened otherwise (a master key that does not open
        their subject's key), they are released again before the error goes on: they are
        not left held by this engine until its lease lapses."""
        try:
            return await self._open_rows(rows, as_stored=True, track=True)
        except BaseException:
            for r in rows:
                await self.release(r.id, owner)  # (forgets what ``unopened`` would say)
            raise

    def unopened(self, session_id: str) -> DamagedRow | None:
        """Why the row of ``session_id`` that this engine claimed is returned as stored
        (once: the answer is forgotten), or ``None`` if it was opened."""
        return self._unopened.pop(session_id, None)

    async def get_session(self, session_id: str, *,
                          tenant: str | None = None) -> SessionRow | None:
        # Tracked: a session read by id may be finished next (cancelled, an escalation
        # answered), and its outcome must be sealed too.
        return await self._open_row(await self.inner.get_session(session_id, tenant=tenant),
                                    track=True)

    async def get_sessions(self, ids: Sequence[str], *, tenant: str | None = None,
                           left_out: list[LeftOut] | None = None) -> dict[str, SessionRow]:
        rows = await self.inner.get_sessions(ids, tenant=tenant, left_out=left_out)
        return {r.id: r for r in await self._open_rows(list(rows.values()),
                                                       left_out=left_out)}

    async def list_sessions(self, where: SessionFilter, *,
                            left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        return await self._open_rows(await self.inner.list_sessions(where, left_out=left_out),
                                     left_out=left_out)

    async def unfinished(self, *, tenant: str | None = None,
                         left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        return await self._open_rows(await self.inner.unfinished(tenant=tenant,
                                                                 left_out=left_out),
                                     left_out=left_out, as_stored=left_out is None)

    async def subject_sessions(self, tenant: str, subject: str) -> list[SessionRow]:
        return await self._open_rows(await self.inner.subject_sessions(tenant, subject))

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome, *,
               tenant: str | None = None) -> asyncio.Future[None]:
        self._running.discard(session_id)
        self._unopened.pop(session_id, None)
        live = self._live.pop(session_id, None)
        if live is not None:
            t, _, key = live
            error = None if outcome.error is None else json.loads(seal(
                key, session_aad(t, session_id, "error"), json.dumps(outcome.error)))
            outcome = replace(outcome, error=error, output=None if outcome.output is None
                              else seal(key, session_aad(t, session_id, "output"),
                                        outcome.output))
        read = self._read.get(session_id)
        if read is not None:
            t = read[0]
            error = None if outcome.error is None else json.loads(self._seal_read(
                session_id, session_aad(t, session_id, "error"), json.dumps(outcome.error)))
            outcome = replace(outcome, error=error, output=None if outcome.output is None
                              else self._seal_read(session_id, session_aad(
                                  t, session_id, "output"), outcome.output))
            self._drop_read(session_id)
        return self.inner.finish(session_id, owner, outcome, tenant=tenant)

    async def park(self, session_id: str, owner: str, outcome: SessionOutcome, *,
                   wake_at: float | None, wait_name: str | None) -> None:
        self._running.discard(session_id)
        self._unopened.pop(session_id, None)
        self._live.pop(session_id, None)
        self._drop_read(session_id)  # a resume learns it again from the journal
        await self.inner.park(session_id, owner, outcome, wake_at=wake_at,
                              wait_name=wait_name)

    async def release(self, session_id: str, owner: str,
                      outcome: SessionOutcome | None = None) -> None:
        self._running.discard(session_id)
        self._unopened.pop(session_id, None)
        self._live.pop(session_id, None)
        self._drop_read(session_id)
        await self.inner.release(session_id, owner, outcome)

    async def reopen(self, session_id: str, *, drop_step: str | None = None,
                     journal: StepRecord | None = None, tenant: str | None = None) -> bool:
        # The session runs again (a person answered its escalation): whatever tracked it
        # here is dropped, the run that claims it learns it again from its row and journal.
        self._running.discard(session_id)
        self._live.pop(session_id, None)
        self._drop_read(session_id)
        if journal is not None and journal.result is not None:
            row = await self.inner.get_session(session_id, tenant=tenant)
            if row is not None:
                journal = replace(journal, result=await self._seal_as(
                    session_id, step_aad(row.tenant, session_id, journal.key),
                    journal.result))
        return await self.inner.reopen(session_id, drop_step=drop_step, journal=journal,
                                       tenant=tenant)

    # -- the journal ------------------------------------------------------------------

    def append(self, session_id: str, owner: str | None, record: StepRecord, *,
               consume_signal: int | None = None) -> asyncio.Future[None]:
        live = self._live.get(session_id)
        if live is not None and record.result is not None:
            t, _, key = live
            record = replace(record, result=seal(key, step_aad(t, session_id, record.key),
                                                 record.result))
        read = self._read.get(session_id)
        if read is not None and record.result is not None:
            record = replace(record, result=self._seal_read(
                session_id, step_aad(read[0], session_id, record.key), record.result))
        return self.inner.append(session_id, owner, record, consume_signal=consume_signal)

    async def _open_records(self, session_id: str, records: list[StepRecord], *,
                            resuming: bool = False) -> list[StepRecord]:
        """The records opened (a session about to be resumed learns again whose data it
        read: the records sealed with another subject's key)."""
        if not any(is_sealed(r.result) for r in records):
            return records
        row = await self.inner.get_session(session_id)
        if row is None:
            return records
        t, reader = row.tenant, session_id if resuming else None
        return [replace(r, result=await self._open_text(
            t, step_aad(t, session_id, r.key), r.result, reader=reader, own=row.subject))
            for r in records]

    async def load_journal(self, session_id: str, *,
                           tenant: str | None = None) -> dict[str, StepRecord]:
        recs = await self.inner.load_journal(session_id, tenant=tenant)
        return {r.key: r for r in await self._open_records(
            session_id, list(recs.values()), resuming=True)}

    async def journal(self, session_id: str, *, tenant: str | None = None,
                      left_out: list[LeftOut] | None = None) -> list[StepRecord]:
        return await self._open_records(
            session_id, await self.inner.journal(session_id, tenant=tenant, left_out=left_out))

    # -- signals -----------------------------------------------------------------------

    async def send_signal(self, session_id: str, name: str, payload: str, *,
                          tenant: str | None = None,
                          sealed_labels: Collection[str] | None = None) -> int:
        # Sent from outside the session's run: sealed as its data is (its row and journal
        # say under whose keys), so a payload waiting to be consumed is not plaintext. The
        # session may be running elsewhere and read another subject's data meanwhile: the
        # insert is checked against the keys its sealed records named when they were
        # found, and the payload sealed again if one names another (a new subject's).
        for _ in range(_SEAL_TRIES):
            row = await self.inner.get_session(session_id, tenant=tenant)
            if row is None:
                return await self.inner.send_signal(session_id, name, payload, tenant=tenant,
                                                    sealed_labels=sealed_labels)
            keys, labels = await self._seals_named(row)
            if sealed_labels is not None and not labels <= set(sealed_labels):
                return SEALED_SINCE
            aad, text = signal_aad(row.tenant, session_id, name), payload
            for _, key in keys:
                text = seal(key, aad, text)
            seq = await self.inner.send_signal(session_id, name, text, tenant=tenant,
                                               sealed_labels=labels)
            if seq != SEALED_SINCE or sealed_labels is not None:
                return seq
        raise StoreError(f"session {session_id!r} read the data of another data subject each "
                         f"time signal {name!r} was sealed for it ({_SEAL_TRIES} times): "
                         "nothing was sent; try again")

    async def next_signal(self, session_id: str, name: str, *,
                          tenant: str | None = None) -> Signal | None:
        signal = await self.inner.next_signal(session_id, name, tenant=tenant)
        if signal is None or not is_sealed(signal.payload):
            return signal
        row = await self.inner.get_session(session_id, tenant=tenant)
        if row is None:
            return signal
        t = row.tenant
        opened = await self._open_text(t, signal_aad(t, session_id, name), signal.payload)
        return replace(signal, payload=opened if opened is not None else signal.payload)

    async def next_signals(self, session_ids: Sequence[str], name: str, *,
                           tenant: str | None = None) -> dict[str, Signal]:
        signals = await self.inner.next_signals(session_ids, name, tenant=tenant)
        sealed = [sid for sid, s in signals.items() if is_sealed(s.payload)]
        if not sealed:
            return signals
        # Whose keys: one read for all of them. A session whose row cannot be read keeps
        # its payload sealed (as next_signal leaves one of a session it does not find).
        rows = await self.inner.get_sessions(sealed, tenant=tenant, left_out=[])
        for sid in sealed:
            row = rows.get(sid)
            if row is None:
                continue
            t, signal = row.tenant, signals[sid]
            opened = await self._open_text(t, signal_aad(t, sid, name), signal.payload)
            if opened is not None:
                signals[sid] = replace(signal, payload=opened)
        return signals

    # -- the spans of the embedded trace store -----------------------------------------

    def _sealed_spans(self, session_id: str, key: str, text: str) -> str | None:
        """A chunk of a session's spans sealed as its data is now (``None``: the session's
        run is not this process's, its keys are not known here)."""
        live = self._live.get(session_id)
        read = self._read.get(session_id)
        if live is None and read is None:
            return text if session_id in self._running else None
        tenant = live[0] if live is not None else read[0]  # type: ignore[index]
        aad = spans_aad(tenant, session_id, key)
        if live is not None:
            text = seal(live[2], aad, text)
        return self._seal_read(session_id, aad, text)

    def kv_put_many(self, items: Sequence[tuple[str, str, str]], *,
                    wait: bool = True) -> asyncio.Future[None]:
        out: list[tuple[str, str, str]] = []
        later: list[tuple[str, str, str]] = []
        for ns, key, value in items:
            if not ns.startswith(SPANS_NAMESPACE):
                out.append((ns, key, value))
                continue
            sealed = self._sealed_spans(ns[len(SPANS_NAMESPACE):], key, value)
            if sealed is None:
                later.append((ns, key, value))
            else:
                out.append((ns, key, sealed))
        if not later:
            return self.inner.kv_put_many(out, wait=wait)
        return asyncio.ensure_future(self._put_sealed_later(out, later))

    async def _put_sealed_later(self, ready: list[tuple[str, str, str]],
                                later: list[tuple[str, str, str]]) -> None:
        """Write ``later``'s spans sealed under the keys found in their sessions' rows and
        journals (a session gone meanwhile, erased: its spans are not written at all)."""
        for ns, key, value in later:
            sid = ns[len(SPANS_NAMESPACE):]
            row = await self.inner.get_session(sid)
            if row is not None:
                ready.append((ns, key, await self._seal_as(
                    sid, spans_aad(row.tenant, sid, key), value)))
        await self.inner.kv_put_many(ready)

    def kv_put(self, namespace: str, key: str, value: str | None) -> asyncio.Future[None]:
        if value is None or not namespace.startswith(SPANS_NAMESPACE):
            return self.inner.kv_put(namespace, key, value)
        return self.kv_put_many([(namespace, key, value)])

    async def kv_all(self, namespace: str) -> dict[str, str]:
        values = await self.inner.kv_all(namespace)
        if not namespace.startswith(SPANS_NAMESPACE) or not any(map(is_sealed, values.values())):
            return values
        sid = namespace[len(SPANS_NAMESPACE):]
        row = await self.inner.get_session(sid)
        if row is None:
            return values
        t = row.tenant
        return {k: (await self.keys.peel(t, spans_aad(t, sid, k), v))[1] or v
                for k, v in values.items()}

    # -- shared state ---------------------------------------------------------------------

    async def _open_entry(self, e: StateEntry | None) -> StateEntry | None:
        if e is None or not is_sealed(e.value):
            return e
        value = await self._open_text(
            e.tenant, state_aad(e.tenant, e.namespace, e.key, e.session_id, e.step_key),
            e.value, reader=STATE_READER.get())
        return replace(e, value=value if value is not None else e.value)

    async def _open_entries(self, entries: Sequence[StateEntry]) -> list[StateEntry]:
        return [cast(StateEntry, await self._open_entry(e)) for e in entries]

    async def state_put(self, write: StateWrite) -> StateWriteResult:
        sid = write.session_id
        if sid is not None and write.step_key is None and sid not in self._live and \
                sid not in self._read:
            # Written on a session's behalf from outside its run (the inbox recording the
            # answer to its escalation): sealed as the session's data is.
            w = write
            aad = state_aad(w.tenant, w.namespace, w.key, w.session_id, w.step_key)
            value = await self._seal_as(sid, aad, w.value)
            res = await self.inner.state_put(replace(w, value=value))
            return replace(res, entry=await self._open_entry(res.entry))
        return await self._state_put(write)

    async def _seals_of(self, session_id: str) -> list[tuple[str, SubjectKey]]:
        """The keys a value of ``session_id`` written outside its run is sealed under,
        innermost first: its subject's, then those of the subjects whose data it read
        (found in its row and journal). Computed here, not tracked: the session may be
        running in this process meanwhile."""
        row = await self.inner.get_session(session_id)
        return [] if row is None else (await self._seals_named(row))[0]

    async def _seals_named(self, row: SessionRow
                           ) -> tuple[list[tuple[str, SubjectKey]], set[str]]:
        """:meth:`_seals_of` of ``row``'s session, and the labels the outermost layers of
        its sealed journal records name (what a write checked against them compares:
        ``send_signal``'s ``sealed_labels``)."""
        t, session_id = row.tenant, row.id
        seals: dict[str, SubjectKey] = {}
        if row.subject is not None:
            key = await self.keys.load(t, row.subject, create=False)
            if key is not None:
                seals[row.subject] = key
        texts = [(session_aad(t, session_id, part), text) for part, text in
                 (("input", row.input), ("output", row.output), ("error", row.error))]
        records = (await self.inner.load_journal(session_id)).values()
        texts += [(step_aad(t, session_id, r.key), r.result) for r in records]
        for aad, text in texts:
            for name, key in (await self.keys.peel(t, aad, text))[0]:
                if key is not None:
                    seals.setdefault(name, key)
        return list(seals.items()), sealed_outer_labels(r.result for r in records)

    async def _seal_as(self, session_id: str, aad: str, text: str) -> str:
        """``text`` sealed as ``session_id``'s data is (:meth:`_seals_of`)."""
        for _, key in await self._seals_of(session_id):
            text = seal(key, aad, text)
        return text

    async def _state_put(self, write: StateWrite) -> StateWriteResult:
        live = self._live.get(write.session_id) if write.session_id is not None else None
        if live is None and write.session_id is None:
            live = await self._subject_of_key(write)
        w = write
        aad = state_aad(w.tenant, w.namespace, w.key, w.session_id, w.step_key)
        if live is not None:
            key = live[2]
            write = replace(w, value=seal(key, aad, w.value))
        if w.session_id is not None and w.session_id in self._read:
            write = replace(write, value=self._seal_read(w.session_id, aad, write.value))
        res = await self.inner.state_put(write)
        return replace(res, entry=await self._open_entry(res.entry))

    async def _subject_of_key(self, w: StateWrite) -> tuple[str, str, SubjectKey] | None:
        """A write from outside any session (a person deciding a task in the inbox) to a
        key whose current version is a subject's stays sealed under that subject's key."""
        cur = await self.inner.state_get(w.tenant, w.namespace, w.key)
        if cur is None or not is_sealed(cur.value):
            return None
        subject, key = await self.keys.outer(w.tenant, cur.value)
        return None if key is None else (w.tenant, subject, key)

    async def state_get(self, tenant: str, namespace: str, key: str) -> StateEntry | None:
        return await self._open_entry(await self.inner.state_get(tenant, namespace, key))

    async def state_history(self, tenant: str, namespace: str, key: str, *,
                            limit: int | None = None,
                            left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        return await self._open_entries(await self.inner.state_history(
            tenant, namespace, key, limit=limit, left_out=left_out))

    async def state_list(self, tenant: str, namespace: str, *,
                         left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        return await self._open_entries(
            await self.inner.state_list(tenant, namespace, left_out=left_out))

    async def state_written_by(self, tenant: str,
                               session_ids: Sequence[str]) -> list[StateEntry]:
        return await self._open_entries(
            await self.inner.state_written_by(tenant, session_ids))


def sealing(inner: Store, keys: KeyRing) -> Store:
    """``inner`` behind a :class:`SealingStore` (typed as the store it stands for)."""
    return cast(Store, SealingStore(inner, keys))


__all__ = ["SealingStore", "sealing"]
