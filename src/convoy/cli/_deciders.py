"""What the commands that record a person's decision share (``convoy inbox answer``,
``approve``, ``reject``, and ``convoy signal SESSION convoy.escalation``): who
decides, and an engine that audits the decision where the store audits.

The CLI has none of the application's interceptors, so it cannot know whether the
application audits a tenant; it goes by the store: a decision on a task of a tenant that
already has an audit log (``convoy audit verify`` lists them) is appended to it, as the
application's :class:`~convoy.audit.AuditInterceptor` would.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from convoy import DecisionInput, Engine, HumanTask, Interceptor, Next, UserError
from convoy.cli._common import Scope, build_engine, fail, require_store, tenant_scope

ByOption = Annotated[str | None, typer.Option(
    "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME",
    help="Who decides (recorded with the decision). Default: the login name.")]


def who_decides(by: str | None) -> str:
    """``--by``, else the login name."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        fail("say who decides: --by NAME (or set CONVOY_USER)")


class _AuditWhereAudited(Interceptor):
    """Audits the decisions on tasks of tenants whose audit log the store already holds,
    with an :class:`~convoy.audit.AuditInterceptor` (imported only then: it needs the
    ``audit`` extra)."""

    stage = "audit"

    def __init__(self) -> None:
        self._audited: frozenset[str] = frozenset()
        self._audit: Interceptor | None = None
        self._engine: Engine | None = None

    async def start(self, engine: Engine) -> None:
        self._audited = frozenset(await engine.store.audit_tenants())
        self._engine = engine

    async def human_decision(self, input: DecisionInput,
                             next: Next[DecisionInput, HumanTask]) -> HumanTask:
        if input.tenant not in self._audited:
            return await next(input)
        if self._audit is None:
            try:
                from convoy.audit import AuditInterceptor
            except ImportError:
                from convoy.audit._needs import MISSING_CRYPTOGRAPHY
                raise UserError(f"tenant {input.tenant!r} is audited: nothing was "
                                f"decided. {MISSING_CRYPTOGRAPHY}") from None
            assert self._engine is not None
            audit = AuditInterceptor()
            await audit.start(self._engine)
            self._audit = audit
        return await self._audit.human_decision(input, next)


def decider_engine(db: str, busy_timeout: float, tenant: str | None, all_tenants: bool
                   ) -> tuple[Engine, Scope]:
    """An engine for commands that decide: audited where the store audits."""
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    return build_engine(db, busy_timeout=busy_timeout,
                        interceptors=[_AuditWhereAudited()]), scope
