"""The sealer: appends the audit entries of the runs an engine ran, in batches, off the
sessions' own commits.

A run's entries are made from its journal records (:mod:`convoy.audit._journal`) as they
are written; when the run ends they are queued here, not written with the run's last
commit. Every ``interval`` seconds (or sooner, once ``batch`` entries wait) the sealer
appends what is queued in one write transaction of its own (:meth:`Store.audit_seal`), each
session's entries with the move of its audit cursor (the time of the last record sealed,
:meth:`~convoy.stores.Store.audit_cursor`), a compare-and-set: records are sealed once,
whichever engine or sealer gets there first. The journal records stay the source: entries
are a function of them, so what was not sealed can always be sealed again from them.

- **A seal that finds its cursor moved** (another engine resumed the session and sealed
  from the journal first) reads the session's records after the cursor as it is now, up
  to its own last one, and seals those: nothing twice, nothing lost.
- **A crash between a run's end and its seal** loses no entry. Each sealer keeps a marker
  (in :data:`SEALERS`, keyed by its id ``host:pid:random``): the time before which every
  run end it queued is sealed, and when it last beat. A sealer that finds another's marker
  dead (its process gone on this host, or no beat for ``dead_after`` seconds) seals, from
  the journal, every session that ended since that time and every unfinished one (a run
  that parked, or was killed mid-way, may be the dead process's), then removes the marker.
  ``convoy audit seal`` does it from the command line.
- The log lags the journal by at most ``interval`` (plus a commit) while engines live; an
  engine that closes seals everything it queued first. :meth:`flush` seals now (the
  :class:`~convoy.audit.AuditLog` of the interceptor calls it before it reads, so a
  process reads its own sessions' entries).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from convoy._command import command
from convoy._errors import AuditError, JournalError, StoreError, UserError
from convoy._text import plural
from convoy._trace_context import trace_id_of
from convoy.audit._journal import Kept, entries_of, kept
from convoy.engine._owners import new_owner, owner_is_dead
from convoy.stores._protocol import (
    UNFINISHED,
    AuditSeal,
    SessionFilter,
    SessionRow,
    Store,
)

if TYPE_CHECKING:
    from convoy.privacy._keys import KeyRing

log = logging.getLogger("convoy.audit")

#: The interceptor-state namespace of the sealers' markers (see the module docstring).
SEALERS = "convoy.audit.sealer"
#: The session header that says a session has run before, so its next run reads its audit
#: cursor (:data:`IN_STORE`); earlier versions kept the cursor itself in it (a time, read
#: when the session has no cursor in the store, :meth:`~convoy.stores.Store.audit_cursor`).
AUDIT_CURSOR = "convoy.audit"
#: :data:`AUDIT_CURSOR`'s value: the cursor is in the store
#: (:meth:`~convoy.stores.Store.audit_cursor`).
IN_STORE = "store"
#: How much earlier than a batch was taken its marker says "sealed": a run end committed
#: just before the batch was taken may be queued just after it.
_SLACK_S = 60.0

#: The hash key of a data subject's session (``None``: none), by tenant and subject;
#: raises :class:`KeyNeeded` when the master key that holds it is not configured.
MacOf = Callable[[str, "str | None"], Awaitable["bytes | None"]]


class KeyNeeded(UserError):
    """A data subject's session cannot be sealed here: no master key is configured."""


def subject_macs(keys: KeyRing | None) -> MacOf:
    """:data:`MacOf` from ``keys``: a data subject's hash key (``None``: the subject has
    none any more), :class:`KeyNeeded` for a subject's session when no key ring (master
    key) is configured, ``None`` for a session of no subject."""
    async def mac_of(tenant: str, subject: str | None) -> bytes | None:
        if subject is None:
            return None
        if keys is None:
            raise KeyNeeded(f"a data subject's session of tenant {tenant!r}: its records "
                            "are sealed under the master key, and this engine has none")
        key = await keys.load(tenant, subject, create=False)
        return None if key is None else key.mac

    return mac_of


