"""``convoy cost``: what the model calls in a store cost, by session, agent, model or tenant.

Read from the journal: every completed model step records its model, tokens in / out, cost
and whether it was served from the response cache, so the report covers finished and
unfinished sessions alike and never counts a replayed step twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from convoy._text import printable, quoted
from convoy.cli._common import (
    DEFAULT_DB,
    AllTenantsOption,
    DbOption,
    TenantOption,
    count_option,
    fail,
    label,
    no_sessions_note,
    open_store,
    out,
    require_store,
    run_async,
    tenant_scope,
)
from convoy.cli._json import json_text
from convoy.cli._left_out import left_out_json, warn_left_out
from convoy.cli._render import fitting, fmt_cost
from convoy.stores import SessionFilter, SessionRow, StepRecord, Store
from convoy.stores._rows import LeftOut

_PAGE = 500


_KEY: dict[str, Callable[[SessionRow, StepRecord, dict[str, Any]], str]] = {
    "session": lambda row, rec, result: row.id,
    "agent": lambda row, rec, result: rec.agent or rec.target,
    "model": lambda row, rec, result: str(result.get("model") or ""),
    "tenant": lambda row, rec, result: row.tenant,
}


@dataclass(slots=True)
class CostRow:
    key: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    cached: int = 0


async def cost_rows(store: Store, by: str, tenant: str | None = None,
                    left_out: list[LeftOut] | None = None) -> list[CostRow]:
    """Completed model calls of every session (of ``tenant``, when given) grouped by
    ``by``, most expensive first (then by tokens). A damaged session or journal row
    raises :class:`~convoy.JournalError`, or, with ``left_out``, is left out of the sums
    and added to it."""
    key = _KEY[by]
    groups: dict[str, CostRow] = {}
    offset = 0
    while True:
        skipped = len(left_out) if left_out is not None else 0
        page = await store.list_sessions(SessionFilter(tenant=tenant, limit=_PAGE,
                                                        offset=offset), left_out=left_out)
        skipped = (len(left_out) if left_out is not None else 0) - skipped
        for row in page:
            for rec in await store.journal(row.id, tenant=row.tenant, left_out=left_out):
                if rec.kind != "model" or rec.status != "completed":
                    continue
                try:
                    result = json.loads(rec.result or "{}")
                except (ValueError, RecursionError):  # not JSON, or too deep: no model
                    result = {}
                if not isinstance(result, dict):
                    result = {}
                k = key(row, rec, result)
                g = groups.get(k)
                if g is None:
                    g = groups[k] = CostRow(k)
                g.calls += 1
                g.input_tokens += rec.input_tokens
                g.output_tokens += rec.output_tokens
                g.cost += rec.cost
                g.cached += bool(result.get("cached"))
        if len(page) + skipped < _PAGE:
            break
        offset += _PAGE
    rows = list(groups.values())
    rows.sort(key=lambda r: (-r.cost, -(r.input_tokens + r.output_tokens), r.key))
    return rows


async def _read(db: str, by: str, tenant: str | None,
                left_out: list[LeftOut]) -> list[CostRow]:
    async with open_store(db) as store:
        return await cost_rows(store, by, tenant, left_out)


def cost(
    db: DbOption = DEFAULT_DB,
    by: Annotated[str, typer.Option(
        "--by", "-b", metavar="session|agent|model|tenant",
        help="Group model calls by this.")] = "agent",
    limit: Annotated[int, count_option(
        "--limit", "-n", least=1, help="Rows to show (totals cover every row).")] = 20,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON instead: the rows shown, the total, and the damaged "
                       "rows left out.")] = False,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Cost report: model calls, tokens and money by session, agent, model or tenant.

    Covers the sessions of the tenant --tenant names (default: 'default'), or of every
    tenant with --all-tenants (e.g. `convoy cost --by tenant --all-tenants`). A session
    or journal row damaged in the store is left out of the sums, with a warning naming
    it (in JSON: under "damaged").

    Example: `convoy cost --by model` or `convoy cost --by session --limit 10`
    """
    if by not in _KEY:
        fail(f"--by {quoted(by, 40)} is not a grouping; use one of {', '.join(_KEY)}")
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    left_out: list[LeftOut] = []
    rows = run_async(_read(db, by, scope.tenant, left_out))
    if as_json:
        typer.echo(json_text({
            "by": by, "rows": [_row_json(r, by) for r in rows[:limit]],
            "total": _row_json(_total(rows), None), "damaged": left_out_json(left_out)},
            indent=2))
    elif not rows:
        out.print(f"no model calls{scope.of} in {label(db)}{scope.hint}", markup=False)
        no_sessions_note(db, scope)
    else:
        out.print(cost_table(rows, by, limit,
                             f"convoy cost · by {by} · {label(db)}{scope.of}", out.width))
        if len(rows) > limit:
            out.print(f"showing {limit} of {len(rows):,} {by}s (most expensive first); use "
                      "--limit N for more", markup=False)
    warn_left_out(left_out, then="the totals exclude " +
                  ("it" if len(left_out) == 1 else "them"))


def _total(rows: list[CostRow]) -> CostRow:
    return CostRow("total", sum(r.calls for r in rows), sum(r.input_tokens for r in rows),
                   sum(r.output_tokens for r in rows), sum(r.cost for r in rows),
                   sum(r.cached for r in rows))


def _row_json(r: CostRow, by: str | None) -> dict[str, Any]:
    return {**({by: r.key} if by else {}), "calls": r.calls, "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "cost": r.cost, "cached": r.cached}


def cost_table(rows: list[CostRow], by: str, limit: int, title: str,
               width: int | None = None) -> Table:
    """The rows (the first ``limit``) and their total. What a row is of (a session id,
    copied into other commands) keeps its whole width on one line: on a terminal narrower
    than the table (``width``), the columns that say least go first (cached, the share,
    then the tokens); a terminal too narrow even then folds it."""
    total = _total(rows)
    shown = rows[:limit]
    cells: dict[str, list[str]] = {
        by: [printable(r.key or "(unknown)") for r in shown] + ["total"],
        "calls": [f"{r.calls:,}" for r in [*shown, total]],
        "tokens in": [f"{r.input_tokens:,}" for r in [*shown, total]],
        "tokens out": [f"{r.output_tokens:,}" for r in [*shown, total]],
        "cost": [fmt_cost(r.cost) for r in [*shown, total]],
        "cached": [f"{r.cached:,}" for r in [*shown, total]],
        "share": [f"{r.cost / total.cost:.1%}" if total.cost > 0 else "-" for r in shown]
        + ["100.0%" if total.cost > 0 else "-"]}

    def natural(name: str) -> int:
        return max(cell_len(name), *map(cell_len, cells[name])) + 3

    names = fitting(list(cells), natural, width, ("cached", "share", "tokens in",
                                                  "tokens out"))
    whole = width is None or sum(map(natural, names)) + 1 <= width
    t = Table(title=title, title_justify="left", show_footer=True)
    for name in names:
        *_, footer = cells[name]
        first = name == by
        t.add_column(name, justify="left" if first else "right",
                     footer=Text(footer, style="bold"), overflow="fold",
                     no_wrap=not first or whole,
                     min_width=natural(name) - 3 if not first or whole else None)
    for i in range(len(shown)):  # (as Text: a '[bold]' in a name is shown, not obeyed)
        t.add_row(*(Text(cells[name][i]) for name in names))
    return t
