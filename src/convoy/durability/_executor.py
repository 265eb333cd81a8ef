"""The step executor: the seam between workflow code and an engine.

:class:`~convoy.Context`, the agent loop and the patterns call only :class:`StepExecutor`
(run a journaled step, now, random, uuid, sleep, wait for a signal). The embedded engine
implements it on a :class:`~convoy.stores.Store` (:class:`JournaledExecutor`); another
engine (Temporal) implements it with activities, timers and signals and runs the same
workflow code.

Replay rules of :class:`JournaledExecutor`: a step already in the journal returns its
recorded result (or raises its recorded error, with its type) without running anything. A
recorded step whose kind, target or input fingerprint differs from what the code now asks
for is non-determinism. A ``started`` record with no outcome (the process died during the
call) is retried only if the step is idempotent; otherwise the session is escalated with
:class:`~convoy.UnknownOutcomeError`, which is itself journaled as the step's outcome.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import random as _random
import uuid as _uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, TypeVar

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from convoy._errors import (
    JournalError,
    NonDeterminismError,
    SessionTerminated,
    SessionUnreadable,
    StoreError,
    UnknownOutcomeError,
    WaitTimeout,
    error_from_record,
    error_to_record,
)
from convoy._text import a_word, escaped, validation_error_kinds
from convoy.durability._signals import Parked, SessionInterrupted
from convoy.stores._protocol import SEALED_PREFIX, StepRecord

if TYPE_CHECKING:
    from convoy.stores._protocol import Store

T = TypeVar("T")
log = logging.getLogger("convoy")
OnNonDeterminism = Literal["error", "warn"]


#: The :func:`fingerprint` (plain) an older Convoy journaled for a step's input, given the
#: record being replayed: replay accepts one of them instead of ``input_hash``, so a
#: journal written before a step's fingerprint changed still replays. Called only when
#: the recorded fingerprint is not ``input_hash``.
Formerly = Callable[[StepRecord], Iterable[str]]


class NonDeterminismWarning(UserWarning):
    """Replay found a changed step input or unused journal entries (``"warn"`` mode)."""


class StepExecutor(Protocol):
    """What workflow code needs from an engine. Keys are positions in the step tree."""

    async def run_step(self, key: str, kind: str, target: str,
                       execute: Callable[[], Awaitable[T]], encode: Callable[[T], str],
                       decode: Callable[[str], T], *, effect: bool = False,
                       idempotent: bool = True, input_hash: str | None = None,
                       agent: str | None = None, config: str | None = None,
                       spend: Callable[[T], tuple[int, int, float]] | None = None,
                       formerly: Formerly | None = None) -> T:
        """Run one step exactly once per session, durably. ``config`` (the taking
        agent's configuration hash) is journaled with the step. ``formerly``: what an
        older Convoy fingerprinted the same input as (see :data:`Formerly`)."""
        ...

    async def now(self, key: str) -> float:
        """Wall-clock time (epoch seconds), recorded the first time and replayed after."""
        ...

    async def random(self, key: str) -> float:
        """A float in [0, 1), recorded the first time and replayed after."""
        ...

    async def uuid(self, key: str) -> str:
        """A UUID4 string, recorded the first time and replayed after."""
        ...

    async def sleep(self, key: str, seconds: float) -> None:
        """A durable timer: after a restart only the time left is slept; a long one parks the
        session."""
        ...

    async def wait_for(self, key: str, name: str, timeout: float | None,  # noqa: ASYNC109
                       accept: Callable[[str], object] | None = None, *,
                       formerly: str | None = None) -> str:
        """The payload (JSON text) of the next signal ``name`` sent to the session that
        ``accept`` takes (a signal whose payload it raises ``ValidationError`` on is
        consumed without ending the wait, and a warning logged). ``formerly``: the name an
        older Convoy gave the same wait; a wait it journaled under that name goes on (or
        replays) under it, as its signal is sent."""
        ...

    def unreadable(self, key: str, target: str, e: Exception, *, idempotent: bool = True
                   ) -> SessionUnreadable:
        """The error that escalates the session at step ``key``, whose journaled result
        does not read back as the step reads it (``e``: what reading it raised)."""
        ...


def fingerprint(text: str) -> str:
    """The digest of what a step is asked (its ``input_hash``): BLAKE2b-128, hex.

    Replay compares it to detect a changed input; the audit log keeps it as the step's
    input hash (a prompt's, a tool's arguments'), so it is a cryptographic hash, not a
    checksum. Records journaled by releases up to 0.1.0 hold an 8-digit CRC-32 instead: replay does
    not compare those (see :data:`LEGACY_FINGERPRINT_LENGTH`)."""
    return blake2b(text.encode(), digest_size=16).hexdigest()


def keyed_fingerprint(key: bytes, fp: str) -> str:
    """A data subject's step's :func:`fingerprint` keyed with ``key`` (the subject's hash
    key): HMAC-SHA256, 128 bits in hex, the same length. Without the key nobody can test
    a guess of what the step was asked against it."""
    return hmac.new(key, b"convoy.journal\x1f" + fp.encode(), "sha256").hexdigest()[:32]


#: The length of the CRC-32 input fingerprints older releases journaled: a record holding
#: one replays without its input being compared (the digests are of different kinds).
LEGACY_FINGERPRINT_LENGTH = 8


#: What the error of a step whose journaled result an erasure sealed for good says (a
#: replay of its session is refused, not reported as diverged).
ERASED_RESULT = "holds the data of a data subject who was erased"


def encode_json(value: Any) -> str:
    return to_json(value).decode()


def decode_json(text: str) -> Any:
    return from_json(text)


def stamp_after(latest: float, now: float) -> float:
    """The time to stamp a session's next record with: ``now`` (the writer's clock), but
    later than ``latest``, the last record the session journaled, so a session's records
    are in time order of writing even when the engine that wrote the previous ones has a
    clock ahead of this one's (an audit cursor, a time, then stays behind every record
    written after it)."""
    return now if now > latest else math.nextafter(latest, math.inf)


class Draining:
    """Whether an engine is stopping gracefully (:meth:`convoy.Engine.drain`): its
    sessions' steps in flight finish and are journaled, and a step that would start next
    does not (its session's run ends :class:`SessionInterrupted`, unfinished, and a later
    run goes on from it). One per engine, shared by its sessions' executors."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


