"""The store protocol: one typed interface for everything Convoy persists.

The engine, the CLI, chaos and every interceptor that keeps state (breakers, budgets,
caches) go through it; SQL lives only in the implementations (:mod:`convoy.stores._sqlite`).
One conformance suite (``tests/test_store_conformance.py``) drives every implementation.

Sessions are *claimed*: the engine that runs a session owns it with a lease that it renews
while it runs and that expires if it dies, so another engine can take the session over.
Every journal write and the final status are *fenced*: a store refuses them (``LeaseLost``)
from an engine that no longer owns the session.

Methods that do I/O are async. Writes that ride the group commit (``append``, ``finish``,
``update_headers``, ``kv_put``) return a future that resolves once the write is
committed; callers that need no confirmation may drop it: the store still commits it, in
order, before any later write of the same store, and before ``aclose`` returns.
``create_session`` and ``update_headers`` never commit on their own: the next batch carries
them (a store may commit them at once; callers must not rely on either).

Limits that several engines share are kept here too, atomically across every store object
and process on the same database: *reservations* against a limit (budgets: a call holds its
worst-case cost while in flight, owned by its engine like a lease, and settles on what it
cost), *token buckets* (rate limits) and a *response cache* with expiry.

Tenants: every session belongs to one tenant, fixed when it is created. Every method that
reads or acts on a session by its id, or lists sessions, takes ``tenant=``: given, it acts
only on sessions of that tenant, and a session of another tenant is exactly an unknown id
(the same empty answer, nothing written, a refused fenced write). Names compare exactly
(case, spaces; no patterns). ``None`` is the operator's view of every tenant. Writes fenced
on an owner (``append``, ``park``, ``release``, ``update_headers``, ``renew``) take no
tenant: an owner holds only sessions it created or claimed, and the engine checks the
tenant before either. Session ids are unique across tenants: creating an id another tenant
holds leaves that session as it is.

Data subjects (``subject_*``, ``purge``): a session may name the data subject (a person) it
holds personal data about; the store keeps each subject's key (wrapped: the store never
sees it in the clear), and ``purge`` deletes sessions with everything written for them, in
one transaction, recording what it did (:class:`Erasure`). ``compact`` then leaves no trace
of deleted rows in the database files it can reach.

Shared state (``state_*``) is versioned per key: every write is a compare-and-set against
the version the writer read, atomic across processes, and each version is kept as history
with who wrote it. Every key belongs to one tenant; a namespace groups keys within a tenant
(a session's own, a tenant-wide one, or a named entity such as ``customer:42``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from convoy._errors import JournalError
from convoy.stores._rows import LeftOut, damaged, row_name, shown, stored_json

#: The schema this Convoy writes. Stores refuse a database written by a newer schema.
SCHEMA_VERSION = 9

StepStatus = Literal["started", "completed", "failed"]
SessionStatus = Literal["pending", "running", "waiting", "completed", "failed", "escalated",
                        "budget_exhausted", "loop_detected", "limit_exceeded", "cancelled"]

#: A session in one of these states still has work to do: the engine runs it, or a signal
#: or timer will wake it. This is the one definition of "unfinished".
UNFINISHED: tuple[SessionStatus, ...] = ("pending", "running", "waiting")
#: The namespace (``+ session id``) of the interceptors' values that hold a session's spans
#: (``convoy.observability``'s embedded trace store: one chunk of JSON per key).
SPANS_NAMESPACE = "trace:"
#: Between the names of the signals a session waits for, any of which wakes it (the
#: branches of a ``ctx.gather`` that wait for different ones), in ``SessionRow.wait_name``
#: and :meth:`Store.park`'s ``wait_name``: a character no signal name holds
#: (:func:`~convoy._text.check_name` refuses control characters).
WAIT_NAMES_SEP = "\x1f"


def joined_wait_names(names: Iterable[str]) -> str | None:
    """The ``wait_name`` a store keeps for a wait for any of ``names`` (each once, in
    order), or ``None`` for none."""
    return WAIT_NAMES_SEP.join(dict.fromkeys(names)) or None


def wait_names_of(wait_name: str | None) -> tuple[str, ...]:
    """The names of the signals a stored ``wait_name`` waits for, any of which wakes it."""
    return () if wait_name is None else tuple(wait_name.split(WAIT_NAMES_SEP))


#: How a sealed value (``convoy.privacy``) starts: the JSON text of its envelope.
SEALED_PREFIX = '{"$sealed"'
#: What :meth:`Store.send_signal` returns, storing nothing, when a sealed record of its
#: session's journal names a key the sender did not see (``sealed_labels``): the session
#: read another data subject's data since, and the payload must be sealed as its data is.
SEALED_SINCE = -1
_OUTER_LABEL = re.compile(r'\{"\$sealed":\s*"((?:[^"\\]|\\.){0,200})"')


def sealed_outer_label(text: str) -> str:
    """The label the outermost layer of a sealed value (:data:`SEALED_PREFIX`) names its
    key by, as its text writes it (escapes kept: the same label reads the same), or ""
    for a text that is no sealed value Convoy wrote."""
    m = _OUTER_LABEL.match(text)
    return m.group(1) if m else ""


def sealed_outer_labels(texts: Iterable[str | None]) -> set[str]:
    """The labels (:func:`sealed_outer_label`) of the sealed values among ``texts``: what
    :meth:`Store.send_signal`'s ``sealed_labels`` is compared with."""
    return {sealed_outer_label(t) for t in texts if t is not None and
            t.startswith(SEALED_PREFIX)}


#: The namespace (``+ tenant``) of the interceptors' values that map the label a sealed
#: value names its key by to the data subject (``convoy.privacy``): a purge that destroys
#: a subject's key deletes them with it.
SUBJECT_REFS = "convoy.subject-refs/"
#: The store's value (namespace, key) that says it owes a compaction: set by every
#: :meth:`Store.purge` in its transaction (to the erasure's number), deleted by
#: :meth:`Store.compact` once it has compacted. A process killed between the two leaves it
#: set, so the next erasure or purge (a repeated one too) compacts.
COMPACTION_OWED = ("convoy.compaction", "owed")
#: Statuses in which a session may be claimed and run right away.
RUNNABLE: tuple[SessionStatus, ...] = ("pending", "running")
#: Signal names starting with this are Convoy's own: workflow code cannot wait for them and
#: ``engine.signal`` / ``convoy signal`` cannot send them (except ``convoy.escalation``, an
#: answer to an escalation, which goes through the inbox).
RESERVED_SIGNALS = "convoy."
#: The signal that asks for a session to be cancelled (written by ``cancel`` for a session
#: another engine runs; its owner stops it at its next lease renewal, an engine that claims
#: it later ends it before running it). A park finds it as it finds the awaited signal.
CANCEL_SIGNAL = "convoy.cancel"
#: Every status, in the order reports list them.
STATUSES: tuple[SessionStatus, ...] = (
    "pending", "running", "waiting", "completed", "failed", "escalated", "budget_exhausted",
    "loop_detected", "limit_exceeded", "cancelled")
