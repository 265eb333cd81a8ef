"""Where the operations of a :class:`~convoy.State` handle go.

* :class:`JournaledAccess` (workflow code, ``ctx.state``): every operation is a step of its
  own, through the state interceptor chain and the step executor: journaled, replayed
  from the journal on resume or ``convoy replay``, so a resumed session sees exactly what
  it saw, and a write is never applied twice.
* :class:`ToolAccess` (a tool's ``ctx.state``): the tool call is the journaled step;
  operations inside it pass the interceptor chain and each write names its writer (the
  tool call's step key and the operation's number in the call), so a tool run again after
  a crash does not apply a write twice.
* :class:`DirectAccess` (``engine.state``, ``convoy state``): the store itself, outside
  any session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import shlex
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from convoy._errors import JournalError, StateConflict, UserError, WaitTimeout
from convoy._text import (
    quoted,
    readable_validation_error,
    short,
    validation_error_kinds,
)
from convoy.durability._executor import Formerly, JournaledExecutor, fingerprint
from convoy.interceptors._base import StateInput, StateOp, state_target
from convoy.privacy._seal import is_sealed
from convoy.state._reader import STATE_READER
from convoy.stores._protocol import StateEntry, StateWrite

if TYPE_CHECKING:
    from convoy.runtime._context import Context
    from convoy.runtime._session import SessionState
    from convoy.stores._protocol import Store

T = TypeVar("T")
#: Whether a wait is over with this version of the key (``None``: no key); it raises
#: :class:`UnusableVersion` for a version it cannot use.
Satisfied = Callable[[StateEntry | None], bool]

log = logging.getLogger("convoy")


class UnusableVersion(Exception):
    """A version of a key that a wait cannot use: its value is not a valid value of the
    waiting handle's type (a ``convoy state set``, an untyped handle or a session that
    reads the key with another type wrote it). Raised by a wait's ``satisfied``; the wait
    goes past it (see :meth:`JournaledAccess.wait`), it never reaches workflow code."""

    def __init__(self, version: int, type_name: str, error: ValidationError) -> None:
        super().__init__(f"version {version} is not a valid {type_name}")
        self.version = version
        self.type_name = type_name
        self.error = error

_ENTRY: TypeAdapter[StateEntry | None] = TypeAdapter(StateEntry | None)
_ENTRIES: TypeAdapter[list[StateEntry]] = TypeAdapter(list[StateEntry])
_FLAG: TypeAdapter[bool] = TypeAdapter(bool)
_CODECS: dict[str, TypeAdapter[Any]] = {"get": _ENTRY, "set": _ENTRY, "history": _ENTRIES,
                                        "keys": _ENTRIES, "watch": _FLAG}


#: How the signal of a watch on shared state begins (:func:`watch_signal`).
WATCH_PREFIX = "convoy.state:"
_ENCODED = re.compile("%(25|2F)")


def watch_signal(namespace: str, key: str) -> str:
    """The signal a write of a watched key sends to the waiting session:
    ``convoy.state:NAMESPACE/KEY``, with each ``%`` and ``/`` of the namespace written as
    ``%25`` and ``%2F``, so that the first ``/`` ends it: namespace ``a/b`` with key ``c``
    and namespace ``a`` with key ``b/c`` are two signals (a write to one must not wake a
    wait on the other). A namespace without either reads as it is."""
    encoded = namespace.replace("%", "%25").replace("/", "%2F")
    return f"{WATCH_PREFIX}{encoded}/{key}"


def former_watch_signal(namespace: str, key: str) -> str:
    """:func:`watch_signal` as Convoy named it before it encoded the namespace: the name
    the waits and watches of sessions journaled then carry, under which they go on."""
    return f"{WATCH_PREFIX}{namespace}/{key}"


def watched(name: str) -> tuple[str, str] | None:
    """The namespace (decoded) and key of a :func:`watch_signal` name, ``None`` for another
    signal. (A name of a Convoy before the encoding reads as split at its first ``/``.)"""
    if not name.startswith(WATCH_PREFIX):
        return None
    namespace, sep, key = name[len(WATCH_PREFIX):].partition("/")
    if not sep:
        return None
    return _ENCODED.sub(lambda m: "%" if m.group(1) == "25" else "/", namespace), key


def conflict(namespace: str, key: str, expected: int | None,
             current: StateEntry | None) -> StateConflict:
    """The error of a stale write, carrying what the key holds now (raw JSON value)."""
    from pydantic_core import from_json

    version = current.version if current is not None else 0
    value = from_json(current.value) if current is not None else None
    now = f"it is at version {version}" if version else "it does not exist"
    return StateConflict(
        f"state {namespace}/{key} changed since it was read: the write expected version "
        f"{expected or 0} but {now}; read it again and decide again",
        namespace=namespace, key=key, expected_version=expected or 0,
        current_version=version, current_value=value)


async def run_state_op(i: StateInput) -> Any:
    """The end of the state interceptor chain: the operation on the session's store, on
    behalf of the session (:data:`~convoy.state._reader.STATE_READER`)."""
    token = STATE_READER.set(i.session.id)
    try:
        return await _state_op(i)
    finally:
        STATE_READER.reset(token)


async def _state_op(i: StateInput) -> Any:
    s = i.session
    rt = s.runtime
    store = rt.store
    if i.op == "get":
        return await store.state_get(s.tenant, i.namespace, i.state_key)
    if i.op == "set":
        res = await store.state_put(StateWrite(
            tenant=s.tenant, namespace=i.namespace, key=i.state_key, value=i.value or "null",
            expected_version=i.expected_version, session_id=s.id, agent=i.agent,
            step_key=i.key))
        if res.woken:
            rt.wake()
        if not res.written:
            raise conflict(i.namespace, i.state_key, i.expected_version, res.entry)
        return res.entry
    if i.op == "history":
        return await store.state_history(s.tenant, i.namespace, i.state_key, limit=i.limit)
    if i.op == "keys":
        return await store.state_list(s.tenant, i.namespace)
    return await store.state_watch(s.tenant, i.namespace, i.state_key, session_id=s.id,
                                   name=watch_signal(i.namespace, i.state_key),
                                   after_version=i.after_version)


def set_fingerprint(expected: int | None, value: str | None) -> str:
    """The step fingerprint of a journaled write of ``value`` (JSON text) against
    ``expected``."""
    return fingerprint(f"{expected}\x1f{value}")


class StateAccess(Protocol):
    """The operations a :class:`~convoy.State` handle is built on."""

    async def get(self, namespace: str, key: str) -> StateEntry | None: ...

    async def put(self, namespace: str, key: str, value: str,
                  expected: int | None) -> StateEntry:
        """Compare-and-set; raises :class:`~convoy.StateConflict` when stale."""
        ...

    async def history(self, namespace: str, key: str, limit: int | None) -> list[StateEntry]:
        ...

    async def items(self, namespace: str) -> list[StateEntry]: ...

    async def wait(self, namespace: str, key: str, satisfied: Satisfied,
                   timeout: float | None) -> StateEntry | None:  # noqa: ASYNC109
        """Read the key until ``satisfied``, parking durably between changes."""
        ...

    async def pause(self, most: float) -> None:
        """Sleep a random time up to ``most`` seconds (between two attempts of a write)."""
        ...

    def scoped(self) -> StateAccess:
        """Access for one compound operation (an update and its retries, a wait and its
        reads): in workflow code its steps are keyed under one position of the caller, so
        the steps after it keep their keys however many attempts it took."""
        ...


async def _jitter(most: float) -> None:
    await asyncio.sleep(random.random() * most)


class _SessionAccess:
    """Operations of a session: each goes through its state interceptor chain."""

    __slots__ = ()

    async def _op(self, op: StateOp, namespace: str, key: str = "", *,
                  value: str | None = None, expected: int | None = None,
                  after: int = 0, limit: int | None = None) -> Any:
        raise NotImplementedError

    async def get(self, namespace: str, key: str) -> StateEntry | None:
        entry: StateEntry | None = await self._op("get", namespace, key)
        return entry

    async def put(self, namespace: str, key: str, value: str,
                  expected: int | None) -> StateEntry:
        entry: StateEntry = await self._op("set", namespace, key, value=value,
                                           expected=expected)
        return entry

    async def history(self, namespace: str, key: str, limit: int | None) -> list[StateEntry]:
        entries: list[StateEntry] = await self._op("history", namespace, key, limit=limit)
        return entries

    async def items(self, namespace: str) -> list[StateEntry]:
        entries: list[StateEntry] = await self._op("keys", namespace)
        return entries


class JournaledAccess(_SessionAccess):
    """State operations of workflow code: each one a journaled step at ``ctx``'s next key."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def scoped(self) -> StateAccess:
        return JournaledAccess(self.ctx.child(deeper=False))

    async def _op(self, op: StateOp, namespace: str, key: str = "", *,
                  value: str | None = None, expected: int | None = None,
                  after: int = 0, limit: int | None = None, input_hash: str | None = None,
                  formerly: Formerly | None = None) -> Any:
        """One operation as a journaled step. A ``set``'s step fingerprint is
        ``input_hash`` if given, else the digest of its expected version and value;
        ``formerly``: see :data:`~convoy.durability._executor.Formerly`."""
        ctx = self.ctx
        s = ctx.session
        step = ctx.next_key()
        s.count_step(step)
        chain = s.runtime.state_chain
        i = StateInput(session=s, key=step, op=op, namespace=namespace, state_key=key,
                       value=value, expected_version=expected, after_version=after,
                       limit=limit)

        async def execute() -> Any:
            return await chain.call(i)

        codec = _CODECS[op]
        return await s.executor.run_step(
            step, "state", state_target(op, namespace, key), execute,
            lambda v: codec.dump_json(v).decode(), codec.validate_json,
            input_hash=set_fingerprint(expected, value) if op == "set" and input_hash is None
            else input_hash, formerly=formerly)

    async def pause(self, most: float) -> None:
        # A durable timer; its length is drawn from the session and step, so it needs no
        # journaled random number and differs between sessions that collided.
        ctx = self.ctx
        s = ctx.session
        step = ctx.next_key()
        s.count_step(step)
        share = zlib.crc32(f"{s.id}/{step}".encode()) / 2**32
        await s.executor.sleep(step, share * most)

    async def wait(self, namespace: str, key: str, satisfied: Satisfied,
                   timeout: float | None) -> StateEntry | None:  # noqa: ASYNC109
        """Read the key until ``satisfied``, parking between changes. A version it cannot
        use (:class:`UnusableVersion`) does not end the wait: the session goes on waiting
        for the next version, and says so in one warning (when it reads it, not as it
        replays the read), and a timeout names it."""
        ctx = self.ctx
        s = ctx.session
        deadline = None if timeout is None else await ctx.now() + timeout
        name = watch_signal(namespace, key)
        former = former_watch_signal(namespace, key)
        formerly = None if former == name else former
        unusable: UnusableVersion | None = None
        while True:
            replayed = _replays(s.executor, ctx.peek_key())
            entry = await self.get(namespace, key)
            try:
                if satisfied(entry):
                    return entry
            except UnusableVersion as e:
                unusable = e
                if not replayed:
                    self._warn_unusable(namespace, key, e)
            seen = entry.version if entry is not None else 0
            watch = ctx.peek_key()
            if await self._op("watch", namespace, key, after=seen):
                continue  # it changed between the read and the watch: read it again
            step = ctx.next_key()
            s.count_step(step)
            if formerly is not None:
                await self._watch_again(watch, step, namespace, key, name, seen)
            left = None if deadline is None else max(0.0, deadline - s.runtime.clock())
            try:
                # (``formerly``: a wait journaled before the namespace was encoded goes
                # on under the name it was journaled with, which its watch sends)
                await s.executor.wait_for(step, name, left, formerly=formerly)
            except WaitTimeout:
                wrong = "" if unusable is None else (
                    f"; version {unusable.version} of it was written meanwhile, not a "
                    f"valid {unusable.type_name}")
                raise WaitTimeout(f"session {s.id!r} waited for state {namespace}/{key} "
                                  f"past its timeout of {timeout}s (step {step}){wrong}"
                                  ) from None

    def _warn_unusable(self, namespace: str, key: str, e: UnusableVersion) -> None:
        """The one line that says a wait went past version ``e.version`` and how to write
        a valid one. What was wrong in it is said by field and message, or, in a data
        subject's session (or one that read a subject's data), by the kinds of errors
        alone: a log line is kept beyond ``convoy erase``'s reach."""
        s = self.ctx.session
        read = getattr(s.runtime.store, "read_personal_data", None)
        personal = s.subject is not None or (read is not None and read(s.id))
        why = validation_error_kinds(e.error) if personal else \
            short(readable_validation_error(e.error), 300)
        cmd = shlex.join(["convoy", "state", "set", namespace, key, "JSON",
                          "--expected-version", str(e.version), "--tenant", s.tenant])
        log.warning("session %s waits for state %s: %s (%s); it goes on waiting; write a "
                    "valid one: %s", quoted(s.id), short(f"{namespace}/{key}", 120),
                    e.args[0], why, cmd)

    async def _watch_again(self, watch: str, step: str, namespace: str, key: str,
                           name: str, seen: int) -> None:
        """Register the watch again under ``name`` when an earlier run journaled it
        (step ``watch``) but not the wait after it (step ``step``: that run stopped in
        between): a Convoy that did not encode namespaces registered it under the former
        name, which would never wake the wait this run opens under ``name``. If the key
        changed meanwhile (its former watch fired), the wait gets its signal now."""
        s = self.ctx.session
        executor = s.executor
        if not isinstance(executor, JournaledExecutor) or executor.replay_only or \
                not executor.recorded(watch) or executor.holds(step):
            return
        store = s.runtime.store
        if await store.state_watch(s.tenant, namespace, key, session_id=s.id, name=name,
                                   after_version=seen):
            now = await store.state_get(s.tenant, namespace, key)
            await store.send_signal(s.id, name, json.dumps(
                {"namespace": namespace, "key": key,
                 "version": now.version if now is not None else 0}), tenant=s.tenant)


