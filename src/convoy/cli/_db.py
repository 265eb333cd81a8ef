"""``convoy db migrate|info|compact``: the store's schema version, what it holds, and
leaving no trace of deleted rows in its files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.table import Table

from convoy._command import command
from convoy._errors import ConvoyError, JournalError
from convoy._text import plural
from convoy.cli._common import (
    DEFAULT_DB,
    DbOption,
    WriteBusyTimeoutOption,
    check_db_path,
    label,
    open_store,
    out,
    require_convoy_store,
    require_store,
    run_async,
)
from convoy.cli._json import json_text
from convoy.stores import SCHEMA_VERSION, Store, StoreSummary, store_from_url
from convoy.stores._rows import LeftOut

db_app = typer.Typer(
    name="db", no_args_is_help=True, rich_markup_mode="markdown",
    help="The store itself: its schema version, migrations, and what it holds.\n\n"
         "Example: `convoy db info --db postgresql://convoy@db.internal/convoy`")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead.")]


def _newer(db: str, version: int) -> str:
    return (f"the store {label(db)} has store schema version {version}, newer than the "
            f"version {SCHEMA_VERSION} this Convoy reads; upgrade Convoy to use it")


@db_app.command("migrate")
def migrate(db: DbOption = DEFAULT_DB, busy_timeout: WriteBusyTimeoutOption = 10.0) -> None:
    """Bring the store to the schema this Convoy writes (creating it if there is none) and
    print the versions it went from and to. Engines migrate a store when they open it
    too; this does it ahead of time, once, for every engine that will share the store.

    Example: `convoy db migrate --db postgresql://convoy@db.internal/convoy`
    """
    check_db_path(db, create=True)
    before, after, added = run_async(_migrate(db, busy_timeout))
    if before == after and added:
        out.print(f"{label(db)}: at store schema {after}; added "
                  f"{'add-on' if len(added) == 1 else 'add-ons'} {', '.join(added)}",
                  markup=False)
    elif before == after:
        out.print(f"{label(db)}: already at store schema {after}", markup=False)
    elif before is None:
        out.print(f"{label(db)}: created at store schema {after}", markup=False)
    else:
        out.print(f"{label(db)}: migrated from store schema {before} to {after}", markup=False)


async def _migrate(db: str, busy_timeout: float
                   ) -> tuple[int | None, int | None, tuple[str, ...]]:
    """The schema versions before and after, and the add-ons a store at this Convoy's
    schema lacked (and now has)."""
    store = store_from_url(db, busy_timeout=busy_timeout)
    before = await store.schema_version()
    if before is not None and before > SCHEMA_VERSION:
        raise JournalError(_newer(db, before))
    added: tuple[str, ...] = ()
    if before == SCHEMA_VERSION:  # (only add-ons may be missing: read, writing nothing)
        reader = store_from_url(db, busy_timeout=busy_timeout, read_only=True)
        try:
            await reader.open()
            added = tuple((await reader.summary()).addons_missing)
        except JournalError:  # (an add-on at an older version of its own: migrated below)
            pass
        finally:
            await reader.aclose()
    await store.open()  # creates or migrates
    await store.aclose()
    return before, await store.schema_version(), added


@db_app.command("compact")
def compact(db: DbOption = DEFAULT_DB, busy_timeout: WriteBusyTimeoutOption = 10.0) -> None:
    """Leave no trace of deleted rows (erased subjects, purged sessions) in the store's
    files: SQLite: a checkpoint, `VACUUM`, the WAL truncated; PostgreSQL: `VACUUM FULL` of
    the tables a purge touches, their planner statistics drawn again, and `VACUUM FULL` of
    the catalog `pg_statistic` (a role that does not own the database is told what an
    administrator must run). `convoy erase` and `purge` do this themselves; run it when
    they said the store could not be compacted (another process held it), and once on a
    PostgreSQL store an earlier Convoy made (the statistics it let PostgreSQL collect may
    hold deleted data). Locks the store while it runs.

    Example: `convoy db compact --db convoy.db`
    """
    require_convoy_store(db, nothing="compact")
    run_async(_compact(db, busy_timeout))
    out.print(f"{label(db)}: compacted", markup=False)


async def _compact(db: str, busy_timeout: float) -> None:
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:
        await store.compact()


@db_app.command("info")
def info(db: DbOption = DEFAULT_DB, as_json: JsonOption = False) -> None:
    """Show the store's URL (never its password), schema version, the schema add-ons it
    lacks, and how many sessions (by status), journal entries, state keys, human tasks
    (open or decided) and tenants it holds; its audit logs (one per audited tenant:
    entries and signed checkpoints), the erasures it recorded (of subjects, and retention
    purges) and its open alerts. Read-only: nothing is migrated or added. A
    store at an older schema version is reported as such and nothing is counted; add-ons
    are applied by 'convoy db migrate' (or by an engine opening the store).

    Example: `convoy db info --json`
    """
    require_store(db)
    version, summary, governance = run_async(_info(db))
    g = governance
    if as_json:
        counted = summary is not None
        typer.echo(json_text({
            "store": label(db), "schema_version": version,
            "current_schema_version": SCHEMA_VERSION,
            "sessions": None if summary is None else summary.sessions,
            "journal_entries": None if summary is None else summary.journal_entries,
            "state_keys": None if summary is None else summary.state_keys,
            "human_tasks": None if summary is None else summary.human_tasks,
            "tenants": None if summary is None else summary.tenants,
            "audit_logs": g.audit if counted else None,
            "subjects_erased": None if g.erasures is None else g.erasures[0],
            "retention_purges": None if g.erasures is None else g.erasures[1],
            "open_alerts": None if g.alerts is None else g.alerts[0],
            # (True: more are open than were counted, ``open_alerts``)
            "open_alerts_more": None if g.alerts is None else g.alerts[1],
            "alert_rows_left_out": None if g.alerts is None else g.alerts[2],
            **{f"{part}_error": why for part, why in g.errors.items()},
            "addons_missing": None if summary is None else list(summary.addons_missing)},
            indent=2))
        return
    out.print(f"store           {label(db)}", markup=False)
    if summary is None:
        out.print(f"schema version  {version} (this Convoy writes {SCHEMA_VERSION}: run "
                  f"{command('db migrate', db=db)} to upgrade it)", markup=False,
                  soft_wrap=True)
        return
    out.print(f"schema version  {version}", markup=False)
    out.print(f"journal entries {summary.journal_entries:,}", markup=False)
    out.print(f"state keys      {summary.state_keys:,}", markup=False)
    out.print(f"human tasks     {summary.human_tasks:,}", markup=False)
    out.print(f"tenants         {summary.tenants:,}", markup=False)
    for line in _governance_lines(g, db):
        out.print(line, markup=False, soft_wrap=True)
    if summary.addons_missing:
        out.print(f"add-ons         missing {', '.join(summary.addons_missing)} "
                  f"({command('db migrate', db=db)} adds them; until then they read as "
                  "empty)", markup=False, soft_wrap=True)
    if not summary.sessions:
        out.print("sessions        0", markup=False)
        return
    table = Table("status", "sessions", title=plural(sum(summary.sessions.values()), "session"),
                  title_justify="left")
    for status, n in sorted(summary.sessions.items()):
        table.add_row(status, f"{n:,}")
    out.print(table)


#: The audit logs ``convoy db info`` reports, by tenant: ``{"entries": N, "checkpoints":
#: K}``.
AuditInfo = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Governance:
    """What ``convoy db info`` reports of the store's accountability records; a part the
    store cannot give (a damaged row, a role that may not read its table) is ``None``,
    and :attr:`errors` says why, in one line, by part (``audit``, ``erasures``,
    ``alerts``)."""

    audit: AuditInfo | None = None
    #: ``(subject erasures, retention purges)``.
    erasures: tuple[int, int] | None = None
    #: ``(open alerts counted, whether more are open, damaged alert rows left out)``.
    alerts: tuple[int, bool, int] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _governance_lines(g: Governance, db: str) -> list[str]:
    """``convoy db info``'s lines of ``g``."""
    audit, errors = g.audit, g.errors
    lines = []
    if audit is None:
        lines.append(f"audit logs      cannot be read: {errors.get('audit')} "
                     f"({command('audit verify', db=db)} says more)")
    elif audit:
        entries = sum(a["entries"] for a in audit.values())
        signed = sum(a["checkpoints"] for a in audit.values())
        lines.append(f"audit logs      {len(audit):,} ({plural(entries, 'entry', many='entries')}"
                     f", {plural(signed, 'signed checkpoint')})")
    else:
        lines.append("audit logs      0")
    if g.erasures is None:
        lines.append(f"erasures        cannot be read: {errors.get('erasures')}")
    else:
        erased, purges = g.erasures
        lines.append(f"erasures        {plural(erased, 'subject erasure')}, "
                     f"{plural(purges, 'retention purge')}")
    if g.alerts is None:
        lines.append(f"open alerts     cannot be read: {errors.get('alerts')}")
    else:
        n, more, damaged = g.alerts
        left = "" if not damaged else \
            f"; {plural(damaged, 'damaged alert row')} left out ('convoy alerts' says which)"
        lines.append(f"open alerts     {'more than ' if more else ''}{n:,}{left}")
    return lines