#: What ``Store.counts`` counts a session under whose stored status is none of
#: :data:`STATUSES` (edited by hand: listings leave the row out as damaged).
DAMAGED = "damaged"


@dataclass(slots=True, kw_only=True)
class StepRecord:
    """One journal entry: the outcome (or start) of one step of one session.

    ``result`` is the encoded value of a completed step or the error record of a failed
    one. ``agent`` is the agent that took the step when it is not the ``target`` itself
    (a model step's target is its agent). ``input_hash`` fingerprints what the step was
    asked (a changed input on replay is non-determinism). Tokens and cost are columns so
    spend is summed without parsing. ``config`` identifies the configuration of the agent that
    took the step (:attr:`convoy.Agent.config_id`), ``None`` for steps of no agent. ``at`` is
    when the record was written and ``began`` when the step began (a wait: when it began
    waiting), both in epoch seconds; ``began`` is ``0.0`` where it is not known (a record of a
    Convoy that did not keep it).
    """

    key: str
    kind: str
    target: str
    status: StepStatus
    result: str | None = None
    input_hash: str | None = None
    agent: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    at: float = 0.0
    config: str | None = None
    began: float = 0.0

    @property
    def taken_by(self) -> str | None:
        """The agent that took the step: a model step's is its ``target``."""
        return self.target if self.kind == "model" else self.agent


@dataclass(slots=True, kw_only=True)
class NewSession:
    """A session to create. ``subject_key``: the subject's key as the store keeps it
    (wrapped), which the session's values are sealed under (the sealing store sets it):
    :meth:`Store.create_sessions` creates none of its sessions unless the store still
    holds that key (else a transient :class:`~convoy.StoreError`: another process erased
    the subject meanwhile)."""

    id: str
    workflow: str
    version: str
    tenant: str
    input: str
    headers: Mapping[str, str] = field(default_factory=dict)
    parent: str | None = None
    subject: str | None = None
    subject_key: str | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class SessionRow:
    """A session as the store holds it."""

    id: str
    workflow: str
    version: str
    tenant: str
    status: SessionStatus
    input: str
    output: str | None = None
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    owner: str | None = None
    lease_until: float | None = None
    active_s: float = 0.0
    wake_at: float | None = None
    wait_name: str | None = None
    headers: str = "{}"
    parent: str | None = None
    subject: str | None = None

    @property
    def wait_names(self) -> tuple[str, ...]:
        """The signals the session waits for, any of which wakes it (one, or a gather's
        branches' several; none for a timer alone)."""
        return wait_names_of(self.wait_name)

    @property
    def error_record(self) -> dict[str, Any] | None:
        """The decoded error (or wait) record, or ``None`` (a
        :class:`~convoy.JournalError` if the store holds one that is not JSON)."""
        if not self.error:
            return None
        what = f"session {row_name(self.id)}"
        record = stored_json(self.error, what, "error")
        if not isinstance(record, dict):
            raise damaged(what, f"its stored error {shown(self.error)} is not a JSON object")
        return record

    @property
    def header_map(self) -> dict[str, str]:
        """The decoded headers persisted with the session (a
        :class:`~convoy.JournalError` if the store holds what is not a JSON object of
        text)."""
        what = f"session {row_name(self.id)}"
        text = self.headers or "{}"
        try:
            headers = stored_json(text, what, "headers")
        except JournalError:
            headers = None
        if not isinstance(headers, dict) or \
                not all(type(v) is str for v in headers.values()):
            raise damaged(what, f"its stored headers {shown(text)} are not a JSON object "
                          "of text")
        return headers

    @property
    def unfinished(self) -> bool:
        """Whether the session still has work to do (see :data:`UNFINISHED`)."""
        return self.status in UNFINISHED

    def parked_at(self, now: float) -> bool:
        """Whether the session waits, at ``now``, for what has not come yet: a signal (or a
        person) not sent, a timer not due. A resume leaves it as it is (its workflow's code
        is not needed until it wakes)."""
        return self.status == "waiting" and (self.wake_at is None or self.wake_at > now)


@dataclass(slots=True, kw_only=True)
class SessionOutcome:
    """How a run of a session ended, for :meth:`Store.finish` and :meth:`Store.park`."""

    status: SessionStatus
    output: str | None = None
    error: dict[str, Any] | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    headers: Mapping[str, str] | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class SessionFilter:
    """What :meth:`Store.list_sessions` returns: all conditions must hold."""

    status: str | None = None
    workflow: str | None = None
    tenant: str | None = None
    limit: int = 50
    offset: int = 0
    #: Only the sessions after this one, as ``(created, id)`` of the last session of the
    #: page before (keyset paging: sessions deleted or added meanwhile shift nothing).
    after: tuple[float, str] | None = None
    #: Only the sessions that ended (``finished``) at or after this time.
    ended_since: float | None = None
    #: Newest first (``after``: the sessions created before that one), not oldest first.
    newest: bool = False
    #: An unfinished session's ``steps`` is at least the records its journal holds, and
    #: its tokens and cost at least what its journaled steps spent, counted in the same
    #: query (for the unfinished rows listed only): the row's own totals are written when
    #: a run ends, parks or is given up, so a running one, or one whose process was
    #: killed, shows less. For a listing people read (``convoy sessions list``).
    journal_steps: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class Signal:
    """A message sent to a session (``engine.signal``); consumed once by ``ctx.wait_for``."""

    seq: int
    session_id: str
    name: str
    payload: str
    at: float


