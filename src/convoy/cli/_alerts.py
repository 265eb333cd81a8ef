"""``convoy alerts``: the baseline alerts in a store, newest first (see
:class:`convoy.BaselineAlerts`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from convoy.alerts import alert_json
from convoy.cli._common import (
    DEFAULT_DB,
    AllTenantsOption,
    DbOption,
    TenantOption,
    count_option,
    label,
    open_store,
    out,
    require_store,
    run_async,
    tenant_scope,
)
from convoy.cli._left_out import warn_left_out
from convoy.cli._render import check_times, fmt_time
from convoy.stores import AlertRow
from convoy.stores._rows import LeftOut, readable, row_name


async def _read(db: str, tenant: str | None, open_only: bool, limit: int,
                left_out: list[LeftOut]) -> list[AlertRow]:
    async with open_store(db) as store:
        return await store.list_alerts(tenant=tenant, open_only=open_only, limit=limit,
                                       left_out=left_out)


def alerts(
    db: DbOption = DEFAULT_DB,
    open_only: Annotated[bool, typer.Option(
        "--open", help="Only alerts that have not cleared.")] = False,
    limit: Annotated[int, count_option("--limit", "-n", least=1, help="Rows to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Baseline alerts, newest first: which metric of which agent or tenant left its learned
    band, by how much, and whether it cleared.

    Covers the tenant --tenant names (default: 'default'), or every tenant with
    --all-tenants.

    Example: `convoy alerts --open --all-tenants`
    """
    scope = tenant_scope(tenant, all_tenants)
    require_store(db)
    left_out: list[LeftOut] = []
    rows = readable(run_async(_read(db, scope.tenant, open_only, limit, left_out)),
                    _times, left_out)
    if as_json:
        # (a detail edited in the store: that alert left out too)
        typer.echo(json.dumps(readable(rows, alert_json, left_out), indent=2))
    elif not rows:
        what = "open alerts" if open_only else "alerts"
        out.print(f"no {what}{scope.of} in {label(db)}{scope.hint}", markup=False)
    else:
        out.print(alerts_table(rows, f"convoy alerts · {label(db)}{scope.of}",
                               tenants=scope.tenant is None))
    warn_left_out(left_out, "alert")


def alerts_table(rows: list[AlertRow], title: str, *, tenants: bool) -> Table:
    """One row per alert; a tenant column when the rows span tenants."""
    t = Table(title=title, title_justify="left")
    names = ("id", "status", *(("tenant",) if tenants else ()), "of", "metric", "value",
             "band ≤ (mean ± dev)", "opened", "cleared")
    for name in names:
        t.add_column(name, justify="right" if name in ("id", "value") else "left",
                     no_wrap=name not in ("band ≤ (mean ± dev)",))
    for a in rows:
        status = Text(a.status, style="red" if a.status == "open" else "green")
        t.add_row(str(a.id), status, *((a.tenant,) if tenants else ()),
                  f"{a.scope} {a.subject}", a.metric, _num(a.value),
                  f"{_num(a.threshold)} ({_num(a.mean)} ± {_num(a.deviation)})",
                  fmt_time(a.opened), fmt_time(a.cleared))
    return t


def _times(a: AlertRow) -> AlertRow:
    """``a``, once its times are checked (a time that cannot be shown: a damaged row)."""
    check_times(lambda: f"alert {row_name(a.id)}", (("opened", a.opened),
                                                    ("cleared", a.cleared)))
    return a


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