def cursor_time(text: str | None) -> float:
    """The time of an audit cursor (``-inf``: none, every record is after it)."""
    try:
        return float(text) if text is not None else -math.inf
    except ValueError:
        return -math.inf


async def dead_sealers(store: Store, now: float,
                       dead_after: float = 60.0) -> list[tuple[str, float]]:
    """The sealers whose markers the store holds and whose process is gone (on this host)
    or has not beaten for ``dead_after`` seconds: ``(id, time since which the sessions
    that ended may not be sealed)``, ``-inf`` for a marker that cannot be read."""
    dead = []
    for sealer, text in sorted((await store.kv_all(SEALERS)).items()):
        try:
            mark = json.loads(text)
            through, beat = float(mark["through"]), float(mark["beat"])
        except (ValueError, TypeError, KeyError):
            through, beat = -math.inf, -math.inf  # damaged: assume the worst
        if owner_is_dead(sealer) or now - beat > dead_after:
            dead.append((sealer, through))
    return dead


@dataclass(slots=True, kw_only=True)
class Queued:
    """One run's entries (or a long run's first ones) waiting for their seal."""

    tenant: str
    session_id: str
    before: str | None
    after: str
    #: The run's journal records (:data:`~convoy.audit._journal.Kept`), whose entries are
    #: made as they are sealed (:func:`~convoy.audit._journal.entries_of`: many runs' at
    #: once).
    records: Sequence[Kept] = ()
    #: Entries made already (a session sealed from its journal).
    bodies: Sequence[bytes] = ()
    trace_id: str | None = None
    mac: bytes | None = None
    #: The session's constant part of a model answer's entry (``None``: made when needed).
    tail: str | None = None
    #: Entries not made from a journal record (how the run ended: a cancel), the last of
    #: ``bodies``: appended even if the records were sealed by another writer first.
    ended: Sequence[bytes] = ()


async def past_count(store: Store, tenant: str) -> AuditError | None:
    """The error for ``tenant``'s log if it holds an entry at the index its count says
    is next (the count lowered by hand, or an entry added): every append collides with it,
    for good. ``None`` if not, or if the store cannot tell now (the count is read again
    after the entry: an append another engine committed in between moves it)."""
    try:
        size = await store.audit_size(tenant)
        if await store.audit_entry(tenant, size) is None or \
                await store.audit_size(tenant) != size:
            return None
    except Exception:  # (a store that fails: its own error says it)
        return None
    verify = command("audit verify", db=store.url, tenant=tenant)
    return AuditError(f"the audit log of tenant {tenant!r} holds entries past its count of "
                      f"{size} (the count was lowered, or entries added, by hand: the store "
                      f"was edited), so no entry can be appended; run {verify} to see where")