@dataclass(slots=True, frozen=True, kw_only=True)
class Hold:
    """One amount to hold against one shared limit, for :meth:`Store.reserve`.

    ``scope`` names what is limited (say ``budget:tenant:acme:2026-11-30``) and ``unit`` what
    it is counted in (``tokens``, ``usd``). ``start`` is what the scope has used already if
    the store has no count for it yet (spend journaled before anything was counted).
    """

    scope: str
    unit: str
    amount: float
    limit: float
    start: float = 0.0


@dataclass(slots=True, frozen=True, kw_only=True)
class Level:
    """How much of one shared limit is used (settled) and held (by live reservations)."""

    scope: str
    unit: str
    used: float
    held: float


@dataclass(slots=True, frozen=True, kw_only=True)
class Reservation:
    """What :meth:`Store.reserve` decided: ``granted``, and the level of every hold asked
    for, in order, as the decision saw it (before this reservation's own holds). A refusal
    counts only live holds; a grant may still count holds that lapsed (they only made the
    limit look fuller)."""

    granted: bool
    levels: tuple[Level, ...]


@dataclass(slots=True, frozen=True, kw_only=True)
class Spend:
    """What a reservation turned out to use of one scope and unit (:meth:`Store.settle`)."""

    scope: str
    unit: str
    amount: float


@dataclass(slots=True, frozen=True, kw_only=True)
class StateEntry:
    """One version of one key of shared state.

    ``value`` is JSON text. ``session_id``, ``agent`` and ``step_key`` name the writer
    (``None`` for a write from outside any session, such as ``convoy state set``).
    """

    tenant: str
    namespace: str
    key: str
    version: int
    value: str
    session_id: str | None = None
    agent: str | None = None
    step_key: str | None = None
    at: float = 0.0


@dataclass(slots=True, frozen=True, kw_only=True)
class StateWrite:
    """A compare-and-set write for :meth:`Store.state_put`.

    ``expected_version`` is the version the writer read: the write lands only if the key is
    still at it (``0`` or ``None``: only if the key does not exist). A write that names its
    writer (``session_id`` and ``step_key``) is idempotent: if that writer already wrote
    this key, the store returns that version and writes nothing.

    ``audit``: encoded audit entries (:meth:`Store.audit_append`) appended to the tenant's
    log in the write's own transaction, only if it lands (a person's decision and its
    entry are one commit).
    """

    tenant: str
    namespace: str
    key: str
    value: str
    expected_version: int | None
    session_id: str | None = None
    agent: str | None = None
    step_key: str | None = None
    audit: Sequence[bytes] = ()


@dataclass(slots=True, frozen=True, kw_only=True)
class StateWriteResult:
    """What :meth:`Store.state_put` did.

    ``written``: the entry is the new version (or the one this writer wrote before). Not
    written (a conflict): ``entry`` is the current version, ``None`` if the key does not
    exist. ``woken`` counts the sessions whose watch on the key the write fired.
    """

    written: bool
    entry: StateEntry | None
    woken: int = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class Erasure:
    """What one :meth:`Store.purge` deleted, as the store records it.

    ``subject_ref`` is a keyed fingerprint of the subject (never its name), ``None`` for a
    purge by age. ``sessions`` and ``state_versions`` count the rows deleted; ``key`` says
    whether a subject key was destroyed.
    """

    tenant: str
    reason: Literal["erasure", "retention"]
    subject_ref: str | None = None
    sessions: int = 0
    state_versions: int = 0
    key: bool = False
    at: float = 0.0
    seq: int = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class AuditRow:
    """One stored entry of a tenant's audit log: its ``index``, its ``body`` (the encoded
    event) and the ``leaf`` hash the store computed when it appended it."""

    index: int
    body: bytes
    leaf: bytes


#: The namespace of sessions' audit cursors (:class:`AuditSeal`): where a store that keeps
#: them as interceptor state keeps them (PostgreSQL; SQLite keeps each in its session's
#: row, see :meth:`Store.audit_cursor`).
AUDIT_CURSORS = "convoy.audit.cursor"
#: The age, in seconds from its time, past which a later purge deletes the audit cursor
#: a purge kept of a session it deleted (its tombstone, see :meth:`Store.purge`): a week.
#: A tombstone matters only while an engine may still hold a seal of the session's last
#: run (queued for seconds, or for as long as the store is out of reach).
TOMBSTONE_S = 7 * 86400.0
#: How often a store object looks for tombstones to delete (:meth:`Store.purge`), in
#: seconds by its clock: a retention purge of many batches reads the cursors once, not
#: once a batch (on PostgreSQL, where every live session's cursor is a ``kv`` row, that
#: read takes a fraction of a second per 100,000 sessions).
TOMBSTONE_SWEEP_S = 3600.0


@dataclass(slots=True, frozen=True, kw_only=True)
class AuditSeal:
    """Entries of one session's journal records to append to ``tenant``'s log, with the
    move of the session's audit cursor (:meth:`Store.audit_cursor`) from ``before``
    (``None``: the session has none yet) to ``after``: the store appends the entries only
    if the cursor is still ``before`` (the records were not sealed meanwhile), in the
    transaction that moves it (see :meth:`Store.audit_seal`).

    ``namespace``: where the value is kept, if not with the sessions' cursors (``session_id``
    is then its key): a workflow's audited version is moved so, and its ``config_change``
    appended once however many engines see the new version at once."""

    tenant: str
    session_id: str
    before: str | None
    after: str
    bodies: Sequence[bytes]
    namespace: str = AUDIT_CURSORS


@dataclass(slots=True, frozen=True, kw_only=True)
class StoreSummary:
    """What a store holds (``convoy db info``): its schema version, sessions by status,
    journal entries, keys of shared state (Convoy's own namespaces left out), human tasks
    (open or decided), and tenants (with a session or a state key); the schema add-ons a
    store opened read-only lacks (``convoy db migrate`` applies them)."""

    schema_version: int
    sessions: dict[str, int]
    journal_entries: int
    state_keys: int
    tenants: int
    human_tasks: int = 0
    addons_missing: tuple[str, ...] = ()


AlertStatus = Literal["open", "cleared"]
AlertEvent = Literal["fired", "cleared"]
DeliveryStatus = Literal["pending", "delivered", "given_up"]


@dataclass(slots=True, frozen=True, kw_only=True)
class NewAlert:
    """An alert that fires: ``metric`` of ``subject`` (an agent's name, or the tenant's, as
    ``scope`` says) left its learned band. ``value`` is the observation that fired it,
    ``mean`` / ``deviation`` the baseline, ``threshold`` the band's top; ``detail`` is JSON
    text (error kinds, the observations that led to it)."""

    tenant: str
    scope: Literal["agent", "tenant"]
    subject: str
    metric: str
    value: float
    mean: float
    deviation: float
    threshold: float
    opened: float
    detail: str = "{}"