#: The :class:`Draining` of an executor no engine drains (``convoy replay``, tests).
NEVER_DRAINING = Draining()
#: The first and the longest wait between two writes of an outcome the store failed to
#: journal (:meth:`JournaledExecutor._outcome_again`), doubling from one to the other.
_FIRST_DELAY_S, _LAST_DELAY_S = 0.05, 2.0
#: Writes again of one outcome besides one per longest wait in the patience: the waits
#: that double up to the longest (:meth:`JournaledExecutor._outcome_again`).
_FIRST_TRIES = 6


class JournaledExecutor:
    """:class:`StepExecutor` on a store: journal records, replay, durable waits.

    Args:
        store: where the journal is.
        session_id: the session whose steps run here.
        owner: the engine that holds the session's lease (writes are fenced on it);
            ``owner=None`` with ``replay_only`` writes nothing.
        journal: the session's records, consumed as the code asks for them.
        replay_only: ``convoy replay``: every step must come from the journal.
        park_after: a timer or wait longer than this parks the session instead of holding
            its coroutine.
        clock: the wall clock.
    """

    __slots__ = ("_journal", "_last_at", "_recorded", "clock", "draining", "ended", "exhausted",
                 "failed_key", "fingerprint_key", "on_nondeterminism", "outcome_patience",
                 "owner", "park_after", "replay_only", "session_id", "stopped_at", "store",
                 "tap")

    def __init__(self, store: Store, session_id: str, owner: str | None, *,
                 journal: dict[str, StepRecord] | None, replay_only: bool = False,
                 park_after: float = 1.0, clock: Callable[[], float],
                 on_nondeterminism: OnNonDeterminism = "error") -> None:
        self.store = store
        self.session_id = session_id
        self.owner = owner
        self._journal = journal or None
        # The time of the last record the session journaled: every record this run writes
        # is stamped after it (:meth:`_stamp`), whatever this engine's clock says.
        self._last_at = max((r.at for r in journal.values()), default=0.0) \
            if journal else 0.0
        # The steps that had an outcome when this run began (a ``started`` record has
        # none: its step runs again, or fails here): :meth:`recorded`.
        self._recorded = frozenset(k for k, r in journal.items() if r.status != "started") \
            if journal else frozenset()
        self.replay_only = replay_only
        self.park_after = park_after
        self.clock = clock
        self.on_nondeterminism = on_nondeterminism
        self.exhausted = False  # replay asked for a step past the end of the journal
        #: Replay: the step where it reached the end of what the recorded run did (a step
        #: the journal does not hold, a wait no signal ended, a timer that had not fired).
        self.stopped_at: str | None = None
        #: Replay: when the recorded run ended (a timer due later had not fired).
        self.ended: float | None = None
        self.failed_key: str | None = None  # the step whose error ended the session
        #: Called with each record once it is written (the session hooks'
        #: ``journal_taps``), ``None`` for none.
        self.tap: Callable[[StepRecord], None] | None = None
        #: A data subject's session's hash key: its steps' fingerprints are journaled
        #: keyed (:func:`keyed_fingerprint`), ``None`` for plain ones.
        self.fingerprint_key: bytes | None = None
        #: The engine's :class:`Draining`: once it is on, no step starts (see there).
        self.draining = NEVER_DRAINING
        #: How long (seconds) a step's outcome the store failed to journal, transiently, is
        #: written again before the run stops (:meth:`_outcome_again`; the engine's
        #: ``lease_seconds``); 0: not at all.
        self.outcome_patience = 0.0


    @property
    def replaying(self) -> bool:
        """Steps asked for now come from the journal: a resumed session that has not
        caught up with it yet, or ``convoy replay``."""
        return self._journal is not None or self.replay_only

    def recorded(self, key: str) -> bool:
        """Whether step ``key``, or a step under it (``key/...``), had its outcome in the
        journal when this run began: an earlier run of the session took it, so this run
        replays it rather than running it."""
        recorded = self._recorded
        if key in recorded:
            return True
        under = key + "/"
        return any(k.startswith(under) for k in recorded)

    def holds(self, key: str) -> bool:
        """Whether the journal holds a record of step ``key`` that this run has not
        replayed yet (an open wait's ``started`` record too)."""
        return self._journal is not None and key in self._journal

    @property
    def leftover(self) -> list[str]:
        """Journal entries the workflow has not asked for (yet)."""
        return sorted(self._journal) if self._journal else []

    def _nondeterminism(self, message: str, key: str) -> None:
        if self.on_nondeterminism == "warn":
            warnings.warn(message, NonDeterminismWarning, stacklevel=3)
            return
        raise NonDeterminismError(message, key=key)

    def _replay_ends(self, key: str, what: str) -> NoReturn:
        """Replay reached step ``key``, which the recorded run did not finish (``what``
        says how); if nothing was recorded after it, that is where the recorded run
        stopped (:attr:`stopped_at`). Never fired, never delivered: replay stops here."""
        if self._journal is None:
            self.exhausted = True
            if self.stopped_at is None:
                self.stopped_at = key
        raise NonDeterminismError(f"replay of session {self.session_id!r}: {what}", key=key)

    def _replay_parks(self, key: str, what: str, *, wake_at: float | None,
                      wait_names: tuple[str, ...] = ()) -> NoReturn:
        """Replay reached a wait (a timer, a signal) the recorded run was still in when it
        ended (``what`` says which): replay stops there as the run did, parked, firing and
        delivering nothing. (Not an error: in ``ctx.gather`` its sibling branches go on,
        and a failure of theirs that ended the recorded run ends the replay too.)"""
        if self._journal is None:
            self.exhausted = True
            if self.stopped_at is None:
                self.stopped_at = key
        log.debug("replay of session %s: %s", _shown(self.session_id), what)
        raise Parked(wake_at=wake_at, wait_names=wait_names)

    def _take(self, key: str, kind: str, target: str,
              formerly: str | None = None) -> StepRecord | None:
        journal = self._journal
        if journal is None:
            if self.replay_only:
                self._replay_ends(key, f"step {key} ({kind} {target!r}) is not in the journal")
            return None
        rec = journal.pop(key, None)
        if not journal:
            self._journal = None
        if rec is None:
            if self.replay_only:
                raise NonDeterminismError(
                    f"replay of session {self.session_id!r}: step {key} ({kind} {target!r}) "
                    "is not in the journal", key=key)
            return None
        if rec.kind != kind or rec.target not in (target, formerly or target):
            raise NonDeterminismError(
                f"session {self.session_id!r} step {key}: the journal recorded "
                f"{a_word(rec.kind)} step for {rec.target!r} but the workflow code now asks "
                f"for {a_word(kind)} step "
                f"for {target!r}; the workflow changed in a way that breaks determinism "
                "(bump its version and start new sessions)", key=key)
        return rec

    def _formerly(self, rec: StepRecord, formerly: Formerly | None) -> bool:
        """Whether ``rec``'s fingerprint is one ``formerly`` names (plain, or keyed as
        this session's are)."""
        if formerly is None:
            return False
        mac = self.fingerprint_key
        return any(rec.input_hash == fp or (mac is not None and
                                            rec.input_hash == keyed_fingerprint(mac, fp))
                   for fp in formerly(rec))

    def unreadable(self, key: str, target: str, e: Exception, *, idempotent: bool = True
                   ) -> SessionUnreadable:
        """The escalation of a session whose journaled step ``key`` does not read back as
        the step reads it (``e``: what reading it raised, named by its type alone: its
        message may quote the result). Approving it runs that step again: for a step that
        is not ``idempotent``, the message says to answer it with the result instead."""
        self.failed_key = key
        what = (f"session {self.session_id!r} step {key} ({escaped(target)}): its journaled "
                f"result does not read back ({type(e).__name__}): the store was edited or "
                "damaged, or the code now reads that step's result otherwise")
        if self.replay_only:  # (a replay writes nothing: no escalation to answer)
            return SessionUnreadable(what)
        return SessionUnreadable(what + (
            "; approve this escalation in 'convoy inbox' to run the step again, answer it "
            "with the step's result, or reject it to fail the session" if idempotent else
            "; the step is not idempotent and the journal says it ran: answer this "
            "escalation in 'convoy inbox' with the step's result (approving runs it "
            "again), or reject it to fail the session"))

    def _number(self, key: str, target: str, value: Any) -> float:
        """A journaled clock, random number or timer, as a float."""
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.unreadable(key, target, e) from None

    def _stamp(self) -> float:
        """The time of a record this run writes (:func:`stamp_after`)."""
        self._last_at = now = stamp_after(self._last_at, self.clock())
        return now

    async def _write(self, record: StepRecord, consume_signal: int | None = None) -> None:
        if self.owner is None:
            return
        record.at = self._stamp()
        try:
            await self.store.append(self.session_id, self.owner, record,
                                    consume_signal=consume_signal)
        except StoreError as e:
            await self._outcome_again(record, e, consume_signal)
        if self.tap is not None:
            try:
                self.tap(record)
            except Exception:  # (the record is committed: the step goes on as journaled)
                journal_tap_raised(self.session_id, record,
                                       of_subject=self.fingerprint_key is not None)

    async def run_step(self, key: str, kind: str, target: str,
                       execute: Callable[[], Awaitable[T]], encode: Callable[[T], str],
                       decode: Callable[[str], T], *, effect: bool = False,
                       idempotent: bool = True, input_hash: str | None = None,
                       agent: str | None = None, config: str | None = None,
                       spend: Callable[[T], tuple[int, int, float]] | None = None,
                       formerly: Formerly | None = None) -> T:
        plain = input_hash
        if self.fingerprint_key is not None and input_hash is not None:
            input_hash = keyed_fingerprint(self.fingerprint_key, input_hash)
        # Live (no journal left, not a replay): the common path, with no lookup at all.
        rec = None if self._journal is None and not self.replay_only else \
            self._take(key, kind, target)
        if rec is not None:
            if input_hash is not None and rec.input_hash is not None and \
                    rec.input_hash not in (input_hash, plain) and \
                    len(rec.input_hash) != LEGACY_FINGERPRINT_LENGTH and \
                    not self._formerly(rec, formerly):
                # (plain: journaled by a Convoy that did not key a subject's fingerprints)
                changed = "the workflow or its input changed" if not (
                    rec.config and config and rec.config != config) else (
                    f"its agent's configuration changed (recorded {rec.config}, now "
                    f"{config}: its instructions, model, tools or policies)")
                self._nondeterminism(
                    f"session {self.session_id!r} step {key}: the {kind} step for {target!r} "
                    f"is now asked with a different input than the journal recorded; "
                    f"{changed} (bump its version and start new sessions)", key)
            if rec.status == "completed":
                if rec.result is not None and rec.result.startswith(SEALED_PREFIX):
                    # (``convoy.privacy``: its subject key was destroyed)
                    raise JournalError(
                        f"session {self.session_id!r} step {key}: its journaled result "
                        f"{ERASED_RESULT}, so the session cannot go on")
                try:
                    return decode(rec.result or "")
                except Exception as e:
                    raise self.unreadable(key, target, e, idempotent=idempotent) from None
            if rec.status == "failed":
                try:
                    failure = error_from_record(decode_json(rec.result or "{}"))
                except Exception as e:
                    raise self.unreadable(key, target, e, idempotent=idempotent) from None
                raise failure
            # ``started`` with no outcome: the process died during the call.
            if not idempotent:
                err = UnknownOutcomeError(
                    f"session {self.session_id!r} step {key}: {kind} {target!r} started "
                    "and its outcome was never journaled (the process was killed, or the "
                    "store failed as it was written); it is not idempotent, so it is not "
                    "retried: a human must check whether it took effect")
                await self._fail(key, kind, target, input_hash, agent, err, config, rec.began)
                raise err
            if self.replay_only:
                raise NonDeterminismError(
                    f"replay of session {self.session_id!r}: step {key} never completed",
                    key=key)
        if self.draining.on:
            raise SessionInterrupted(
                f"session {self.session_id!r}: its engine is stopping, so step {key} did not "
                "start; the session goes on from there in its next run", refused_step=True)
        began = self.clock()  # (journaled: a step's span is derived from its record)
        if effect:
            await self._write(StepRecord(key=key, kind=kind, target=target, status="started",
                                         input_hash=input_hash, agent=agent, config=config,
                                         began=began))
        try:
            value = await execute()
        except (Exception, SessionTerminated) as e:
            if isinstance(e, NonDeterminismError):
                raise
            await self._fail(key, kind, target, input_hash, agent, e, config, began)
            raise
        if spend is None:
            record = StepRecord(key=key, kind=kind, target=target, status="completed",
                                result=encode(value), input_hash=input_hash, agent=agent,
                                config=config, began=began)
        else:
            tokens_in, tokens_out, cost = spend(value)
            record = StepRecord(key=key, kind=kind, target=target, status="completed",
                                result=encode(value), input_hash=input_hash, agent=agent,
                                input_tokens=tokens_in, output_tokens=tokens_out, cost=cost,
                                config=config, began=began)
        if self.owner is not None:  # ``_write``, inlined: once per step
            record.at = self._last_at = stamp_after(self._last_at, self.clock())
            try:
                await self.store.append(self.session_id, self.owner, record)
            except StoreError as e:
                await self._outcome_again(record, e)
            if self.tap is not None:
                try:
                    self.tap(record)
                except Exception:  # (committed: the step goes on as journaled)
                    journal_tap_raised(self.session_id, record,
                                       of_subject=self.fingerprint_key is not None)
        return value

    async def _outcome_again(self, record: StepRecord, error: StoreError,
                             consume_signal: int | None = None) -> None:
        """Write a step's outcome the store failed to journal again, while its error is
        transient (a lost connection, a database restarting, a lock), for up to
        :attr:`outcome_patience` seconds, backing off: the step ran (a payment made, a
        model paid for), and a run that stopped now would leave it to the next one to run
        again, or to escalate if it is not idempotent. The write is an upsert fenced by the
        session's owner: one that lands twice lands once, and one after another engine took
        the session over is refused (:class:`LeaseLost`). Raises
        :class:`SessionInterrupted` once the store's error is not transient, or patience
        runs out (saying, on the ``convoy`` logger, that the outcome is lost); a step's
        ``started`` record is not written again (the step has not run: stopping costs
        nothing), nor is a record that consumes a signal (the signal stays, for the next
        run's wait to take)."""
        patience = self.outcome_patience
        if not math.isfinite(patience):  # (an engine refuses it; one made by hand: a day)
            patience = 86_400.0
        ran = record.status != "started" and consume_signal is None
        deadline = self.clock() + patience
        delay = _FIRST_DELAY_S
        # (bounded by tries too, as many as the waits that fill the patience: a clock that
        # stands still, a test's, ends it)
        tries = int(patience / _LAST_DELAY_S) + _FIRST_TRIES
        while error.transient and ran and self.clock() < deadline and tries > 0:
            tries -= 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_DELAY_S)
            try:
                await self.store.append(self.session_id, self.owner or "", record,
                                        consume_signal=consume_signal)
                return
            except StoreError as e:
                error = e
        if ran and patience > 0:
            from convoy.privacy._withheld import WITHHELD, SessionText

            log.warning("session %s step %s: the %s step %r ran, and its outcome could not "
                        "be journaled (%s): the session stops unfinished; its next run runs "
                        "the step again, or escalates the session if the step is not "
                        "idempotent", self.session_id, record.key, record.kind,
                        WITHHELD if self.fingerprint_key is not None else
                        SessionText(record.target), error)
        raise SessionInterrupted(str(error), cause=error) from None

    async def _fail(self, key: str, kind: str, target: str, input_hash: str | None,
                    agent: str | None, error: BaseException,
                    config: str | None = None, began: float = 0.0) -> None:
        self.failed_key = key
        await self._write(StepRecord(key=key, kind=kind, target=target, status="failed",
                                     result=encode_json({**error_to_record(error), "key": key}),
                                     input_hash=input_hash, agent=agent, config=config,
                                     began=began))

    # -- values the workflow must not compute itself ---------------------------------------

    async def _value(self, key: str, name: str, make: Callable[[], Any]) -> Any:
        async def execute() -> Any:
            return make()

        return await self.run_step(key, "effect", name, execute, encode_json, decode_json)

    async def now(self, key: str) -> float:
        return self._number(key, "clock", await self._value(key, "clock", self.clock))

    async def random(self, key: str) -> float:
        return self._number(key, "random", await self._value(key, "random", _random.random))

    async def uuid(self, key: str) -> str:
        return str(await self._value(key, "uuid", lambda: str(_uuid.uuid4())))

    # -- durable waits ---------------------------------------------------------------------

    async def sleep(self, key: str, seconds: float) -> None:
        clock = self.clock
        wake_at = self._number(key, "timer",
                               await self._value(key, "timer", lambda: clock() + seconds))
        if self.replay_only:
            if self.ended is not None and wake_at > self.ended:
                self._replay_parks(key, f"timer {key} had not fired when the session ended",
                                   wake_at=wake_at)
            return
        delay = wake_at - clock()
        if delay <= 0:
            return
        if delay > self.park_after:
            raise Parked(wake_at=wake_at)
        await asyncio.sleep(delay)

    async def wait_for(self, key: str, name: str, timeout: float | None,  # noqa: ASYNC109
                       accept: Callable[[str], object] | None = None, *,
                       formerly: str | None = None) -> str:
        rec = self._take(key, "wait", name, formerly)
        if rec is not None:
            name = rec.target  # (``formerly``: journaled under the former name, it waits on)
        target = name
        if rec is not None:
            if rec.status == "completed":
                return rec.result or "null"
            try:
                if rec.status == "failed":
                    failure = error_from_record(decode_json(rec.result or "{}"))
                else:
                    opened = decode_json(rec.result or "{}")
                    deadline, refusals = opened.get("deadline"), opened.get("refused")
            except Exception as e:
                raise self.unreadable(key, name, e) from None
            if rec.status == "failed":
                raise failure
            began = rec.began or rec.at  # (a record of a Convoy that kept no start: its time)
        else:
            began = self.clock()
            deadline = None if timeout is None else began + timeout
            refusals = None
            await self._write(StepRecord(key=key, kind="wait", target=target, status="started",
                                         result=encode_json({"deadline": deadline}),
                                         began=began))
        if self.replay_only:
            self._replay_parks(key, f"wait {key} for {name!r} never completed",
                               wake_at=deadline, wait_names=(name,))
        while True:
            try:
                signal = await self.store.next_signal(self.session_id, name)
            except StoreError as e:
                raise SessionInterrupted(str(e), cause=e) from None
            if signal is None:
                break
            refused = _refusal(accept, signal.payload)
            if refused is None:
                await self._write(StepRecord(key=key, kind="wait", target=target,
                                             status="completed", result=signal.payload,
                                             began=began),
                                  consume_signal=signal.seq)
                return signal.payload
            # Consumed with the wait's own record written again, counting the refusal (so
            # both land, or neither): the wait goes on, and ``convoy sessions show`` says
            # what was refused long after this process's warning is gone.
            refusals = refused_signals(refusals, signal.at, refused)
            await self._write(StepRecord(key=key, kind="wait", target=target, status="started",
                                         result=encode_json({"deadline": deadline,
                                                             "refused": refusals}),
                                         began=began),
                              consume_signal=signal.seq)
            log.warning("session %s refused signal %s (sent at %s): its payload does not "
                        "validate as the wait's type: %s; the session still waits for a "
                        "valid one", _shown(self.session_id), _shown(name), _when(signal.at),
                        refused)
        if deadline is not None and self.clock() >= deadline:
            err = WaitTimeout(f"session {self.session_id!r} waited for signal {name!r} past "
                              f"its timeout of {timeout if timeout is not None else '?'}s "
                              f"(step {key})")
            await self._fail(key, "wait", target, None, None, err, None, began)
            raise err
        raise Parked(wake_at=deadline, wait_names=(name,))