class Sealer:
    """Seals queued entries in batches (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], float], mac_of: MacOf,
                 interval: float = 0.25, batch: int = 1024,
                 beat: float = 10.0, dead_after: float = 60.0) -> None:
        self.store = store
        self.clock = clock
        self.mac_of = mac_of
        self.interval = interval
        self.batch = batch
        self.beat = beat
        self.dead_after = dead_after
        self.id = new_owner()
        self._queue: list[Queued] = []
        #: The cursor each session's last queued seal moves it to (until it is sealed):
        #: the ``before`` of the session's next run in this process.
        self._queued: dict[str, str] = {}
        self._held = 0  # entries queued
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sealing: asyncio.Future[None] | None = None
        self._last_beat = -math.inf
        self._through = -math.inf  # every run end queued before it is sealed
        self._stopping = False
        #: ``(id, sessions whose records were sealed)`` of each dead sealer recovered.
        self.recovered: list[tuple[str, int]] = []
        #: What recovery warns with (a purge holds its warnings until it knows it goes on).
        self.warn: Callable[..., None] = log.warning
        #: Dead sealers whose markers stay (for an engine with the master key, or once the
        #: store takes their sessions' seals).
        self.left_for_key: set[str] = set()
        #: The sessions recovery left, by id: ``(row, None)`` for a data subject's that
        #: needs the master key, ``(row, error)`` for one whose seal the store refused.
        self.left: dict[str, tuple[SessionRow, Exception | None]] = {}

    @property
    def keyless(self) -> int:
        """Data subjects' sessions recovery left for an engine with the master key (each
        once, however many dead sealers left it)."""
        return sum(1 for _, e in self.left.values() if e is None)

    @property
    def refused(self) -> int:
        """Sessions recovery left because the store refused their seal (a damaged log)."""
        return len(self.left) - self.keyless

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._mark(self.clock(), wait=True)
        try:
            await self.recover_dead()
        except BaseException:  # (the wrong master key, a store error: it never sealed)
            with suppress(Exception):  # its marker goes, or the next start counts it dead
                await self.store.kv_put(SEALERS, self.id, None)
            raise
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Seal everything queued, stop, and remove this sealer's marker. If the store
        refuses the seal, the marker stays: the next sealer to open the store seals those
        sessions from the journal once this process has exited."""
        if self._task is not None:
            self._stopping = True  # (a seal under way is finished, not cancelled)
            self._wake.set()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as e:
            log.warning("audit: %s could not be sealed (%s); the next engine that opens "
                        "this store seals them from the journal",
                        plural(len(self._queue), "queued run"), e)
            return
        with suppress(Exception):  # (a dead sealer's sessions: the next start looks again)
            await self.recover_dead()
        await self.store.kv_put(SEALERS, self.id, None)

    def queued_cursor(self, session_id: str) -> str | None:
        """Where ``session_id``'s last seal queued here moves its cursor (``None``: none
        is queued): a run of it in this process chains its seal after that one."""
        return self._queued.get(session_id)

    def submit(self, item: Queued) -> None:
        self._queue.append(item)
        self._queued[item.session_id] = item.after
        self._held += len(item.records) + len(item.bodies)
        if self._held >= self.batch:
            self._wake.set()

    async def flush(self) -> None:
        """Seal what is queued now (and wait for a seal under way)."""
        while self._sealing is not None:
            await asyncio.shield(self._sealing)
        if self._queue:
            await self._seal_queued()

    # -- sealing ---------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            # (after a failure, a wait that doubles up to ~30 s: a store that refuses every
            # seal is not asked four times a second, nor warned about each time)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       self.interval * 2 ** min(failures, 7))
            self._wake.clear()
            try:
                if self._queue and self._sealing is None:
                    await self._seal_queued()
                now = self.clock()
                if now - self._last_beat >= self.beat:
                    await self._mark(now - _SLACK_S if not self._queue else self._through,
                                     wait=True)
                    await self.recover_dead()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a store error: the queue stays, tried again later
                if failures % 10 == 0:
                    log.warning("audit: sealing failed (%s in a row), %s: %s",
                                plural(failures + 1, "time"),
                                "tried again until the log is repaired"
                                if isinstance(e, AuditError) else "will retry", e)
                failures += 1

    async def _seal_queued(self) -> None:
        taken_at = self.clock()
        items, self._queue, self._held = self._queue, [], 0
        self._sealing = sealing = asyncio.get_running_loop().create_future()
        try:
            try:
                moved = await self._seal([
                    AuditSeal(tenant=q.tenant, session_id=q.session_id, before=q.before,
                              after=q.after, bodies=[
                                  *q.bodies, *entries_of(q.records, q.session_id, q.trace_id,
                                                         q.mac, q.tail), *q.ended])
                    for q in items])
            except BaseException:
                self._queue[:0] = items  # nothing was committed: seal them with the next
                self._held += sum(len(q.records) + len(q.bodies) for q in items)
                raise
            for q, ok in zip(items, moved, strict=True):  # (committed: never queued again)
                if self._queued.get(q.session_id) == q.after:
                    del self._queued[q.session_id]
                if not ok:  # sealed meanwhile, from the journal: seal what is left
                    await self._seal_rest(q)
        finally:
            self._sealing = None
            sealing.set_result(None)
        self._through = taken_at - _SLACK_S
        await self._mark(self._through)

    async def _seal(self, seals: list[AuditSeal]) -> list[bool]:
        """:meth:`Store.audit_seal`; a store error out of a log whose count was lowered
        below the entries it holds (edited: every seal collides with them, for good) is
        the :class:`~convoy.AuditError` of :func:`past_count`."""
        try:
            return await self.store.audit_seal(seals)
        except StoreError as e:
            if not e.transient:  # (a lock, a lost connection: a store down for a while)
                for tenant in dict.fromkeys(s.tenant for s in seals if s.bodies):
                    damaged = await past_count(self.store, tenant)
                    if damaged is not None:
                        raise damaged from None
            raise

    async def _seal_rest(self, q: Queued) -> None:
        """A seal another writer beat: the records past the cursor it left, up to this
        seal's last, and how the run ended."""
        try:
            await self.seal_session(q.tenant, q.session_id, upto=cursor_time(q.after),
                                    trace_id=q.trace_id, mac=q.mac)
            if q.ended:
                await self.store.audit_append(q.tenant, q.ended)
        except Exception as e:  # (a damaged journal, an erased subject, a store error)
            log.warning("audit: session %s: sealed first by another engine, and what is "
                        "left cannot be sealed now (%s): its next run seals its records",
                        q.session_id, e)

    async def seal_session(self, tenant: str, session_id: str, *, upto: float | None,
                           trace_id: str | None, mac: bytes | None,
                           header_cursor: str | None = None,
                           mac_for: Callable[[], Awaitable[bytes | None]] | None = None
                           ) -> bool:
        """Seal ``session_id``'s journal records after its cursor as it is now (up to
        ``upto``, ``None``: all), until a seal moves it (another writer may move it too);
        whether this sealed any. ``mac_for``: the hash key, asked for (instead of ``mac``)
        only when there are records to seal (a session sealed already needs no key)."""
        for _ in range(8):
            before = await self.store.audit_cursor(session_id)
            cursor = cursor_time(before if before is not None else header_cursor)
            records = sorted((r for r in await self.store.journal(session_id, tenant=tenant)
                              if r.at > cursor and (upto is None or r.at <= upto)),
                             key=lambda r: r.at)
            if not records:
                return False
            if mac_for is not None:
                mac, mac_for = await mac_for(), None
            bodies = entries_of(list(map(kept, records)), session_id, trace_id, mac)
            moved = await self._seal([AuditSeal(
                tenant=tenant, session_id=session_id, before=before,
                after=repr(records[-1].at), bodies=bodies)])
            if moved[0]:
                return True
        log.warning("audit: session %s: its cursor kept moving; its records are sealed by "
                    "the engine that moves it", session_id)
        return False

    # -- markers and recovery --------------------------------------------------------------

    async def _mark(self, through: float, *, wait: bool = False) -> None:
        """Write this sealer's marker: every run end it queued before ``through`` is
        sealed; it beats now. ``wait=False``: with the store's next commit (an older
        marker only makes a recovery look further back)."""
        now = self.clock()
        self._last_beat = now
        written = self.store.kv_put_many(
            [(SEALERS, self.id, json.dumps({"through": through, "beat": now}))], wait=wait)
        if wait:
            await written

    async def recover_dead(self, *, alive: Collection[str] = ()) -> int:
        """Seal, from the journal, the sessions ended since each dead sealer's marker
        says, and the unfinished ones; remove those markers. How many sessions were looked
        at (each dead sealer's are added to :attr:`recovered`). ``alive``: sealers known
        to be alive (this process's), whatever their markers say."""
        looked = 0
        for sealer, through in await dead_sealers(self.store, self.clock(), self.dead_after):
            if sealer == self.id or sealer in self.left_for_key or sealer in alive:
                continue  # (left_for_key: one this engine could not finish, nor can now)
            seen: dict[str, bool] = {}  # session -> whether records of it were sealed
            known = set(self.left)  # (left by an earlier dead sealer: said and counted)
            keyless: list[str] = []
            refused: list[str] = []  # (the store refused their seal: kept for later too)
            await self._recover_since(through, seen, keyless, refused)
            for status in UNFINISHED:  # (parked or cut short: maybe the dead one's runs)
                await self._recover_since(None, seen, keyless, refused, status=status)
            fresh = [sid for sid in keyless if sid not in known]
            if fresh:  # kept for an engine with the master key
                self.warn("audit: %s that a stopped engine process may not have sealed "
                          "need%s the master key to be sealed: set $CONVOY_MASTER_KEY_FILE "
                          "(the first: %s)", plural(len(fresh), "data subject session"),
                          "s" if len(fresh) == 1 else "", fresh[0])
            if keyless or refused:
                self.left_for_key.add(sealer)
            else:
                await self.store.kv_put(SEALERS, sealer, None)
            self.recovered.append((sealer, sum(seen.values())))
            looked += len(seen)
        return looked

    async def _recover_since(self, since: float | None, seen: dict[str, bool],
                             keyless: list[str], refused: list[str], *,
                             status: str | None = None) -> None:
        """Seal the sessions (of ``status``) that ended since ``since`` (``None``,
        ``-inf``: any), a page at a time, each once (``seen``)."""
        after: tuple[float, str] | None = None
        while True:
            page = await self.store.list_sessions(SessionFilter(
                status=status, ended_since=since if since is not None and math.isfinite(
                    since) else None, limit=500, after=after), left_out=[])
            for row in page:
                if row.id not in seen:
                    await self._recover(row, seen, keyless, refused)
            if len(page) < 500:
                return
            after = (page[-1].created, page[-1].id)

    async def seal_row(self, row: SessionRow) -> bool:
        """Seal the records of session ``row`` past its cursor, from its journal (see
        :meth:`seal_session`); whether this sealed any. Raises what the store, the journal
        or :attr:`mac_of` raises."""
        headers = row.header_map
        cursor = headers.get(AUDIT_CURSOR)
        return await self.seal_session(
            row.tenant, row.id, upto=None, trace_id=trace_id_of(headers, row.id),
            mac=None, mac_for=lambda: self.mac_of(row.tenant, row.subject),
            header_cursor=None if cursor == IN_STORE else cursor)

    async def _recover(self, row: SessionRow, seen: dict[str, bool],
                       keyless: list[str], refused: list[str]) -> None:
        """Seal ``row``'s records past its cursor (a damaged row or journal, an erased
        subject: one warning; a data subject's without the master key: in ``keyless``; one
        whose seal the store refused, a damaged log: a warning, and in ``refused``)."""
        seen[row.id] = False
        try:
            seen[row.id] = await self.seal_row(row)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except KeyNeeded:
            keyless.append(row.id)
            self.left[row.id] = (row, None)
        except JournalError as e:  # (its own row or journal: no later seal reads it better)
            self.warn("audit: session %s: its records cannot be sealed: %s", row.id, e)
        except (StoreError, AuditError) as e:  # (the store's, a lost connection; the log's)
            refused.append(row.id)
            self.left[row.id] = (row, e)
            self.warn("audit: session %s: the store did not take the seal of its records "
                      "(kept for a later seal): %s", row.id, e)
        except Exception as e:
            self.warn("audit: session %s: its records cannot be sealed: %s", row.id, e)


__all__ = [
    "AUDIT_CURSOR",
    "IN_STORE",
    "SEALERS",
    "KeyNeeded",
    "Queued",
    "Sealer",
    "cursor_time",
    "dead_sealers",
    "past_count",
    "subject_macs",
]
