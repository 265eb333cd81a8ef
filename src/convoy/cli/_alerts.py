"""``convoy alerts``: the baseline alerts in a store, newest first, with where their webhook
deliveries stand (see :class:`convoy.BaselineAlerts`); ``--redeliver`` queues the given-up
ones again, ``--drop-webhook`` drops the undelivered ones of a webhook no engine has,
``--close`` clears an open alert by hand."""

from __future__ import annotations

import io
import re
from collections import Counter
from typing import Annotated, Any

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from convoy.alerts import alert_json
from convoy.alerts._interceptor import OPEN_ALERTS_READ
from convoy.alerts._webhook import hide_url, shown_url, url_fingerprint
from convoy.cli._common import (
    DEFAULT_DB,
    AllTenantsOption,
    DbOption,
    Scope,
    TenantOption,
    WriteBusyTimeoutOption,
    count_option,
    err,
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
from convoy.cli._left_out import warn_left_out
from convoy.cli._render import check_times, fmt_time
from convoy.stores import AlertRow, DeliveryRow
from convoy.stores._rows import LeftOut, readable, row_name

Deliveries = dict[int, list[DeliveryRow]]


async def _read(db: str, tenant: str | None, open_only: bool, limit: int,
                left_out: list[LeftOut]) -> tuple[list[AlertRow], Deliveries]:
    async with open_store(db) as store:
        rows = await store.list_alerts(tenant=tenant, open_only=open_only, limit=limit,
                                       left_out=left_out)
        deliveries: Deliveries = {}
        for d in await store.alert_deliveries([a.id for a in rows], left_out=left_out):
            deliveries.setdefault(d.alert_id, []).append(d)
        return rows, deliveries


async def _redeliver(db: str, tenant: str | None, busy_timeout: float) -> int:
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:
        return await store.redeliver(store.clock(), tenant=tenant)


async def _drop(db: str, webhook: str, scope: Scope, busy_timeout: float
                ) -> tuple[str, int]:
    """Drop the undelivered events of the webhook ``webhook`` names (its URL, or its
    fingerprint: the one URL of the store's undelivered events that has it). Returns the
    URL and how many."""
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:
        url, fp = webhook, None
        if not webhook.startswith(("http://", "https://")):
            fp = webhook.lstrip("#").lower()
            urls = [u for u in await store.undelivered_webhooks(tenant=scope.tenant)
                    if url_fingerprint(u) == fp]
            if len(urls) > 1:
                fail(f"{len(urls)} webhooks have the fingerprint {fp!r}: give the URL of the "
                     "one to drop")
            if not urls:
                fail(f"no pending or given-up webhook events{scope.of} with the fingerprint "
                     f"{fp!r}: nothing dropped{scope.hint}")
            url = urls[0]
        n = await store.drop_deliveries(url, tenant=scope.tenant)
        if not n:  # (a URL; or, by a fingerprint, events delivered a moment ago)
            fail(f"no pending or given-up webhook events{scope.of} for {shown_url(url)}: "
                 f"nothing dropped{scope.hint}")
        return url, n


async def _close(db: str, alert_id: int, scope: Scope, busy_timeout: float) -> AlertRow:
    """Clear the open alert ``alert_id`` (of the scope's tenant) by hand; the alert as it was
    (one line and exit 2 when there is no such open alert)."""
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:
        found = [a for a in await store.list_alerts(tenant=scope.tenant, open_only=True,
                                                    limit=OPEN_ALERTS_READ) if a.id == alert_id]
        if not found or not await store.alert_close(alert_id, store.clock(),
                                                    tenant=scope.tenant):
            cleared = [a.cleared for a in await store.list_alerts(
                tenant=scope.tenant, limit=OPEN_ALERTS_READ) if a.id == alert_id]
            when = f": it cleared already, at {fmt_time(cleared[0])}" \
                if cleared and cleared[0] is not None else ""
            fail(f"no open alert {alert_id}{scope.of}{when}: nothing closed "
                 f"({scope.command('alerts', db, options='--open')} lists them)")
        return found[0]


_FINGERPRINT = re.compile(r"#?[0-9a-fA-F]{8}")


def _check_webhook(value: str) -> None:
    """Exit 2 unless ``value`` is a webhook's URL or fingerprint (without quoting a long
    one: a URL without its scheme may hold a secret)."""
    if value.startswith(("http://", "https://")) or _FINGERPRINT.fullmatch(value):
        return
    got = repr(value) if len(value) <= 12 else f"a value of {len(value)} characters"
    fail("--drop-webhook takes a webhook's URL (http:// or https://, exactly as configured) "
         "or its 8-hex-digit fingerprint (as 'convoy alerts --json' shows it), got "
         f"{got}")


def alerts(
    db: DbOption = DEFAULT_DB,
    busy_timeout: WriteBusyTimeoutOption = 10.0,
    open_only: Annotated[bool, typer.Option(
        "--open", help="Only alerts that have not cleared.")] = False,
    limit: Annotated[int, count_option("--limit", "-n", least=1, help="Rows to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    redeliver: Annotated[bool, typer.Option(
        "--redeliver", help="First queue again the given-up webhook events of the "
        "tenant's alerts (every tenant's with --all-tenants): an engine configured with "
        "their webhook delivers them.")] = False,
    drop_webhook: Annotated[str | None, typer.Option(
        "--drop-webhook", metavar="URL|FINGERPRINT", help="First drop (delete) the pending "
        "and given-up webhook events of the tenant's alerts (every tenant's with "
        "--all-tenants) queued for this webhook, one no engine has any more: its URL "
        "exactly as configured, or the 8 hex digits after '#' where it is shown. Its "
        "delivered events are kept.")] = None,
    close: Annotated[int | None, count_option(
        "--close", least=1, metavar="ID", help="First clear this open alert by hand (one "
        "no observation will clear: its agent gets no more runs), with no cleared value, "
        "and queue its 'cleared' event for the webhooks its 'fired' one went to.")] = None,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Baseline alerts, newest first: which metric of which agent or tenant left its learned
    band, by how much, whether it cleared, and where its webhook deliveries stand
    (delivered, pending, given up; --json: each one's URL, attempts and last error).

    Covers the tenant --tenant names (default: 'default'), or every tenant with
    --all-tenants. --close, --redeliver and --drop-webhook write to the store first:
    --close clears an open alert by hand, --redeliver queues the given-up events again,
    --drop-webhook drops the undelivered events of a webhook that no engine has any more.

    Example: `convoy alerts --open --all-tenants`
    """
    scope = tenant_scope(tenant, all_tenants)
    if drop_webhook is not None:
        _check_webhook(drop_webhook)
    require_store(db)
    if drop_webhook is not None:
        url, n = run_async(_drop(db, drop_webhook, scope, busy_timeout))
        err.print(f"dropped {n} pending or given-up webhook event{'' if n == 1 else 's'}"
                  f"{scope.of} for {shown_url(url)} (its delivered ones are kept)",
                  markup=False, soft_wrap=True)
    if close is not None:
        a = run_async(_close(db, close, scope, busy_timeout))
        err.print(f"closed alert {a.id} ({a.metric} of {a.scope} {row_name(a.subject)}"
                  f"{'' if scope.tenant is not None else f', tenant {row_name(a.tenant)}'}): "
                  "cleared by hand; an engine fires it again once the metric is back in its "
                  "band and leaves it again", markup=False, soft_wrap=True)
    if redeliver:
        _report_redelivered(run_async(_redeliver(db, scope.tenant, busy_timeout)), scope)
    left_out: list[LeftOut] = []
    found, deliveries = run_async(_read(db, scope.tenant, open_only, limit, left_out))
    rows = readable(found, _times, left_out)
    if as_json:
        # (a detail edited in the store: that alert left out too)
        typer.echo(json_text(readable(rows, lambda a: _json(a, deliveries), left_out),
                              indent=2))
    elif not rows:
        what = "open alerts" if open_only else "alerts"
        out.print(f"no {what}{scope.of} in {label(db)}{scope.hint}", markup=False)
        no_sessions_note(db, scope)
    else:
        out.print(alerts_table(rows, f"convoy alerts · {label(db)}{scope.of}",
                               tenants=scope.tenant is None, deliveries=deliveries,
                               width=out.width))
        given_up = sum(d.status == "given_up" for a in rows for d in deliveries.get(a.id, []))
        if given_up:
            out.print(f"{given_up} webhook event{'' if given_up == 1 else 's'} given up: "
                      f"{scope.command('alerts', db, options='--json')} shows the last "
                      f"error, {scope.command('alerts', db, options='--redeliver')} queues "
                      f"{'it' if given_up == 1 else 'them'} again", markup=False,
                      soft_wrap=True)
    warn_left_out(left_out, "alert")


def _report_redelivered(n: int, scope: Scope) -> None:
    """One line on stderr (stdout stays the listing, JSON with --json)."""
    if n:
        one = n == 1
        err.print(f"queued {n} given-up webhook event{'' if one else 's'}{scope.of} again: "
                  f"an engine configured with {'its' if one else 'their'} webhook delivers "
                  f"{'it' if one else 'them'}", markup=False, soft_wrap=True)
    else:
        err.print(f"no given-up webhook events{scope.of}: nothing queued again",
                  markup=False, soft_wrap=True)


def _json(a: AlertRow, deliveries: Deliveries) -> dict[str, Any]:
    """An alert as ``--json`` prints it: :func:`~convoy.alerts.alert_json`, with its
    deliveries."""
    return {**alert_json(a), "deliveries": [
        {"url": shown_url(d.url), "fingerprint": url_fingerprint(d.url), "event": d.event,
         "status": d.status, "attempts": d.attempts, "delivered": d.delivered,
         "next_attempt": d.next_at,
         # (an error an earlier Convoy stored may quote the URL's path)
         "last_error": None if d.last_error is None else hide_url(d.last_error, d.url),
         "key": d.key} for d in deliveries.get(a.id, [])]}


def alerts_table(rows: list[AlertRow], title: str, *, tenants: bool,
                 deliveries: Deliveries | None = None, width: int | None = None) -> Table:
    """One row per alert; a tenant column when the rows span tenants, a webhooks column
    when any of them was queued for a webhook. Where the columns' least widths do not fit
    ``width`` with the table's borders, the columns are set apart by spaces alone."""
    deliveries = deliveries or {}
    hooks = any(deliveries.get(a.id) for a in rows)
    names = ("id", "status", *(("tenant",) if tenants else ()), "of", "metric", "value",
             "band top (mean, dev)", "opened", "cleared", *(("webhooks",) if hooks else ()))
    styles: list[dict[str, Any]] = [
        {},  # (borders)
        # (no borders: two spaces between columns, then one, and a rule under the header)
        {"box": box.SIMPLE_HEAD, "show_edge": False, "padding": (0, 1, 0, 0)},
        {"box": box.SIMPLE_HEAD, "show_edge": False, "padding": 0}]
    for style in styles if width is not None else styles[:1]:
        t = Table(title=title, title_justify="left", **style)
        for name in names:
            # Narrow terminals: the alert's subject, metric, band, times and webhooks
            # wrap; no column shrinks below its least readable width (Rich would give a
            # squeezed one none at all).
            t.add_column(name, justify="right" if name in ("id", "value") else "left",
                         no_wrap=name in _WHOLE, min_width=_MIN_WIDTHS.get(name),
                         overflow="fold")
        for a in rows:
            status = Text(a.status, style="red" if a.status == "open" else "green")
            t.add_row(str(a.id), status, *((a.tenant,) if tenants else ()),
                      f"{a.scope} {a.subject}", a.metric, _num(a.value),
                      f"{_num(a.threshold)} ({_num(a.mean)}, {_num(a.deviation)})",
                      fmt_time(a.opened), fmt_time(a.cleared),
                      *((_hooks(deliveries.get(a.id, [])),) if hooks else ()))
        if width is None or _least(t, width) <= width:
            break
    return t


def _least(t: Table, width: int) -> int:
    """How wide ``t`` is drawn in ``width`` columns (Rich crops a table whose columns
    cannot shrink enough: wider than ``width`` then)."""
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False,
                      markup=False, emoji=False)  # (as the command's console: text as is)
    return max((cell_len(line) for line in _draw(console, t).splitlines()), default=0)


def _draw(console: Console, t: Table) -> str:
    with console.capture() as drawn:
        console.print(t, crop=False)
    return drawn.get()


#: The columns of ``alerts_table`` never wrapped, and the least width of some.
_WHOLE = frozenset({"id", "status", "value"})
_MIN_WIDTHS = {"id": 2, "status": 7, "tenant": 6, "of": 6, "metric": 6, "value": 5,
               "band top (mean, dev)": 8, "opened": 10, "cleared": 10, "webhooks": 9}


def _hooks(deliveries: list[DeliveryRow]) -> Text:
    """``1 delivered, 1 given up``: an alert's deliveries by status (given up in red)."""
    counts = Counter(d.status for d in deliveries)
    text = Text()
    for status in ("given_up", "pending", "delivered"):
        if counts[status]:
            if text:
                text.append(", ")
            text.append(f"{counts[status]} {status.replace('_', ' ')}",
                        style="red" if status == "given_up" else "")
    return text or Text("-")


def _times(a: AlertRow) -> AlertRow:
    """``a``, once its times are checked (a time that cannot be shown: a damaged row)."""
    check_times(lambda: f"alert {row_name(a.id)}", (("opened", a.opened),
                                                    ("cleared", a.cleared)))
    return a


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
