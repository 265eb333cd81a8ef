"""What the commands that record a person's decision share (``convoy inbox answer``,
``approve``, ``reject``, and ``convoy signal SESSION convoy.escalation``): who
decides, and an engine that audits the decision where the store audits
(:mod:`convoy.cli._audited`) and traces it where the store keeps the session's trace
(:mod:`convoy.cli._traced`).
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from convoy import Engine, UserError
from convoy._text import check_name
from convoy.cli._common import Scope, build_engine, fail, require_convoy_store, tenant_scope
from convoy.cli._interceptors import app_interceptors

ByOption = Annotated[str | None, typer.Option(
    "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME",
    help="Who decides (recorded with the decision). Default: the login name.")]


def who_decides(by: str | None) -> str:
    """``--by``, else the login name. A name with a control character or a bidi override
    (which a terminal would obey wherever the name is shown) is refused."""
    if by is not None:  # (an empty --by names nobody: refused, not the login name)
        try:
            return check_name(by, "--by")
        except UserError as e:
            fail(str(e))
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        fail("say who decides: --by NAME (or set CONVOY_USER)")


def decider_engine(db: str, busy_timeout: float, tenant: str | None, all_tenants: bool,
                   interceptors: str | None = None) -> tuple[Engine, Scope]:
    """An engine for commands that decide: with the application's interceptors
    (``--interceptors``: their ``human_decision`` hooks see the decision), audited where
    the store audits (unless they audit)."""
    scope = tenant_scope(tenant, all_tenants)
    app = app_interceptors(interceptors)  # (what cannot be loaded: one line, first)
    require_convoy_store(db, nothing="decide")
    # (build_engine traces a decision where the store keeps the session's trace)
    return build_engine(db, busy_timeout=busy_timeout, interceptors=app), scope