def refused_signals(before: object, sent_at: float, why: str) -> dict[str, Any]:
    """What an open wait's record keeps of the signals it refused, one more added: how
    many (``count``), when the last was sent and why it was refused (:func:`_refusal`:
    error counts and kinds, never the payload). ``before``: what the record held (an
    earlier Convoy's record holds none)."""
    count = before.get("count") if isinstance(before, dict) else None
    n = count if type(count) is int and count > 0 else 0
    return {"count": n + 1, "last_sent_at": sent_at, "last_why": why}


def signals_refused(record: StepRecord) -> dict[str, Any] | None:
    """What the open wait ``record`` (a ``wait`` step ``started``) says of the signals it
    refused (:func:`refused_signals`), ``None`` for none, or for a record that does not
    hold it as this Convoy writes it (an earlier Convoy's, or one edited by hand)."""
    if record.kind != "wait" or record.status != "started" or not record.result:
        return None
    try:
        opened = from_json(record.result)
    except ValueError:
        return None
    refused = opened.get("refused") if isinstance(opened, dict) else None
    if not isinstance(refused, dict):
        return None
    count, at, why = refused.get("count"), refused.get("last_sent_at"), refused.get("last_why")
    if type(count) is not int or count < 1 or not isinstance(why, str) or \
            not isinstance(at, int | float) or isinstance(at, bool) or \
            not math.isfinite(at) or not 0 <= at < 1e11:
        return None
    return {"count": count, "last_sent_at": float(at), "last_why": why}