@dataclass(slots=True, frozen=True, kw_only=True)
class FiredAlert:
    """What :meth:`Store.alert_open` did: ``id`` is the series' open alert; ``opened``
    says whether this call opened it (and queued its ``fired`` events) or adopted the one
    already open (and queued its ``fired`` event only for the webhooks it lacked)."""

    id: int
    opened: bool


@dataclass(slots=True, frozen=True, kw_only=True)
class AlertRow:
    """An alert as the store holds it (``cleared`` and ``cleared_value`` once it cleared)."""

    id: int
    tenant: str
    scope: str
    subject: str
    metric: str
    status: AlertStatus
    value: float
    mean: float
    deviation: float
    threshold: float
    opened: float
    cleared: float | None = None
    cleared_value: float | None = None
    detail: str = "{}"


@dataclass(slots=True, frozen=True, kw_only=True)
class AlertDelivery:
    """One webhook delivery of an alert event, claimed by :meth:`Store.due_deliveries`.
    ``attempts`` counts the attempts made before this one; ``key`` is the event's
    idempotency key (the same for each of its webhooks and every attempt);
    ``claimed_until`` is when the claim runs out (what :meth:`Store.delivery_result` is
    fenced by)."""

    id: int
    url: str
    event: AlertEvent
    attempts: int
    alert: AlertRow
    key: str
    claimed_until: float | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class DeliveryRow:
    """Where the delivery of one alert event to one webhook stands
    (:meth:`Store.alert_deliveries`): ``pending`` (due, or waiting for its next attempt),
    ``delivered`` (at ``delivered``) or ``given_up`` (after ``attempts`` attempts);
    ``last_error`` is the last failed attempt's. ``key`` is ``None`` only on a store opened
    read-only that lacks the add-on keeping it."""

    id: int
    alert_id: int
    url: str
    event: AlertEvent
    status: DeliveryStatus
    attempts: int
    delivered: float | None = None
    next_at: float | None = None
    last_error: str | None = None
    key: str | None = None


