"""Tenants: one tenant's view of an engine (``engine.tenant("acme")``).

Every session belongs to one tenant, fixed when it starts. A :class:`Tenant` runs, lists,
reads, resumes, replays, retries, cancels and signals only that tenant's sessions: a session
of another tenant is exactly an unknown id (the same error, word for word), and nothing
reachable through it reads or writes another tenant's sessions, journals, results or
signals. It holds no public reference to its engine or store, so it is what code serving
one tenant (a request handler, a tool) should get. The :class:`~convoy.Engine` itself is
the operator's view of every tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from convoy.engine._control import SessionControl
from convoy.engine._tenancy import check_tenant

if TYPE_CHECKING:
    from convoy.definitions._workflow import Workflow
    from convoy.engine._engine import Engine
    from convoy.engine._results import SessionResult
    from convoy.state._handle import State
    from convoy.stores._protocol import Erasure, SessionRow

OutT = TypeVar("OutT")
T = TypeVar("T")


class Tenant(SessionControl):
    """One tenant's sessions on an engine: ``engine.tenant("acme")``.

    Every method does what the :class:`~convoy.Engine` method of the same name does,
    confined to this tenant: sessions it starts belong to it, and a session id of another
    tenant is exactly an unknown id (the same :class:`~convoy.UserError`). Give code that
    serves one tenant this object, not the engine: it exposes no engine and no store.
    Open and close the engine as usual (its methods open it when needed).

    Raises:
        UserError: an invalid tenant name (see
            :func:`~convoy.engine._tenancy.check_tenant`).
    """

    __slots__ = ("__engine", "__name")

    def __init__(self, engine: Engine, name: str) -> None:
        self.__engine = engine
        self.__name = check_tenant(name)

    @property
    def name(self) -> str:
        """The tenant's name."""
        return self.__name

    def __repr__(self) -> str:
        return f"Tenant({self.__name!r})"

    def _scope(self) -> tuple[Engine, str | None]:
        return self.__engine, self.__name

    # -- running -------------------------------------------------------------------------

    async def run(self, wf: Workflow[Any, OutT], input: Any, *, session_id: str | None = None,
                  headers: Mapping[str, str] | None = None, subject: str | None = None
                  ) -> SessionResult[OutT]:
        """Start a session of this tenant and run it until it ends or parks
        (:meth:`Engine.run <convoy.Engine.run>`). A ``session_id`` this tenant used before
        returns or resumes that session; one another tenant used raises
        :class:`~convoy.UserError` (ids are unique in a store)."""
        return await self.__engine.run(wf, input, session_id=session_id, tenant=self.__name,
                                       headers=headers, subject=subject)

    async def run_many(self, wf: Workflow[Any, OutT], inputs: Iterable[Any], *,
                       ids: Iterable[str] | None = None,
                       on_done: Callable[[SessionResult[OutT]], None] | None = None,
                       subject: str | None = None) -> list[SessionResult[OutT]]:
        """Run many sessions of this tenant (:meth:`Engine.run_many
        <convoy.Engine.run_many>`)."""
        return await self.__engine.run_many(wf, inputs, tenant=self.__name, ids=ids,
                                            on_done=on_done, subject=subject)

    # -- data subjects -------------------------------------------------------------------

    async def erase(self, subject: str, *, by: str | None = None) -> Erasure:
        """Erase a data subject of this tenant (:meth:`Engine.erase <convoy.Engine.erase>`)."""
        return await self.__engine.erase(subject, tenant=self.__name, by=by)

    async def export(self, subject: str) -> dict[str, Any]:
        """Everything held about a data subject of this tenant (:meth:`Engine.export
        <convoy.Engine.export>`)."""
        return await self.__engine.export(subject, tenant=self.__name)

    async def purge(self, older_than: float, *, by: str | None = None) -> list[Erasure]:
        """Delete this tenant's sessions that finished more than ``older_than`` seconds
        ago (:meth:`Engine.purge <convoy.Engine.purge>`)."""
        return await self.__engine.purge(older_than, tenant=self.__name, by=by)

    async def resume(self, *, on_done: Callable[[SessionResult[Any]], None] | None = None
                     ) -> list[SessionResult[Any]]:
        """Run every unfinished session of this tenant that can run now."""
        return await self.__engine._resume(self.__name, on_done)

    async def serve(self, *, until_idle: bool = False, poll_interval: float = 1.0,
                    on_wait: Callable[[list[SessionRow]], None] | None = None) -> None:
        """Run this tenant's sessions as they become runnable (:meth:`Engine.serve
        <convoy.Engine.serve>`)."""
        await self.__engine._serve(self.__name, until_idle, poll_interval, on_wait)

    # -- shared state --------------------------------------------------------------------

    @overload
    def state(self, namespace: str, *, type: type[T]) -> State[T]: ...
    @overload
    def state(self, namespace: str, *, type: None = None) -> State[Any]: ...

    def state(self, namespace: str, *, type: Any = None) -> State[Any]:
        """A namespace of this tenant's shared state, outside any session
        (:meth:`Engine.state <convoy.Engine.state>`): another tenant's keys of the same
        namespace and key are other keys, never read or written through it."""
        return self.__engine.state(namespace, tenant=self.__name, type=type)


__all__ = ["Tenant"]