def _refusal(accept: Callable[[str], object] | None, payload: str) -> str | None:
    """Why ``accept`` refuses ``payload``, ``None`` if it takes it: how many errors, of
    which kinds (Pydantic's error types, such as ``bool_parsing`` or ``missing``). Not
    where, nor Pydantic's messages: a location can be one of the payload's keys, and a
    message can quote its values (an e-mail address as a key, a union's tag), which a log
    line must not hold; the kinds are names of the code. One short line, however large
    the payload."""
    if accept is None:
        return None
    try:
        accept(payload)
    except ValidationError as e:
        return validation_error_kinds(e)
    return None


def _shown(name: str) -> str:
    """A name in a log line: quoted, escaped (never obeyed by a terminal)."""
    return f"'{escaped(name)}'"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def journal_tap_raised(session_id: str, record: StepRecord, *, of_subject: bool = False
                       ) -> None:
    """Log a journal tap that raised on ``record`` (which is committed: its step goes on as
    journaled, and the other taps are told all the same); in a data subject's session
    (``of_subject``), the error's type alone."""
    from convoy.privacy._withheld import log_raised

    log_raised(log, "a journal tap raised on the record of step %s (%s %s) of session %s; "
               "the step goes on as journaled", record.key, record.kind, record.target,
               session_id, of_subject=of_subject)