@runtime_checkable
class Store(Protocol):
    """Everything Convoy persists. Implementations: :class:`~convoy.stores.SQLiteStore`,
    :class:`~convoy.stores.PostgresStore`."""

    url: str
    #: Opened read-only (``store_from_url(..., read_only=True)``): :meth:`open` creates,
    #: migrates and writes nothing, and the database refuses every write.
    read_only: bool
    #: The store's clock (seconds): leases, timers and records are stamped by it.
    clock: Callable[[], float]

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the schema; refuse a store written by a newer Convoy.

        A ``read_only`` store does neither: it opens a store at this schema version only
        (an older one, or none, is a :class:`~convoy.StoreError` that says to run
        ``convoy db migrate``), applies no schema add-on, and reads a feature whose add-on
        the database lacks as empty (no alerts, no agent configurations, no subjects)."""
        ...

    async def aclose(self) -> None:
        """Commit everything pending, then release every resource."""
        ...

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has run and :meth:`aclose` has not."""
        ...

    async def schema_version(self) -> int | None:
        """The schema version the database holds, read without opening, creating or
        migrating anything (``None``: no Convoy store there yet). Works on a store object
        that is not open; raises :class:`~convoy.StoreError` if the database cannot be
        reached."""
        ...

    async def summary(self) -> StoreSummary:
        """What the store holds, counted across every tenant (see :class:`StoreSummary`)."""
        ...

    # -- sessions ----------------------------------------------------------------------

    def create_session(self, session: NewSession, *, owner: str | None,
                       lease_s: float) -> asyncio.Future[None]:
        """Create a session (claimed by ``owner`` when given) on the group commit, without
        a commit of its own: it joins the next batch (the session's first journal write
        usually). The future may be dropped. An id that exists already is left as it is
        (so a later fenced write of ``owner`` is refused)."""
        ...

    async def create_sessions(self, sessions: Sequence[NewSession], *,
                              owner: str | None = None, lease_s: float = 0.0) -> int:
        """Create many sessions in one transaction (claimed by ``owner`` when given, else
        pending); how many were new. Existing ids are left as they are. A session with a
        ``subject_key`` is created only if the store holds that key for its subject, read
        in the transaction (so that an erasure either deletes it or finds the key gone):
        else nothing is created and a transient ``SubjectKeyGone`` (a
        :class:`~convoy.StoreError`) is raised."""
        ...

    async def claim(self, session_id: str, owner: str, lease_s: float, *,
                    tenant: str | None = None, waiting: bool = False) -> SessionRow | None:
        """Own a runnable session (of ``tenant``, when given): it is ``pending``, or
        ``running`` under an expired lease or under ``owner`` itself, or ``waiting`` with
        its wake time past; with ``waiting``, any waiting session too (to end it:
        ``cancel``). Returns the claimed row, or ``None``."""
        ...

    async def claim_runnable(self, owner: str, lease_s: float, *,
                             workflows: Mapping[str, str], limit: int,
                             tenant: str | None = None) -> list[SessionRow]:
        """Claim up to ``limit`` sessions of the given ``{workflow: version}`` (and of
        ``tenant``, when given) that can run now: pending ones, running ones of other owners
        whose lease expired, and waiting ones whose timer is due. Never the caller's own
        running sessions. A claimed row that does not read back (a value Convoy did not
        write: :class:`~convoy.stores._rows.DamagedRow`) is not returned but escalated, in
        the claim: status ``escalated``, its error a :class:`~convoy.SessionUnreadable`
        record saying what is damaged, owned by nobody (``claimed_rows`` does this)."""
        ...

    async def renew(self, owner: str, lease_s: float) -> int:
        """Extend every lease ``owner`` holds (its reservations' holds too) and add the time
        since the last renewal to their active time. Returns how many sessions it still
        owns."""
        ...

    async def release(self, session_id: str, owner: str,
                      outcome: SessionOutcome | None = None) -> None:
        """Give a session up unfinished (another engine may claim it at once); with
        ``outcome``, its counts so far (steps, tokens, cost) are written too."""
        ...

    async def expire_owner(self, owner: str) -> int:
        """End every lease of ``owner`` (a process known to be dead), and drop the holds of
        its reservations. Returns how many sessions it owned."""
        ...

    async def park(self, session_id: str, owner: str, outcome: SessionOutcome, *,
                   wake_at: float | None, wait_name: str | None) -> None:
        """Release a session that waits for a timer (``wake_at``) and/or a signal
        (``wait_name``: one name, or several joined by :data:`WAIT_NAMES_SEP`, any of
        which wakes it, here and in :meth:`send_signal`). A signal already sent for it,
        or a cancel request (:data:`CANCEL_SIGNAL`, unconsumed), makes it runnable at once
        (``pending``)."""
        ...

    def finish(self, session_id: str, owner: str | None, outcome: SessionOutcome, *,
               tenant: str | None = None) -> asyncio.Future[None]:
        """Record how a session ended. Fenced on ``owner`` (``None``: the session must be
        owned by nobody) and on ``tenant`` when given. Rides the group commit."""
        ...

    async def reopen(self, session_id: str, *, drop_step: str | None = None,
                     journal: StepRecord | None = None, tenant: str | None = None) -> bool:
        """Make a finished (escalated) session runnable again, optionally dropping one
        journal entry or writing one, in one transaction. ``False`` (nothing written) if it
        does not exist (in ``tenant``)."""
        ...

    def update_headers(self, session_id: str, owner: str,
                       headers: Mapping[str, str]) -> asyncio.Future[None]:
        """Persist a running session's headers (fenced). Rides the group commit; nobody
        need await it (its failure is its batch's, seen by the write awaited next: the
        store retrieves it)."""
        ...

    async def set_version(self, session_id: str, version: str, *,
                          tenant: str | None = None) -> None:
        """Move a session (of ``tenant``) that has journaled nothing to another workflow
        version."""
        ...

    async def get_session(self, session_id: str, *,
                          tenant: str | None = None) -> SessionRow | None:
        """One session, or ``None`` if the id is unknown (in ``tenant``)."""
        ...

    async def get_sessions(self, ids: Sequence[str], *, tenant: str | None = None,
                           left_out: list[LeftOut] | None = None) -> dict[str, SessionRow]:
        """The sessions among ``ids`` that exist (in ``tenant``), by id (one query for
        many). A damaged row raises :class:`~convoy.JournalError`, or, with ``left_out``,
        is added to it instead."""
        ...

    async def list_sessions(self, where: SessionFilter, *,
                            left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        """Sessions matching ``where``, oldest first. A damaged row raises
        :class:`~convoy.JournalError`, or, with ``left_out``, is added to it instead (a
        listing shows the rest)."""
        ...

    async def unfinished(self, *, tenant: str | None = None,
                         left_out: list[LeftOut] | None = None) -> list[SessionRow]:
        """Every unfinished session, oldest first (a damaged row: as ``list_sessions``)."""
        ...

    async def counts(self, *, tenant: str | None = None) -> dict[str, int]:
        """Sessions by status."""
        ...

    async def next_wake(self, *, tenant: str | None = None) -> float | None:
        """The earliest timer of a waiting session (of ``tenant``), or ``None``."""
        ...

    # -- the journal ------------------------------------------------------------------

    def append(self, session_id: str, owner: str | None, record: StepRecord, *,
               consume_signal: int | None = None) -> asyncio.Future[None]:
        """Journal one step record (replacing a ``started`` record of the same key).
        Fenced on ``owner``; with ``consume_signal`` the signal is marked consumed in the
        same transaction."""
        ...

    async def load_journal(self, session_id: str, *,
                           tenant: str | None = None) -> dict[str, StepRecord]:
        """A session's journal by step key, as replay consumes it (empty for a session
        unknown in ``tenant``)."""
        ...

    async def journal(self, session_id: str, *, tenant: str | None = None,
                      left_out: list[LeftOut] | None = None) -> list[StepRecord]:
        """Every record of a session (of ``tenant``), in the order it was written; a
        damaged one as :meth:`list_sessions` treats it."""
        ...

    # -- signals ------------------------------------------------------------------------

    async def send_signal(self, session_id: str, name: str, payload: str, *,
                          tenant: str | None = None,
                          sealed_labels: Collection[str] | None = None) -> int:
        """Store a signal; wakes the session if it waits for ``name`` (one of its
        :attr:`SessionRow.wait_names`). Returns its seq
        (> 0), or 0, storing nothing, if there is no such session (in ``tenant``).
        ``sealed_labels``: the outermost labels (:func:`sealed_outer_label`) of the
        session's sealed journal records (a result starting :data:`SEALED_PREFIX`) when
        the sender chose how to write ``payload`` (none: it may be plaintext); if a sealed
        record has another, nothing is stored and the answer is :data:`SEALED_SINCE`
        (checked in the insert's own transaction)."""
        ...

    async def next_signal(self, session_id: str, name: str, *,
                          tenant: str | None = None) -> Signal | None:
        """The oldest unconsumed signal ``name`` of a session (of ``tenant``)."""
        ...

    async def next_signals(self, session_ids: Sequence[str], name: str, *,
                           tenant: str | None = None) -> dict[str, Signal]:
        """:meth:`next_signal` of each of ``session_ids`` (of ``tenant``) that has one, by
        session id: in one query for many (a page of ``convoy sessions list``)."""
        ...

    async def owned_signalled(self, owner: str, name: str) -> list[str]:
        """The ids (sorted) of the sessions ``owner`` runs (``running``, owned by it) that
        have an unconsumed signal ``name``: in one query, which an engine asks at every
        lease renewal for :data:`CANCEL_SIGNAL` (by the owner index and the signals'
        ``(session_id, name)`` index, not by reading the signals table)."""
        ...

    # -- state of interceptors -----------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        """One value of an interceptor's state (``None`` if unset)."""
        ...

    async def kv_all(self, namespace: str) -> dict[str, str]:
        """Every value in ``namespace``, by key (loaded when an interceptor starts)."""
        ...

    def kv_put(self, namespace: str, key: str, value: str | None) -> asyncio.Future[None]:
        """Set (``None``: delete) one value. Rides the group commit."""
        ...

    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        """Set ``value`` unless the key has one; the value it holds after the call (two
        writers racing agree on the first one's). Committed when it returns."""
        ...

    def kv_put_many(self, items: Sequence[tuple[str, str, str]], *,
                    wait: bool = True) -> asyncio.Future[None]:
        """Set many values, ``(namespace, key, value)`` each, in one write: it rides the
        group commit as one (one commit for all of them, not one each). ``wait=False``:
        nobody waits for it, so it commits with the next write (a run's spans, with the
        commit that records how the run ended) instead of on its own."""
        ...

    # -- shared state ---------------------------------------------------------------------

    async def state_get(self, tenant: str, namespace: str, key: str) -> StateEntry | None:
        """The current version of a key, or ``None`` if it was never written."""
        ...

    async def state_put(self, write: StateWrite) -> StateWriteResult:
        """Compare-and-set one key (see :class:`StateWrite`), atomically across every store
        object and process on the same database. A write that lands is kept in the key's
        history, and fires every watch on the key (:meth:`state_watch`) in the same
        transaction. A new version is numbered one past the key's current version; a new
        key's first, one past its tenant's floor (the highest version of the tenant's keys
        a :meth:`purge` deleted whole; 0: none), so a write never gives a key a
        number it had before."""
        ...

    async def state_history(self, tenant: str, namespace: str, key: str, *,
                            limit: int | None = None,
                            left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        """Every version of a key, oldest first (with ``limit``: the newest ``limit``); a
        damaged one as :meth:`list_sessions` treats it."""
        ...

    async def state_list(self, tenant: str, namespace: str, *,
                         left_out: list[LeftOut] | None = None) -> list[StateEntry]:
        """The current version of every key of a namespace, by key; a damaged one as
        :meth:`list_sessions` treats it."""
        ...

    async def state_namespaces(self, tenant: str) -> dict[str, int]:
        """A tenant's namespaces with how many keys each holds, by name."""
        ...

    async def state_watch(self, tenant: str, namespace: str, key: str, *, session_id: str,
                          name: str, after_version: int) -> bool:
        """Ask for the signal ``name`` to be sent to ``session_id`` (of ``tenant``) by the
        first write of a version past ``after_version``. ``True`` (and nothing is
        registered) if the key is already past it. A watch fires once."""

    # -- limits shared by engines ---------------------------------------------------------

    async def reserve(self, id: str, owner: str, holds: Sequence[Hold], *,
                      lease_s: float) -> Reservation:
        """Hold every amount of ``holds`` under the reservation ``id``, or none of them.

        Granted only if, for each scope and unit, ``used + held < limit``, where ``held``
        is what live reservations hold (this one not included): so a limit is exceeded by
        at most what the reservations admitted last turn out to cost beyond it. Atomic
        across every store object and process on the database. The holds belong to
        ``owner`` and lapse ``lease_s`` seconds from now unless :meth:`renew` extends them;
        :meth:`expire_owner` drops them at once."""
        ...

    def settle(self, id: str, spent: Sequence[Spend], *,
               release: Sequence[Spend] | None = None) -> asyncio.Future[None]:
        """Add ``spent`` to what its scopes used and release holds of reservation ``id``
        (those that have not lapsed), in one transaction: all of them, or with
        ``release`` only those amounts (never more than is held; the rest stays held, for
        calls still to come). Rides the group commit."""
        ...

    async def levels(self, scope: str) -> dict[str, Level]:
        """What ``scope`` has used and what live reservations hold on it, by unit (units
        never counted are absent)."""
        ...

    async def take(self, bucket: str, amount: float, *, rate: float, capacity: float,
                   max_wait: float | None = None) -> tuple[bool, float]:
        """Take ``amount`` from a token bucket every engine shares: it holds at most
        ``capacity`` and refills at ``rate`` a second by the store's clock (a new bucket
        is full). The balance may go negative (a debt later takers wait behind). Returns
        ``(taken, wait)``: ``wait`` is the seconds until the amount is covered
        (``min(amount, capacity)`` of it: a take larger than the bucket waits for a full
        one); if that is more than ``max_wait``, nothing is taken."""
        ...

    def give(self, bucket: str, amount: float, *, rate: float,
             capacity: float) -> asyncio.Future[None]:
        """Put ``amount`` back into a bucket (never above ``capacity``; negative: take
        more, without waiting): a take that was cancelled, or what a call used less than
        it took. Rides the group commit."""
        ...

    async def cache_get(self, tenant: str, key: str) -> str | None:
        """A tenant's cached value for ``key``, or ``None`` if there is none or it expired."""
        ...

    def cache_put(self, tenant: str, key: str, value: str, *,
                  ttl: float) -> asyncio.Future[None]:
        """Cache ``value`` for a tenant under ``key`` for ``ttl`` seconds (replacing what
        was there). Rides the group commit."""
        ...

    # -- data subjects -------------------------------------------------------------------

    async def subject_key_get(self, tenant: str, subject: str) -> str | None:
        """The wrapped key of ``tenant``'s data subject ``subject``, or ``None``."""
        ...

    async def subject_key_put(self, tenant: str, subject: str, wrapped: str) -> str:
        """Keep ``wrapped`` as the subject's key unless it has one already; the key the
        store holds after the call (two engines racing to create one agree on it)."""
        ...

    async def subject_key_oldest(self) -> tuple[str, str, str] | None:
        """The subject key the store has held longest, of any tenant, as ``(tenant,
        subject, wrapped)``; ``None`` if it holds none."""
        ...

    async def subject_sessions(self, tenant: str, subject: str) -> list[SessionRow]:
        """Every session of ``tenant`` that names ``subject``, oldest first."""
        ...

    async def state_written_by(self, tenant: str,
                               session_ids: Sequence[str]) -> list[StateEntry]:
        """Every version of shared state that the given sessions (of ``tenant``) wrote."""
        ...

    async def state_created(self, tenant: str,
                            session_ids: Sequence[str]) -> list[tuple[str, str]]:
        """The shared-state keys (of ``tenant``) that one of the given sessions created,
        as ``(namespace, key)`` in order: those whose oldest version one of them wrote (1,
        or past the tenant's floor), but for a key whose creating version a retention purge
        deleted (the versions others wrote stayed): no session created it, until it is
        deleted whole and written again. An erasure deletes these keys whole
        (:meth:`purge`); a subject's export holds every version of them."""
        ...

    async def finished_before(self, cutoff: float, *, tenant: str | None = None,
                              limit: int = 1000) -> list[str]:
        """Ids of finished sessions (of ``tenant``) that finished before ``cutoff``."""
        ...

    async def purge(self, tenant: str, session_ids: Sequence[str], *,
                    reason: Literal["erasure", "retention"], subject: str | None = None,
                    subject_ref: str | None = None,
                    finished_before: float | None = None,
                    audit: Callable[[Erasure], bytes] | None = None) -> Erasure:
        """In one transaction: delete the sessions (of ``tenant``) with their journal,
        signals, watches and spans (:data:`SPANS_NAMESPACE`), every state key one of them
        created (:meth:`state_created`; all its versions, whoever wrote them: an erasure
        only) and every other
        state version they wrote (a key whose current version goes falls back to its
        newest remaining one; a key none of whose versions remains goes), destroy
        ``subject``'s key when given (with the values in :data:`SUBJECT_REFS` that name
        it), and record the :class:`Erasure` (returned). With ``subject``, the sessions
        that name it when the transaction runs are deleted too (and refused while held),
        whether or not ``session_ids`` lists them: one another process created after the
        caller read the list is not left naming an erased subject. With
        ``finished_before`` (a retention purge's cutoff), only those of the sessions that
        are still finished before it when the transaction runs are deleted: one reopened
        since the caller listed it (an escalation answered) is kept. With ``audit``, the
        entry it makes of the recorded erasure is appended to the tenant's audit log in
        the same transaction (a crash after the purge cannot leave an erasure the log never
        heard of); an append the log refuses fails the purge, nothing deleted. It sets
        :data:`COMPACTION_OWED` (to the erasure's number), which :meth:`compact` deletes.

        A ``retention`` purge deletes the state versions the sessions wrote and no other,
        but for the keys they created that are their own (their human tasks, the keys of
        their private namespace ``session:<id>``), which go whole: the keys of shared
        namespaces they created keep the versions other writers made, and have no creator
        from then on (the ``state_orphans`` add-on's table) until they are deleted whole.
        A key whose current version it deletes falls back to its newest remaining
        version's value and writer under the deleted version's number (an erasure's too),
        so that a key's version
        never goes back; a key it deletes whole raises its tenant's floor (the
        ``state_floor`` add-on's table) to the key's version, and a key created later
        starts past it (:meth:`state_put`): a writer that read the deleted key's version
        gets a conflict, never a write against another value under that number.

        Each deleted session's audit cursor is kept as it was, in :data:`AUDIT_CURSORS`
        (its tombstone; SQLite copies it there from the session's row): a seal an engine
        queued before the purge, of records sealed since (an erasure seals them first),
        then fails its compare-and-set (:meth:`audit_seal`) instead of appending them
        again, and one of records never sealed still moves it. A session created later
        under one of those ids starts with no cursor (a trigger of the store's
        ``audit_cursor_reset`` add-on deletes it as the new row is inserted). In the same
        transaction, before it keeps its own, the purge deletes the cursors in
        :data:`AUDIT_CURSORS` of sessions that no longer exist (of any tenant) whose
        value, read as a number, is older than the store's clock minus
        :data:`TOMBSTONE_S`; a value that is not a number as Convoy writes it (``repr``
        of a float) is left. A store object looks for those at its first purge and then
        at most once every :data:`TOMBSTONE_SWEEP_S` (the purges of one retention run
        read them once): a cursor a purge keeps stays until a later purge, however old,
        and one that old may stay until a purge that looks."""
        ...

    async def erasures(self, *, tenant: str | None = None) -> list[Erasure]:
        """Every recorded :class:`Erasure` (of ``tenant``), oldest first."""
        ...

    async def compact(self) -> None:
        """Leave no trace of deleted rows in the files the store can reach (SQLite: WAL
        checkpoint, ``VACUUM``, WAL truncated; PostgreSQL: ``VACUUM FULL`` of the tables a
        purge touches, their planner statistics drawn again and ``pg_statistic`` rewritten,
        or a warning that an administrator must: see
        :mod:`convoy.stores._postgres_stats`), then delete :data:`COMPACTION_OWED`. Slow and
        locking: run it after a purge, not on a hot path."""
        ...

    # -- spend ------------------------------------------------------------------------

    async def tenant_spend(self, tenant: str, since: float, until: float, *,
                           agent: str | None = None) -> tuple[int, float]:
        """Tokens and USD a tenant's model steps journaled in ``[since, until)`` cost (with
        ``agent``: only that agent's steps)."""
        ...

    async def session_spend(self, session_id: str, *,
                            tenant: str | None = None) -> dict[str, tuple[int, float]]:
        """Tokens and USD of a session's (of ``tenant``) journaled model steps, by agent."""
        ...


    # -- alerts ------------------------------------------------------------------------

    async def alert_open(self, alert: NewAlert, webhooks: Sequence[str]) -> FiredAlert:
        """Record an alert that fired, and queue its ``fired`` event for each webhook URL
        (due at once), in one transaction, unless its series (tenant, scope, subject,
        metric) has an open alert already: that one is adopted, and its ``fired`` event
        queued (due at once, with the key it has) for each webhook URL it was not queued
        for, nothing else written. Atomic: a series has one open alert whatever engines
        fire it at once, and an event is queued once per URL whatever engines adopt it."""
        ...

    async def alert_clear(self, alert_id: int, at: float, value: float,
                          webhooks: Sequence[str]) -> bool:
        """Mark an open alert cleared (at ``at``, by the observation ``value``) and queue its
        ``cleared`` event for each webhook URL and each URL its ``fired`` event was queued
        for (once each), in one transaction; a webhook URL the ``fired`` event was not
        queued for gets it first (with the key it has, as :meth:`alert_open` adopting it
        queues it). ``False`` (nothing written) if it is not open."""
        ...

    async def alert_close(self, alert_id: int, at: float, *,
                          tenant: str | None = None) -> bool:
        """Clear the open alert ``alert_id`` (of ``tenant``; ``None``: any tenant's) by hand,
        at ``at``, with no cleared value, and queue its ``cleared`` event for each webhook
        URL its ``fired`` event was queued for, in one transaction. ``False`` (nothing
        written) if there is no such open alert."""
        ...

    async def list_alerts(self, *, tenant: str | None = None, open_only: bool = False,
                          limit: int = 100,
                          left_out: list[LeftOut] | None = None) -> list[AlertRow]:
        """Alerts (of ``tenant``; only open ones with ``open_only``), newest first; a
        damaged one as :meth:`list_sessions` treats it."""
        ...

    async def due_deliveries(self, now: float, *, urls: Sequence[str], limit: int = 50,
                             lease_s: float = 60.0) -> list[AlertDelivery]:
        """Claim up to ``limit`` undelivered webhook events due at ``now`` for the webhook
        ``urls`` (those the caller is configured with; the events of other URLs are left as
        they are, for an engine that has them), oldest first: each is due again ``lease_s``
        later unless :meth:`delivery_result` says otherwise first (so an engine that dies
        mid-delivery loses nothing, and two engines do not deliver one event at once)."""
        ...

    async def delivery_result(self, delivery_id: int, *, attempts: int,
                              delivered: float | None = None, next_at: float | None = None,
                              error: str | None = None,
                              claimed_until: float | None = None) -> bool:
        """Record an attempt: ``delivered`` (when it succeeded), else the ``error`` and when to
        try again (``next_at``; ``None``: given up). With ``claimed_until`` (the claim's
        :attr:`AlertDelivery.claimed_until`), only while that claim still holds the event:
        ``False`` (nothing written) once it ran out and another claim took the event, so a
        late result never overwrites a newer one."""
        ...

    async def alert_deliveries(self, alert_ids: Sequence[int], *,
                               left_out: list[LeftOut] | None = None) -> list[DeliveryRow]:
        """The webhook deliveries of the alerts ``alert_ids``, in the order they were
        queued; a damaged one as :meth:`list_sessions` treats it."""
        ...

    async def redeliver(self, now: float, *, tenant: str | None = None) -> int:
        """Queue the given-up webhook events (of ``tenant``'s alerts; ``None``: every
        tenant's) again, due at ``now``, with their attempts counted from zero and their
        idempotency keys kept. Returns how many."""
        ...

    async def undelivered_webhooks(self, *, tenant: str | None = None) -> list[str]:
        """The webhook URLs that have undelivered (pending or given-up) events (of
        ``tenant``'s alerts; ``None``: every tenant's), sorted."""
        ...

    async def drop_deliveries(self, url: str, *, tenant: str | None = None) -> int:
        """Delete the undelivered (pending or given-up) events queued for the webhook
        ``url`` (of ``tenant``'s alerts; ``None``: every tenant's), in one transaction: for
        a webhook no engine has any more. Delivered events and the alerts are kept.
        Returns how many."""
        ...

    # -- audit log (see convoy.audit) ----------------------------------------------------

    def audit_append(self, tenant: str, bodies: Sequence[bytes], *, wait: bool = True,
                     fence: tuple[str, str] | None = None) -> asyncio.Future[None]:
        """Append entries to ``tenant``'s audit log, in order, with the group commit: the
        store gives them the next indexes and computes their leaf hashes
        (:func:`convoy.audit.entry_leaf`) in the commit's transaction. ``wait=False``:
        join the next batch instead of committing at once (for an entry that goes with a
        journal write about to follow). ``fence=(session id, owner)``: append them only if
        that engine still owns the session when the batch is written (a run's entries go
        with its end, which is fenced the same way); otherwise nothing is appended."""
        ...

    def audit_seal(self, seals: Sequence[AuditSeal]) -> asyncio.Future[list[bool]]:
        """Append each seal's entries, in order, in one write transaction, each only if it
        moves its session's audit cursor (a compare-and-set of :meth:`audit_cursor`, or
        of the value in the seal's ``namespace``; ``before=None``: only if there is
        none). The future
        resolves once committed, to whether each seal moved its cursor (a seal that did
        not appended nothing: another writer sealed those records first)."""
        ...

    async def audit_cursor(self, session_id: str) -> str | None:
        """Session ``session_id``'s audit cursor: the ``after`` of the last
        :class:`AuditSeal` that moved it (``None``: none did). Where it is kept is the
        store's: a seal moves it in the transaction that appends its entries (SQLite keeps
        it in the session's row, which the run that ended just wrote, where a row of its
        own would be written at a random place of a growing index, and reads one an
        earlier release left in :data:`AUDIT_CURSORS` while the row has none; PostgreSQL
        keeps it as interceptor state, :data:`AUDIT_CURSORS`)."""
        ...

    async def audit_size(self, tenant: str) -> int:
        """How many entries ``tenant``'s log has had appended (0 for none)."""
        ...

    async def audit_tenants(self) -> list[str]:
        """The tenants that have an audit log, by name."""
        ...

    async def audit_entries(self, tenant: str, start: int, limit: int) -> list[AuditRow]:
        """Up to ``limit`` stored entries of ``tenant`` from index ``start`` on, by index."""
        ...

    async def audit_entry(self, tenant: str, index: int) -> AuditRow | None:
        """One stored entry, or ``None``."""
        ...

    async def audit_leaves(self, tenant: str, size: int) -> list[bytes]:
        """The stored leaf hashes of the entries below index ``size``, by index."""
        ...

    async def audit_put_checkpoint(self, tenant: str, size: int, body: str) -> bool:
        """Keep a signed checkpoint of ``tenant``'s log at tree ``size``, unless one of that
        size is kept already (it is never replaced); whether it was kept."""
        ...

    async def audit_checkpoints(self, tenant: str) -> list[tuple[int, str]]:
        """The kept checkpoints of ``tenant``, smallest tree first, each as ``(size,
        body)``: the tree size it is kept under (a row's key, which its signed body must
        say too: a row whose key was edited is found by comparing them) and its body."""
        ...


__all__ = [
    "AUDIT_CURSORS",
    "CANCEL_SIGNAL",
    "DAMAGED",
    "RESERVED_SIGNALS",
    "RUNNABLE",
    "SCHEMA_VERSION",
    "STATUSES",
    "UNFINISHED",
    "AlertDelivery",
    "AlertEvent",
    "AlertRow",
    "AlertStatus",
    "AuditRow",
    "AuditSeal",
    "DeliveryRow",
    "DeliveryStatus",
    "Erasure",
    "FiredAlert",
    "Hold",
    "Level",
    "NewAlert",
    "NewSession",
    "Reservation",
    "SessionFilter",
    "SessionOutcome",
    "SessionRow",
    "SessionStatus",
    "Signal",
    "Spend",
    "StateEntry",
    "StateWrite",
    "StateWriteResult",
    "StepRecord",
    "StepStatus",
    "Store",
    "StoreSummary",
]
