"""``convoy cost``: what the model calls in a store cost, by session, agent, model or tenant.

Read from the journal: every completed model step records its model, tokens in / out, cost
and whether it was served from the response cache, so the report covers finished and
unfinished sessions alike and never counts a replayed step twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from convoy.cli._common import DEFAULT_DB, DbOption, fail, out, require_store
from convoy.cli._render import fmt_cost

By = Literal["session", "agent", "model", "tenant"]
_KEY: dict[str, str] = {
    "session": "j.session_id",
    "agent": "j.target",
    "model": "COALESCE(json_extract(j.result, '$.model'), '')",
    "tenant": "s.tenant",
}
_QUERY = """
SELECT {key} AS k, COUNT(*),
       COALESCE(SUM(json_extract(j.result, '$.in')), 0),
       COALESCE(SUM(json_extract(j.result, '$.out')), 0),
       COALESCE(SUM(json_extract(j.result, '$.cost')), 0.0),
       COALESCE(SUM(CASE WHEN json_extract(j.result, '$.cached') THEN 1 ELSE 0 END), 0)
FROM journal j JOIN sessions s ON s.id = j.session_id
WHERE j.kind = 'model' AND j.status = 'completed'
GROUP BY k
"""


@dataclass(slots=True, frozen=True)
class CostRow:
    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float
    cached: int


def cost_rows(db: Path, by: str) -> list[CostRow]:
    """Model calls grouped by ``by``, most expensive first (then by tokens)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute(_QUERY.format(key=_KEY[by])).fetchall()
    out = [CostRow(str(k), int(n), int(i), int(o), float(c), int(h))
           for k, n, i, o, c, h in rows]
    out.sort(key=lambda r: (-r.cost, -(r.input_tokens + r.output_tokens), r.key))
    return out


def cost(
    db: DbOption = Path(DEFAULT_DB),
    by: Annotated[str, typer.Option(
        "--by", "-b", metavar="session|agent|model|tenant",
        help="Group model calls by this.")] = "agent",
    limit: Annotated[int, typer.Option(
        "--limit", "-n", min=1, help="Rows to show (totals cover every row).")] = 20,
) -> None:
    """Cost report: model calls, tokens and money by session, agent, model or tenant.

    Example: `convoy cost --by model` or `convoy cost --by session --limit 10`
    """
    if by not in _KEY:
        fail(f"--by {by!r} is not a grouping; use one of {', '.join(_KEY)}")
    require_store(db)
    try:
        rows = cost_rows(db, by)
    except sqlite3.DatabaseError as e:
        fail(f"{str(db)!r} is not a readable Convoy store: {e}")
    if not rows:
        out.print(f"no model calls in {db}", markup=False)
        return
    out.print(cost_table(rows, by, limit, f"convoy cost · by {by} · {db}"))
    if len(rows) > limit:
        out.print(f"showing {limit} of {len(rows):,} {by}s (most expensive first); use "
                  "--limit N for more", markup=False)


def cost_table(rows: list[CostRow], by: str, limit: int, title: str) -> Table:
    total = CostRow("total", sum(r.calls for r in rows), sum(r.input_tokens for r in rows),
                    sum(r.output_tokens for r in rows), sum(r.cost for r in rows),
                    sum(r.cached for r in rows))
    t = Table(title=title, title_justify="left", show_footer=True)
    t.add_column(by, footer=Text("total", style="bold"), overflow="fold")
    for name, value in (("calls", f"{total.calls:,}"), ("tokens in", f"{total.input_tokens:,}"),
                        ("tokens out", f"{total.output_tokens:,}"),
                        ("cost", fmt_cost(total.cost)), ("cached", f"{total.cached:,}"),
                        ("share", "100.0%" if total.cost > 0 else "-")):
        t.add_column(name, justify="right", footer=Text(value, style="bold"), no_wrap=True)
    for r in rows[:limit]:
        share = f"{r.cost / total.cost:.1%}" if total.cost > 0 else "-"
        t.add_row(r.key or "(unknown)", f"{r.calls:,}", f"{r.input_tokens:,}",
                  f"{r.output_tokens:,}", fmt_cost(r.cost), f"{r.cached:,}", share)
    return t
