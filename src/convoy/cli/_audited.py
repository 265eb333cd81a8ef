"""The command line audits where the store audits.

The CLI has the application's interceptors only where ``--interceptors`` gives them (an
``AuditInterceptor`` among them audits as in the application's engine, and this steps
aside). Otherwise it cannot know whether the application audits a tenant; it goes by the
store: the sessions a command runs (``convoy
run``, ``resume``, ``worker``, ``retry``, a killed session ``convoy cancel`` ends) and the
decisions it records (``convoy inbox``, an escalation's answer) of a tenant that already
has an audit log (``convoy audit verify`` lists them) are appended to it, as the
application's :class:`~convoy.audit.AuditInterceptor` would append them. A tenant with no
audit log is not audited: the command line keeps the logs an application started, it
starts none.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from convoy import (
    DecisionInput,
    Engine,
    HumanTask,
    Interceptor,
    Next,
    SessionEnd,
    SessionInput,
    UserError,
)

if TYPE_CHECKING:
    from convoy.audit import AuditInterceptor

#: The session header an audited engine sets on a session that will run again
#: (``convoy.audit._sealer.AUDIT_CURSOR``: not imported, the ``audit`` extra may be
#: missing).
AUDIT_CURSOR = "convoy.audit"

#: How long (seconds) the answer "this tenant has no audit log" is trusted before a new
#: session of the tenant makes the store be asked again (a long-running worker sees a log
#: that an application starts after it). A session an audited engine ran before (that
#: header) is audited at once; one that journaled before, and a decision,
#: make the store be asked at once.
REFRESH_SECONDS = 10.0


class AuditWhereAudited(Interceptor):
    """Audits the sessions and decisions of the tenants whose audit log the store holds,
    with an :class:`~convoy.audit.AuditInterceptor` (imported only then: it needs the
    ``audit`` extra). Whether a tenant has a log is one indexed read of its log's head
    (``Store.audit_size``; when that says none, of its first entry too: a count deleted by
    hand leaves a log all the same), remembered: for good once it has one, for
    :data:`REFRESH_SECONDS` when it has none."""

    stage = "audit"

    def __init__(self) -> None:
        self._audited: set[str] = set()
        self._unaudited: dict[str, float] = {}  # tenant -> until when that answer holds
        self._audit: AuditInterceptor | None = None
        self._making = asyncio.Lock()
        self._engine: Engine | None = None

    async def start(self, engine: Engine) -> None:
        self._engine = engine

    async def close(self) -> None:
        if self._audit is not None:  # its sealer seals what the command's runs queued
            await self._audit.close()
            self._audit = None

    async def _audit_of(self, tenant: str, now: bool = False) -> AuditInterceptor | None:
        """The interceptor that audits ``tenant``, ``None`` if the store does not. The
        store is asked again when its answer is older than :data:`REFRESH_SECONDS`, or at
        once (``now``)."""
        engine = self._engine
        assert engine is not None
        if tenant not in self._audited:
            clock = engine.clock()
            if not now and self._unaudited.get(tenant, -1.0) > clock:
                return None
            if await engine.store.audit_size(tenant) == 0 and \
                    await engine.store.audit_entry(tenant, 0) is None:
                # (no count, and no entry: a count deleted by hand with entries left is
                # a log all the same, whose seals are refused and said, not skipped)
                self._unaudited[tenant] = clock + REFRESH_SECONDS
                return None
            self._audited.add(tenant)
        if self._audit is None:
            # One for every session: sessions that start together would each make (and
            # start) their own while another's start awaits the store, and only the last
            # one made would be closed, its sealer's queue never sealed.
            async with self._making:
                if self._audit is None:
                    self._audit = await self._made(tenant, engine)
        return self._audit

    @staticmethod
    async def _made(tenant: str, engine: Engine) -> AuditInterceptor:
        try:
            from convoy.audit import AuditInterceptor
        except ImportError:
            from convoy.audit._needs import MISSING_CRYPTOGRAPHY
            raise UserError(f"tenant {tenant!r} is audited and this command would write "
                            f"to its log: {MISSING_CRYPTOGRAPHY}") from None
        audit = AuditInterceptor()
        await audit.start(engine)
        return audit

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        tenant = input.info.tenant
        if AUDIT_CURSOR in input.headers:
            self._audited.add(tenant)  # an audited engine ran it: the tenant has a log
        # A session that journaled before (a resume) is asked about at once: an
        # application may have started its tenant's log since the last answer.
        audit = await self._audit_of(tenant, now=bool(input.journal))
        if audit is None:
            return await next(input)
        return await audit.session_run(input, next)

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        audit = await self._audit_of(input.tenant, now=True)
        if audit is None:
            return await next(input)
        return await audit.human_decision(input, next)
