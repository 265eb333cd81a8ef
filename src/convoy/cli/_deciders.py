"""What the commands that record a person's decision share (``convoy inbox answer``,
``approve``, ``reject``, and ``convoy signal SESSION convoy.escalation``): who
decides, and an engine that audits the decision where the store audits
(:mod:`convoy.cli._audited`) and traces it where the store keeps the session's trace
(:mod:`convoy.cli._traced`).
"""

from __future__ import annotations

import getpass
from contextvars import ContextVar
from typing import Annotated

import typer

from convoy import Engine, UserError
from convoy._text import check_name
from convoy.cli._common import Scope, build_engine, fail, require_convoy_store, tenant_scope
from convoy.cli._interceptors import app_interceptors


def who_decides(by: str | None) -> str:
    """``--by`` (or ``$CONVOY_USER``), else the login name. A name with a control
    character or a bidi override (which a terminal would obey wherever the name is shown)
    is refused, in one line that names where it came from."""
    if by is not None:  # (an empty --by names nobody: refused, not the login name)
        try:
            return check_name(by, _BY_SOURCE.get())
        except UserError as e:
            fail(str(e))
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        fail("say who decides: --by NAME (or set CONVOY_USER)")


#: Where this command's ``--by`` came from (:func:`checked_by`), as its errors name it.
_BY_SOURCE: ContextVar[str] = ContextVar("convoy_by_source", default="--by")


def by_typed() -> bool:
    """Whether this command's ``--by`` was given on its command line (not taken from
    ``$CONVOY_USER``, a default)."""
    return _BY_SOURCE.get() == "--by"


def checked_by(ctx: typer.Context, value: str | None) -> str | None:
    """The ``--by`` options' callback: notes where the name came from (``$CONVOY_USER``
    when the environment set it: a name the user never typed on this command line), for
    :func:`who_decides`, which checks it where the command uses it."""
    source = ctx.get_parameter_source("by")
    _BY_SOURCE.set("$CONVOY_USER" if source is not None and source.name == "ENVIRONMENT"
                   else "--by")
    return value


ByOption = Annotated[str | None, typer.Option(
    "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME", callback=checked_by,
    help="Who decides (recorded with the decision). Default: the login name.")]


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
