"""The SQL of data subjects and purges, alike on SQLite and PostgreSQL (only the parameter
placeholder differs): subject keys, the erasure record, and the statements that delete a
set of sessions with everything written for them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from convoy._errors import SessionsHeld, StoreError
from convoy.stores._protocol import AUDIT_CURSORS, SPANS_NAMESPACE, TOMBSTONE_SWEEP_S, Erasure

#: Tables (besides ``meta``) that a purge deletes from: what ``compact`` must clean (``kv``:
#: the map of a subject key's label to the subject's id, the spans kept for a session,
#: the audit cursors of purged sessions once a week old; ``state_orphans``: the names of
#: keys, which may hold personal data, of keys deleted whole).
PURGED_TABLES = ("sessions", "journal", "signals", "state", "state_history", "state_watch",
                 "subject_keys", "kv", "state_orphans")

#: How many session ids one statement names.
CHUNK = 500

# The namespace of human tasks (:data:`convoy.hitl._task.INBOX`), and how a session's
# private namespace begins (``ctx.state()``: ``session:<id>``).
_INBOX = "convoy.inbox"
_PRIVATE = "session:"

_ERASURE_COLS = "tenant,reason,subject_ref,sessions,state_versions,key_destroyed,at,seq"


def subject_tables(*, real: str, serial: str) -> str:
    """The tables of schema version 5: subject keys and recorded erasures (``real``: the
    dialect's float type; ``serial``: its auto-numbered primary key)."""
    return f"""
ALTER TABLE sessions ADD COLUMN subject TEXT;
CREATE INDEX sessions_subject ON sessions(tenant, subject) WHERE subject IS NOT NULL;
CREATE TABLE subject_keys(
  tenant TEXT NOT NULL,
  subject TEXT NOT NULL,
  wrapped TEXT NOT NULL,
  created {real} NOT NULL,
  PRIMARY KEY(tenant, subject)
);
CREATE TABLE erasures(
  seq {serial},
  tenant TEXT NOT NULL,
  reason TEXT NOT NULL,
  subject_ref TEXT,
  sessions INTEGER NOT NULL,
  state_versions INTEGER NOT NULL,
  key_destroyed INTEGER NOT NULL,
  at {real} NOT NULL
);
"""


class SubjectSQL:
    """Statements for one dialect (``mark``: its placeholder)."""

    def __init__(self, mark: str) -> None:
        m = self.mark = mark
        #: The larger of two values: SQLite's two-argument ``max``, PostgreSQL's
        #: ``GREATEST`` (the dialect goes with the parameter mark).
        self.greatest = "max" if mark == "?" else "GREATEST"
        self.key_get = f"SELECT wrapped FROM subject_keys WHERE tenant={m} AND subject={m}"
        self.key_put = (f"INSERT INTO subject_keys(tenant,subject,wrapped,created) "
                        f"VALUES({m},{m},{m},{m}) ON CONFLICT(tenant,subject) DO NOTHING")
        self.key_oldest = ("SELECT tenant,subject,wrapped FROM subject_keys "
                           "ORDER BY created, tenant, subject LIMIT 1")
        self.key_delete = f"DELETE FROM subject_keys WHERE tenant={m} AND subject={m}"
        # The sessions that name a subject now (an erasure's, read in its transaction).
        self.named = f"SELECT id FROM sessions WHERE tenant={m} AND subject={m} ORDER BY id"
        # What maps the labels of its key(s) back to the subject goes with the key.
        self.refs_delete = f"DELETE FROM kv WHERE namespace={m} AND value={m}"
        self.kv_new = (f"INSERT INTO kv(namespace,key,value) VALUES({m},{m},{m}) "
                       "ON CONFLICT(namespace,key) DO NOTHING")
        self.kv_get = f"SELECT value FROM kv WHERE namespace={m} AND key={m}"
        # That a compaction is owed (:data:`~convoy.stores._protocol.COMPACTION_OWED`).
        self.owe = (f"INSERT INTO kv(namespace,key,value) VALUES({m},{m},{m}) "
                    "ON CONFLICT(namespace,key) DO UPDATE SET value=excluded.value")
        # Paid: deleted only as the compaction read it before it began (parameters:
        # namespace, key, value): a purge that committed as it ran is owed its own.
        self.owed_paid = f"DELETE FROM kv WHERE namespace={m} AND key={m} AND value={m}"
        self.record = (f"INSERT INTO erasures(tenant,reason,subject_ref,sessions,"
                       f"state_versions,key_destroyed,at) VALUES({m},{m},{m},{m},{m},{m},{m})")
        self.erasures = f"SELECT {_ERASURE_COLS} FROM erasures"
        self.finished_before = (
            "SELECT id FROM sessions WHERE finished IS NOT NULL AND finished < "
            f"{m} AND status NOT IN ('pending','running','waiting')")
        # Keys one of the sessions created: the subject's, every version of them goes (an
        # erasure; a retention purge, of the sessions' own keys only: see ``created``).
        self.key_versions = (f"DELETE FROM state_history WHERE tenant={m} AND namespace={m} "
                             f"AND key={m}")
        self.key_current = (f"DELETE FROM state WHERE tenant={m} AND namespace={m} AND "
                            f"key={m} RETURNING version")
        # The newest remaining version's value and writer, under the number of the
        # version purged (first parameter), so that the key's version never goes back: no
        # write gives that number again (a wait past it means what it meant; a
        # compare-and-set against it lands on the value this leaves), and a key none of
        # whose versions remains has no row to copy and goes (its number is kept by
        # :attr:`floor`).
        self.fall_back_numbered = (
            "INSERT INTO state(tenant,namespace,key,version,value,session_id,agent,step_key,"
            f"at) SELECT tenant,namespace,key,CAST({m} AS BIGINT),value,session_id,agent,"
            f"step_key,at FROM state_history WHERE tenant={m} AND namespace={m} AND key={m} "
            "ORDER BY version DESC LIMIT 1")

    def floor(self, tenant: str, version: int) -> tuple[str, tuple[Any, ...]]:
        """What keeps ``version``, the highest of a key a purge deleted whole (a key of
        ``tenant``), from being given again: the tenant's floor, which a key created
        after it starts past (:meth:`~convoy.stores.Store.state_put`), rises to it."""
        m = self.mark
        return (f"INSERT INTO state_floor(tenant,version) VALUES({m},{m}) ON CONFLICT(tenant) "
                f"DO UPDATE SET version={self.greatest}(state_floor.version,excluded.version)",
                (tenant, int(version)))

    def rewatch(self, tenant: str, namespace: str, key: str
                ) -> tuple[str, tuple[Any, ...]]:
        """What keeps the watches of a key a purge deleted whole from waiting past what
        the key is now (0: gone) for good, were its next version not past them (a key
        an earlier release recreated): a watch waiting for a version past the key's
        current one waits past the current one, so the key's next write fires it and the
        session waiting on it looks again."""
        m = self.mark
        cur = f"COALESCE((SELECT version FROM state WHERE tenant={m} AND namespace={m} AND " \
              f"key={m}), 0)"
        where = (tenant, namespace, key)
        return (f"UPDATE state_watch SET after_version={cur} WHERE tenant={m} AND "
                f"namespace={m} AND key={m} AND after_version>{cur}", where * 3)

    def still_finished(self, n: int, *, lock: str = "") -> str:
        """Which of ``n`` sessions (of a tenant) are finished before a time (the last
        parameter) now; ``lock``: a locking clause (a reopen waits for the purge)."""
        return (f"SELECT id FROM sessions WHERE tenant={self.mark} AND id IN "
                f"({self.ids(n)}) AND finished IS NOT NULL AND finished < {self.mark} AND "
                f"status NOT IN ('pending','running','waiting') ORDER BY id{lock}")

    def ids(self, n: int) -> str:
        return ",".join([self.mark] * n)

    def held(self, n: int, *, lock: str = "") -> str:
        """``(id, status, owner, lease_until)`` of ``n`` sessions (of a tenant), to tell
        which run on an engine whose lease holds (:func:`refuse_held`); ``lock``: a
        locking clause, so that no claim takes one of them until the purge commits."""
        return (f"SELECT id, status, owner, lease_until FROM sessions WHERE "
                f"tenant={self.mark} AND id IN ({self.ids(n)}) ORDER BY id{lock}")

    def created(self, n: int, *, own: bool = False) -> str:
        """The state keys (of a tenant) that one of ``n`` sessions created (wrote the
        oldest version of: version 1, or, a key created past its tenant's floor, the
        first past it; not a key whose creating version a retention purge deleted:
        :meth:`orphaned`); ``own``: only those that are the session's own, whoever wrote
        them since (a retention purge deletes those whole): its human tasks (a person's
        decision is a version of the task) and the keys of its private namespace
        (``ctx.state()``)."""
        mine = (f" AND (h.namespace='{_INBOX}' OR h.namespace='{_PRIVATE}' || h.session_id)"
                if own else "")
        return ("SELECT DISTINCT h.namespace, h.key FROM state_history h WHERE "
                f"h.tenant={self.mark} AND h.session_id IN ({self.ids(n)}){mine} AND NOT "
                "EXISTS (SELECT 1 FROM state_history o WHERE o.tenant=h.tenant AND "
                "o.namespace=h.namespace AND o.key=h.key AND o.version<h.version) AND NOT "
                "EXISTS (SELECT 1 FROM state_orphans x WHERE x.tenant=h.tenant AND "
                "x.namespace=h.namespace AND x.key=h.key) ORDER BY 1, 2")

    def orphaned(self, tenant: str, namespace: str, key: str
                 ) -> tuple[str, tuple[Any, ...]]:
        """What records that a retention purge deleted the version that created a key
        whose other versions stay (``state_orphans``, an add-on's table): the writer of
        the oldest version left did not create it (:meth:`created`)."""
        m = self.mark
        return (f"INSERT INTO state_orphans(tenant,namespace,key) SELECT {m},{m},{m} WHERE "
                f"EXISTS (SELECT 1 FROM state_history WHERE tenant={m} AND namespace={m} AND "
                f"key={m}) ON CONFLICT(tenant,namespace,key) DO NOTHING",
                (tenant, namespace, key) * 2)

    def unorphaned(self, tenant: str, namespace: str, key: str
                   ) -> tuple[str, tuple[Any, ...]]:
        """What forgets that a key was orphaned (:meth:`orphaned`) once it is deleted
        whole: its next writer creates it."""
        m = self.mark
        return (f"DELETE FROM state_orphans WHERE tenant={m} AND namespace={m} AND key={m}",
                (tenant, namespace, key))

    def fall_back_to(self, row: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """What makes a key whose current version a purge deleted (``row``: ``(tenant,
        namespace, key, version)``, as the ``current`` statement of :meth:`purge_chunk`
        returns it) current again at its newest remaining version, under the number of the
        version deleted (:attr:`fall_back_numbered`); its row count is 0 if none
        remains (the key went whole: :meth:`floor`)."""
        tenant, namespace, key, version = row
        return self.fall_back_numbered, (int(version), tenant, namespace, key)

    def purge_chunk(self, tenant: str, ids: Sequence[str]
                    ) -> tuple[list[tuple[str, tuple[Any, ...]]], str, str, str]:
        """For one chunk of session ids (of ``tenant``): the plain deletes (their journal,
        signals, watches and spans; their audit cursors are kept, see
        :data:`SQLITE_TOMBSTONES`), the statement
        that deletes their state versions (counted), the one that deletes the current
        versions they wrote (returning the keys with the version deleted), and the one
        that deletes the sessions (counted)."""
        m, marks = self.mark, self.ids(len(ids))
        owned = f"session_id IN ({marks}) AND session_id IN (SELECT id FROM sessions WHERE " \
                f"tenant={m})"
        plain = [(f"DELETE FROM {t} WHERE {owned}", (*ids, tenant))
                 for t in ("journal", "signals", "state_watch")]
        # What interceptors keep per session: the embedded trace store's spans (the
        # session's audit entries stay in the log, its audit cursor for a while).
        plain.append((f"DELETE FROM kv WHERE namespace IN (SELECT {m} || id FROM sessions "
                      f"WHERE tenant={m} AND id IN ({marks}))",
                      (SPANS_NAMESPACE, tenant, *ids)))
        history = f"DELETE FROM state_history WHERE tenant={m} AND session_id IN ({marks})"
        current = (f"DELETE FROM state WHERE tenant={m} AND session_id IN ({marks}) "
                   "RETURNING tenant, namespace, key, version")
        sessions = f"DELETE FROM sessions WHERE tenant={m} AND id IN ({marks})"
        return plain, history, current, sessions


# A purged session's audit cursor is kept (its tombstone): a seal an engine queued before
# the purge, of records the erasure sealed first, then fails its compare-and-set instead of
# finding no cursor and appending them again (see :meth:`Store.purge`). A later purge
# deletes it once it is :data:`~convoy.stores._protocol.TOMBSTONE_S` old: by its value, the
# time of the last record sealed, read as a number only when it is one as Convoy writes it
# (``repr`` of a float; ``-inf``: none sealed): a value edited by hand to anything else is
# left, and never reaches PostgreSQL's ``::float8``, which raises on it (and on what
# overflows a float: at most 17 digits before the point, and a two-digit exponent).
_NUMBER = r"-?[0-9]{1,17}(\.[0-9]{1,25})?(e[-+][0-9]{1,2})?"
_IS_NUMBER = re.compile(_NUMBER)

#: SQLite, before a chunk of sessions (``tenant``, then their ids) is deleted: the cursor
#: each keeps in its row is kept in ``kv`` (in place of one an earlier release left there;
#: a session whose row has none keeps its ``kv`` cursor as it is).
SQLITE_TOMBSTONES = (f"INSERT INTO kv(namespace,key,value) SELECT '{AUDIT_CURSORS}', id, "
                     "audit_cursor FROM sessions WHERE tenant=? AND id IN ({}) AND "
                     "audit_cursor IS NOT NULL ON CONFLICT(namespace,key) DO UPDATE SET "
                     "value=excluded.value")
# The cursors of sessions that no longer exist (by the sessions' primary key, for each
# cursor in ``kv``'s range of the namespace): a live session's is never one of them.
_GONE = (f"namespace='{AUDIT_CURSORS}' AND NOT EXISTS "
         "(SELECT 1 FROM sessions WHERE sessions.id=kv.key)")
#: SQLite: the purged sessions' cursors that may be older than a time (parameter: it):
#: ``CAST`` reads any text as a number (a word as 0), so each is checked with
#: :func:`expired` before it goes (:data:`SQLITE_EXPIRE`, parameter: its key).
SQLITE_EXPIRING = (f"SELECT key, value FROM kv WHERE {_GONE} AND "
                   "(value='-inf' OR CAST(value AS REAL) < ?)")
SQLITE_EXPIRE = f"DELETE FROM kv WHERE namespace='{AUDIT_CURSORS}' AND key=?"
#: PostgreSQL: delete the purged sessions' cursors older than a time (parameters: the
#: pattern of a number, the time). Those of sessions that no longer exist are found first
#: (``MATERIALIZED``: the planner tested every value of the namespace, each live session's
#: cursor too, against the pattern before the join), then deleted by the primary key. It
#: reads every cursor and the sessions' ids (a store runs it once an hour at most,
#: ``TOMBSTONE_SWEEP_S``): 0.2 s for 300,000 sessions on the tests' cluster (0.65 s with
#: the pattern tested first).
PG_EXPIRE = (f"WITH gone AS MATERIALIZED (SELECT key, value FROM kv WHERE {_GONE}) "
             f"DELETE FROM kv WHERE namespace='{AUDIT_CURSORS}' AND key = ANY(ARRAY("
             "SELECT key FROM gone WHERE CASE WHEN value='-inf' THEN true "
             "WHEN value ~ %s THEN value::float8 < %s ELSE false END))")


def expired(value: str, cutoff: float) -> bool:
    """Whether a purged session's cursor ``value`` is older than ``cutoff`` (a value that
    is not a number as Convoy writes it: never)."""
    return value == "-inf" or (_IS_NUMBER.fullmatch(value) is not None and
                               float(value) < cutoff)


def sweep_due(swept: float | None, now: float) -> bool:
    """Whether a store object that last looked for week-old tombstones at ``swept``
    (``None``: never) looks again at ``now``: at its first purge, then once every
    :data:`~convoy.stores._protocol.TOMBSTONE_SWEEP_S` (and at once if its clock went
    back)."""
    return swept is None or not 0 <= now - swept < TOMBSTONE_SWEEP_S


def pg_expire(cutoff: float) -> tuple[str, tuple[Any, ...]]:
    """:data:`PG_EXPIRE` with its parameters."""
    return PG_EXPIRE, (f"^{_NUMBER}$", cutoff)  # (``$``: the end, not a newline before it)


def erasure(r: Sequence[Any]) -> Erasure:
    return Erasure(tenant=r[0], reason=r[1], subject_ref=r[2], sessions=int(r[3]),
                   state_versions=int(r[4]), key=bool(r[5]), at=float(r[6]), seq=int(r[7]))


def chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


class SubjectKeyGone(StoreError):
    """Sessions of a data subject were not created: the store no longer holds the subject
    key their values are sealed under (another process erased the subject after the
    creator read the key). Sealed again under the subject's key as it is now, they can be
    (the sealing store does so)."""


def keys_held(sessions: Sequence[Any], held: Callable[[str, str], str | None]) -> None:
    """Raise :class:`SubjectKeyGone` unless, for each of ``sessions``
    (:class:`~convoy.stores.NewSession`) with a ``subject_key``, ``held(tenant, subject)``
    (the store's wrapped key, read in the creating transaction) is that key."""
    for s in sessions:
        if s.subject_key is not None and held(s.tenant, s.subject) != s.subject_key:
            raise SubjectKeyGone(
                f"session {s.id!r} was not created: its data subject was erased by another "
                "process as it started (the key its data was sealed under is gone); start "
                "it again", transient=True)


def with_named(ids: Sequence[str], named: Iterable[Any]) -> list[str]:
    """``ids`` and, after them, the ids of ``named`` (rows whose first column is a
    session id) that are not among them."""
    out = list(ids)
    seen = set(out)
    out += [r[0] for r in named if r[0] not in seen]
    return out


def refuse_held(rows: Sequence[Any], now: float, reason: str = "erasure") -> None:
    """A purge of sessions another engine runs would leave it writing rows for sessions
    that no longer exist (its lease lets it write unfenced): refused while one holds.
    ``rows``: ``(id, status, owner, lease_until)``; ``reason``: the purge's (``erasure``
    or ``retention``), which names the command to run again."""
    verb = "erase" if reason == "erasure" else "purge"
    held = [(sid, owner) for sid, status, owner, until in rows
            if status == "running" and owner is not None and until is not None and until > now]
    if held:
        sid, owner = held[0]
        more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
        lapse = max(until for _, status, o, until in rows if status == "running" and
                    o is not None and until is not None and until > now)
        raise SessionsHeld(f"session {sid!r} is running on engine {owner!r}{more}: nothing "
                           f"was deleted; {verb} again once it has ended, or once that engine "
                           f"is stopped and its lease has lapsed (in {lapse - now:.0f} s at "
                           "the latest: an engine that was killed holds it until then)")


def not_compacted(where: str, db: str) -> StoreError:
    """A compaction that another process's transaction (a lock) kept from running
    (``where``: the store as the message names it; ``db``: its path or URL, for the
    command to run again)."""
    from convoy._command import command

    return StoreError(f"the store {where} could not be compacted: another process holds it "
                      "in a transaction (a backup, a long read), so deleted rows may remain "
                      f"in its files until {command('db compact', db=db)} succeeds (run it "
                      "when the store is quiet)", transient=True)