def journal_tap_of(taps: Sequence[Callable[[StepRecord], None]], session_id: str, *,
                   of_subject: bool = False) -> Callable[[StepRecord], None]:
    """One journal tap (:attr:`JournaledExecutor.tap`) that tells each of ``taps`` in
    turn: one that raises is logged (the error's type alone in a data subject's session,
    ``of_subject``), and the others are told all the same (the executor logs a lone one
    that raises)."""
    if len(taps) == 1:
        return taps[0]
    if len(taps) == 2:  # (the common pair, live tracing's and audit's: no loop per call)
        first, second = taps

        def both(record: StepRecord) -> None:
            try:
                first(record)
            except Exception:
                journal_tap_raised(session_id, record, of_subject=of_subject)
            second(record)  # (the executor logs it if it raises)

        return both
    every = tuple(taps)

    def tell(record: StepRecord) -> None:
        for tap in every:
            try:
                tap(record)
            except Exception:
                journal_tap_raised(session_id, record, of_subject=of_subject)

    return tell


__all__ = ["NEVER_DRAINING", "Draining", "Formerly", "JournaledExecutor",
           "NonDeterminismWarning", "OnNonDeterminism", "StepExecutor", "decode_json",
           "encode_json", "fingerprint", "journal_tap_of", "journal_tap_raised",
           "refused_signals", "signals_refused"]
