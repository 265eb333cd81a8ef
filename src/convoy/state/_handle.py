"""The handle on a namespace of shared state: ``ctx.state("customer:42", type=Customer)``."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, NoReturn, TypeVar, overload

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from convoy._adapters import adapter_for
from convoy._errors import StateConflict, UserError
from convoy._seconds import timeout_seconds
from convoy._text import check_name, readable_validation_error, storable_json
from convoy.state._access import StateAccess, UnusableVersion
from convoy.state._values import StateVersion, Versioned
from convoy.stores._protocol import StateEntry

T = TypeVar("T")
D = TypeVar("D")
_MAX_PAUSE = 1.0  # seconds: the longest pause between two attempts of an update


def _strict_json(text: str) -> bool:
    """Whether ``text`` (valid JSON to Python) holds no NaN or infinity (to_json writes
    them as the bare tokens ``NaN`` and ``Infinity``, which JSON has not)."""
    try:
        json.loads(text, parse_constant=_refuse)
    except ValueError:
        return False
    return True


def _refuse(token: str) -> NoReturn:
    raise ValueError(token)


class State(Generic[T]):
    """One namespace of shared state, versioned per key.

    Get one from ``ctx.state(namespace, type=...)`` in workflow code (every operation is a
    journaled step: a resumed or replayed session sees exactly what it saw, and never
    writes twice), from a tool's ``ctx.state(...)``, or from ``engine.state(...)`` outside
    any session. A namespace belongs to the session's tenant: ``"customer:42"`` (an entity
    every session of the tenant shares), ``"settings"``, or, with no name, the session's
    own (``"session:<id>"``).

    Every write is a compare-and-set against the version the writer read; a stale one
    raises :class:`~convoy.StateConflict` with the current value and version. Values are
    validated against ``type`` (any type Pydantic validates) when one is given, else they
    are any JSON-able value.
    """

    __slots__ = ("_access", "_adapter", "_type_name", "namespace")

    def __init__(self, namespace: str, access: StateAccess, type: type[T] | None = None,
                 ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise UserError(f"a state namespace is a non-empty string, got {namespace!r}")
        self.namespace = namespace
        self._access = access
        self._adapter: TypeAdapter[T] | None = None if type is None else adapter_for(type)
        self._type_name = getattr(type, "__name__", None) or str(type)

    def __repr__(self) -> str:
        return f"State({self.namespace!r})"

    def _scoped(self) -> State[T]:
        """This handle on :meth:`StateAccess.scoped` access (same namespace and type)."""
        access = self._access.scoped()
        if access is self._access:
            return self
        twin: State[T] = object.__new__(State)
        twin.namespace, twin._access = self.namespace, access
        twin._adapter, twin._type_name = self._adapter, self._type_name
        return twin

    # -- values ------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise UserError(f"a state key is a non-empty string, got {key!r} (namespace "
                            f"{self.namespace!r})")
        return check_name(key, "state key")

    def _dump(self, key: str, value: Any) -> str:
        adapter = self._adapter
        if adapter is None:
            try:
                text = storable_json(value, f"state {self.namespace}/{key}").decode()
            except UserError:
                raise
            except Exception as e:  # pydantic_core's serialisation error
                raise UserError(f"state {self.namespace}/{key}: the value is not JSON-able: "
                                f"{e}") from None
            if ("NaN" in text or "Infinity" in text) and not _strict_json(text):
                raise UserError(f"state {self.namespace}/{key}: NaN and infinite numbers are "
                                "not JSON (readers could not parse the value); store None "
                                "or a string instead")
            return text
        try:
            return storable_json(adapter.validate_python(value), f"state {self.namespace}/{key}",
                                 adapter.dump_json).decode()
        except ValidationError as e:
            raise UserError(f"state {self.namespace}/{key}: the value does not match "
                            f"{self._type_name}: {readable_validation_error(e)}") from None

    def _load(self, entry: StateEntry) -> T:
        adapter = self._adapter
        if adapter is None:
            value: T = from_json(entry.value)
            return value
        try:
            return adapter.validate_json(entry.value)
        except ValidationError as e:
            raise UserError(f"state {self.namespace}/{entry.key} version {entry.version} "
                            f"does not hold a valid {self._type_name}: "
                            f"{readable_validation_error(e)}; write a valid one (convoy "
                            "state set)") from None

    def _usable(self, entry: StateEntry | None, default: Any) -> Versioned[Any]:
        """:meth:`_versioned` for a wait: a value that is not a valid one of the handle's
        type raises :class:`UnusableVersion` (the wait goes past it) rather than
        :class:`UserError`."""
        adapter = self._adapter
        if entry is None or adapter is None:
            return self._versioned(entry, default)
        try:
            return Versioned(value=adapter.validate_json(entry.value), version=entry.version)
        except ValidationError as e:
            raise UnusableVersion(entry.version, self._type_name, e) from None

    def _versioned(self, entry: StateEntry | None, default: Any) -> Versioned[Any]:
        if entry is None:
            return Versioned(value=default, version=0)
        return Versioned(value=self._load(entry), version=entry.version)

    def _typed(self, e: StateConflict) -> StateConflict:
        """The conflict with its current value in this handle's type (it is journaled
        as JSON, before this)."""
        if self._adapter is not None and e.current_version:
            with suppress(ValidationError):  # else left as JSON; a read names the problem
                e.current_value = self._adapter.validate_python(e.current_value)
        return e

    # -- operations ----------------------------------------------------------------------

    @overload
    async def get(self, key: str) -> Versioned[T | None]: ...
    @overload
    async def get(self, key: str, default: D) -> Versioned[T | D]: ...

    async def get(self, key: str, default: Any = None) -> Versioned[Any]:
        """The value of ``key`` and its version; ``default`` (and version 0) if it was never
        written."""
        entry = await self._access.get(self.namespace, self._name(key))
        return self._versioned(entry, default)

    async def set(self, key: str, value: T, *, expected_version: int | None) -> Versioned[T]:
        """Write ``value`` if ``key`` is still at ``expected_version`` (the version you read;
        ``0`` or ``None``: only if it does not exist). Returns the new version.

        Raises:
            StateConflict: another writer changed the key first; nothing was written. It
                carries the current value and version.
        """
        text = self._dump(self._name(key), value)
        try:
            entry = await self._access.put(self.namespace, key, text, expected_version)
        except StateConflict as e:
            raise self._typed(e) from None
        written: Versioned[T] = self._versioned(entry, None)
        return written

    @overload
    async def update(self, key: str, fn: Callable[[T | None], T], *, attempts: int = 5,
                     backoff: float = 0.005) -> Versioned[T]: ...
    @overload
    async def update(self, key: str, fn: Callable[[T], T], *, default: T, attempts: int = 5,
                     backoff: float = 0.005) -> Versioned[T]: ...

    async def update(self, key: str, fn: Callable[[Any], T], *, default: Any = None,
                     attempts: int = 5, backoff: float = 0.005) -> Versioned[T]:
        """Read ``key``, write ``fn(value)`` against the version read, and on a conflict
        read again and re-apply ``fn``, at most ``attempts`` writes in all. ``fn`` gets
        ``default`` while the key does not exist; it must not have side effects (it runs
        again on replay and on every conflict).

        After a conflict the writer pauses up to ``backoff`` seconds, doubling with each
        attempt and randomised, so writers that collided do not collide again in lock
        step (a journaled timer in workflow code). With ``backoff=0`` it re-applies at
        once to the value the conflict carries, with no read.

        Raises:
            StateConflict: still conflicting after ``attempts`` writes.
        """
        if attempts < 1 or backoff < 0:
            raise UserError(f"update needs attempts >= 1 and backoff >= 0, got {attempts} "
                            f"and {backoff}")
        one = self._scoped()  # however many attempts, one position of the caller
        current = await one.get(key, default)
        for attempt in range(attempts):
            try:
                return await one.set(key, fn(current.value), expected_version=current.version)
            except StateConflict as e:
                if attempt == attempts - 1:
                    raise
                if backoff:
                    await one._access.pause(min(_MAX_PAUSE, backoff * 2 ** attempt))
                    current = await one.get(key, default)
                else:  # the conflict carries the current value: no read needed
                    current = Versioned(value=e.current_value if e.current_version
                                        else default, version=e.current_version)
        raise AssertionError("unreachable")  # pragma: no cover

    async def history(self, key: str, *, limit: int | None = None) -> list[StateVersion[T]]:
        """Every version of ``key`` (with ``limit``: the newest ``limit``), oldest first,
        each with its writer: session, agent, step key, time."""
        if limit is not None and limit < 1:
            raise UserError(f"history limit must be >= 1, got {limit}")
        entries = await self._access.history(self.namespace, self._name(key), limit)
        return [StateVersion(value=self._load(e), version=e.version, session_id=e.session_id,
                             agent=e.agent, step_key=e.step_key, at=e.at) for e in entries]

    async def items(self) -> dict[str, Versioned[T]]:
        """Every key of the namespace with its current value and version, by key."""
        entries = await self._access.items(self.namespace)
        return {e.key: Versioned(value=self._load(e), version=e.version) for e in entries}

    async def keys(self) -> list[str]:
        """The keys of the namespace, sorted."""
        return list(await self.items())

    @overload
    async def wait(self, key: str, until: Callable[[Versioned[T | None]], bool] | None = None,
                   *, after_version: int | None = None,
                   timeout: float | None = None) -> Versioned[T | None]: ...  # noqa: ASYNC109
    @overload
    async def wait(self, key: str, until: Callable[[Versioned[T | D]], bool] | None = None,
                   *, default: D, after_version: int | None = None,
                   timeout: float | None = None) -> Versioned[T | D]: ...  # noqa: ASYNC109

    async def wait(self, key: str, until: Callable[[Versioned[Any]], bool] | None = None,
                   *, default: Any = None, after_version: int | None = None,
                   timeout: float | None = None) -> Versioned[Any]:  # noqa: ASYNC109
        """Wait durably until ``key`` changes, or until ``until(versioned)`` holds.

        With ``until``, the first version read that satisfies it is returned (the current
        one included; past ``after_version`` if given). Without, the first version past
        ``after_version`` (default: the version current when the wait starts).

        Workflow code only. While it waits the session is parked (no coroutine, no slot,
        no CPU) and survives restarts; a write of the key wakes it (a running
        ``engine.serve`` / ``convoy worker`` runs it, or ``engine.resume``).

        A version whose value is not a valid ``type`` (written by ``convoy state set``, an
        untyped handle, or a session that reads the key with another type) neither ends
        the wait nor fails the session: it goes on waiting for the next version, with one
        warning on the ``convoy`` logger naming the version and how to write a valid
        one, and a ``WaitTimeout`` names it. Why: nothing that writes can know the type
        (it lives in this code; the store records none), and a session that has waited
        for days must not be lost to one mistaken write, which the next write corrects.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first.
        """
        name = self._name(key)
        timeout = timeout_seconds(timeout, "the state wait's timeout")
        floor = after_version
        found: Versioned[Any] | None = None

        def satisfied(entry: StateEntry | None) -> bool:
            nonlocal floor, found
            version = entry.version if entry is not None else 0
            if floor is None and until is None:
                floor = version  # a change from what the wait found first
                return False
            if floor is not None and version <= floor:
                return False
            found = self._usable(entry, default)
            return until is None or until(found)

        await self._access.scoped().wait(self.namespace, name, satisfied, timeout)
        assert found is not None  # (the version that satisfied the wait)
        return found


__all__ = ["State"]