def _replays(executor: object, key: str) -> bool:
    """Whether step ``key`` comes from the journal (a resumed session replaying what an
    earlier run did, or ``convoy replay``): what it read was said when it was read."""
    if isinstance(executor, JournaledExecutor):
        return executor.replay_only or executor.holds(key)
    return bool(getattr(executor, "replaying", False))


class ToolAccess(_SessionAccess):
    """State operations inside one tool call (the call itself is the journaled step)."""

    __slots__ = ("agent", "n", "session", "step_key")

    def __init__(self, session: SessionState, step_key: str, agent: str) -> None:
        self.session = session
        self.step_key = step_key
        self.agent = agent
        self.n = 0

    async def _op(self, op: StateOp, namespace: str, key: str = "", *,
                  value: str | None = None, expected: int | None = None,
                  after: int = 0, limit: int | None = None) -> Any:
        s = self.session
        writer = f"{self.step_key}#{self.n}"
        self.n += 1
        return await s.runtime.state_chain.call(StateInput(
            session=s, key=writer, op=op, namespace=namespace, state_key=key, value=value,
            expected_version=expected, agent=self.agent, limit=limit))

    async def wait(self, namespace: str, key: str, satisfied: Satisfied,
                   timeout: float | None) -> StateEntry | None:  # noqa: ASYNC109
        raise UserError("a tool cannot wait for state: it would hold its step open; wait "
                        "in the workflow (ctx.state(...).wait) and pass the value to the tool")

    async def pause(self, most: float) -> None:
        await _jitter(most)

    def scoped(self) -> StateAccess:
        return self  # the tool call is the journaled step