async def _info(db: str) -> tuple[int, StoreSummary | None, Governance]:
    store = store_from_url(db, read_only=True)
    version = await store.schema_version()
    if version is not None and version < SCHEMA_VERSION:
        return version, None, Governance()
    if version is not None and version > SCHEMA_VERSION:
        raise JournalError(_newer(db, version))
    # No store there: opening says why (an empty database, another application's) in one
    # line, and how to go on.
    await store.open()
    try:
        return SCHEMA_VERSION, await store.summary(), await _governance(store)
    finally:
        await store.aclose()


async def _governance(store: Store) -> Governance:
    """What the store keeps for accountability: each tenant's audit log (its entries and
    signed checkpoints), the erasures it recorded (of subjects, by retention) and its open
    alerts; each part read on its own, so one the store cannot give is said and the
    others are still shown."""
    errors: dict[str, str] = {}
    audit: AuditInfo | None = None
    erasures: tuple[int, int] | None = None
    alerts: tuple[int, bool, int] | None = None
    try:
        audit = {tenant: {"entries": await store.audit_size(tenant),
                          "checkpoints": len(await store.audit_checkpoints(tenant))}
                 for tenant in await store.audit_tenants()}
    except Exception as e:  # (a damaged log: verify says where)
        errors["audit"] = _why(e)
    try:
        recorded = await store.erasures()
        erasures = (sum(e.reason == "erasure" for e in recorded),
                    sum(e.reason == "retention" for e in recorded))
    except Exception as e:
        errors["erasures"] = _why(e)
    try:
        left: list[LeftOut] = []
        found = await store.list_alerts(open_only=True, limit=_ALERTS_COUNTED + 1,
                                        left_out=left)
        alerts = (min(len(found), _ALERTS_COUNTED), len(found) > _ALERTS_COUNTED, len(left))
    except Exception as e:
        errors["alerts"] = _why(e)
    return Governance(audit=audit, erasures=erasures, alerts=alerts, errors=errors)


def _why(e: Exception) -> str:
    """Why a part of ``convoy db info`` cannot be read, in one line: a Convoy error's own
    line, else a damaged row's (the store's value that does not read)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, ConvoyError) else f"a damaged row or a store error " \
        f"({type(e).__name__}: {text[:200]})"


#: Open alerts counted one by one (past it: "more than").
_ALERTS_COUNTED = 10_000