class DirectAccess:
    """State operations on the store itself, outside any session (no journal, no chain)."""

    __slots__ = ("store", "tenant", "wake")

    def scoped(self) -> StateAccess:
        return self

    def __init__(self, store: Store, tenant: str,
                 wake: Callable[[], None] | None = None) -> None:
        self.store = store
        self.tenant = tenant
        self.wake = wake

    async def get(self, namespace: str, key: str) -> StateEntry | None:
        return await self.store.state_get(self.tenant, namespace, key)

    async def put(self, namespace: str, key: str, value: str,
                  expected: int | None) -> StateEntry:
        write = StateWrite(tenant=self.tenant, namespace=namespace, key=key, value=value,
                           expected_version=expected)
        checked, current = await refuse_clear_write(self.store, write)
        if checked and (current.version if current is not None else 0) != (expected or 0):
            # (made against the version checked, or a data subject's version landing after
            # the check would be written over in the clear: the store would refuse it now)
            raise conflict(namespace, key, expected, current)
        res = await self.store.state_put(write)
        if res.woken and self.wake is not None:
            self.wake()
        if not res.written or res.entry is None:
            raise conflict(namespace, key, expected, res.entry)
        return res.entry

    async def history(self, namespace: str, key: str, limit: int | None) -> list[StateEntry]:
        return await self.store.state_history(self.tenant, namespace, key, limit=limit)

    async def items(self, namespace: str) -> list[StateEntry]:
        return await self.store.state_list(self.tenant, namespace)

    async def wait(self, namespace: str, key: str, satisfied: Satisfied,
                   timeout: float | None) -> StateEntry | None:  # noqa: ASYNC109
        raise UserError("waiting for state is for workflow code (ctx.state(...).wait): "
                        "outside a session nothing can park durably")

    async def pause(self, most: float) -> None:
        await _jitter(most)


async def refuse_clear_write(store: Store, write: StateWrite
                             ) -> tuple[bool, StateEntry | None]:
    """Refuse a write from outside any session, on a store that seals nothing (no master
    key), to a key whose current version is a data subject's: it would be stored in the
    clear. (A sealing store seals it under the same subject's key.)

    Returns ``(checked, current)``: whether the key's current version was checked (not on
    a sealing store, nor when its row is damaged), and that version (``None``: no key).
    A checked write must be made against that version (a compare-and-set): a data
    subject's version written after the check is then a conflict, not written over."""
    if getattr(store, "keys", None) is not None:
        return False, None
    try:
        current = await store.state_get(write.tenant, write.namespace, write.key)
    except JournalError:
        return False, None  # (a damaged row holds nothing readable: replaced as any other)
    if current is not None and is_sealed(current.value):
        raise UserError(f"state {short(f'{write.namespace}/{write.key}', 120)} (tenant "
                        f"{quoted(write.tenant)}) holds a data subject's data (sealed): its "
                        "new version is sealed under the same subject's key, which needs "
                        "the master key; set $CONVOY_MASTER_KEY_FILE to the store's master "
                        "key file (in Python: Engine(master_key=...)) and write it again")
    return True, current
