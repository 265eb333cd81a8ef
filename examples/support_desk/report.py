"""KPIs of a support-desk run, scored against the tickets' ground truth, and their tables.

The accuracies credit only what the agents decided and did: a ticket handed to a person
because the agents gave up counts as a wrong action (even when its expected action is to
escalate), and a write action the desk claims (``refund``, ``bug_report``,
``reset_password``, ``update_email``) counts only if the CRM holds a write of that kind by
the session. Sessions that did not complete count as wrong in both accuracies.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

import convoy
from examples.support_desk.accounts import Totals
from examples.support_desk.agents import TicketOutcome
from examples.support_desk.crm import CRM

TICKETS = Path(__file__).with_name("tickets.jsonl")


def load_tickets(path: Path = TICKETS, limit: int | None = None) -> list[dict[str, Any]]:
    """The tickets of ``path`` (with their ground-truth fields), at most ``limit``."""
    with path.open() as f:
        tickets = [json.loads(line) for line in f if line.strip()]
    return tickets[:limit] if limit is not None else tickets


@dataclass(slots=True)
class Tier:
    name: str
    calls: int
    tokens: int
    cost: float


@dataclass(slots=True)
class Savings:
    """What routing and caching saved against every call on the strong model, uncached."""

    tiers: list[Tier]
    cache_hits: int
    cache_saved_tokens: int
    actual: float
    all_strong: float

    @property
    def saved(self) -> float:
        return self.all_strong - self.actual


def savings(engine: convoy.Engine, cache: Any, *, strong: str) -> Savings:
    """Price every token the run used (and every token the cache saved) at the strong
    model's price, and compare with what was actually spent."""
    prices = engine.accounting.prices
    tiers = [Tier(name, s.calls, s.usage.total_tokens, s.cost)
             for name, s in sorted(engine.accounting.by_model.items())]
    used = convoy.Usage()
    for s in engine.accounting.by_model.values():
        used.add(s.usage)
    used.add(cache.saved_usage)
    return Savings(tiers=tiers, cache_hits=cache.hits,
                   cache_saved_tokens=cache.saved_usage.total_tokens,
                   actual=sum(t.cost for t in tiers), all_strong=prices.cost(strong, used))


def savings_table(s: Savings) -> Table:
    t = Table(title="Cost: routing and caching vs everything on the strong model",
              header_style="bold")
    for col in ("", "calls", "tokens", "cost"):
        t.add_column(col, justify="left" if not col else "right")
    for tier in s.tiers:
        t.add_row(tier.name, f"{tier.calls:,}", f"{tier.tokens:,}", f"${tier.cost:.4f}")
    t.add_row("cache hits (free)", f"{s.cache_hits:,}", f"{s.cache_saved_tokens:,}", "$0.0000")
    t.add_row("[bold]actual[/bold]", "", "", f"[bold]${s.actual:.4f}[/bold]")
    t.add_row("all on the strong model, no cache", "", "", f"${s.all_strong:.4f}")
    share = s.saved / s.all_strong if s.all_strong else 0.0
    t.add_row("[green]saved[/green]", "", "", f"[green]${s.saved:.4f} ({share:.0%})[/green]")
    return t


@dataclass(slots=True)
class Kpis:
    sessions: int = 0
    completed: int = 0
    resolved: int = 0
    escalated: int = 0
    # Handed to a person because the agents gave up: "error (agent)" -> tickets.
    handed_over: Counter[str] = field(default_factory=Counter)
    handover_examples: dict[str, str] = field(default_factory=dict)  # kind -> first reason
    unbacked: int = 0  # write actions claimed with no such write in the CRM
    failed: Counter[str] = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)  # reason -> first message
    category_correct: int = 0
    action_correct: int = 0
    by_action: dict[str, tuple[int, int]] = field(default_factory=dict)  # truth -> (n, ok)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)
    model_calls: int = 0
    tool_calls: int = 0
    wall_s: float = 0.0
    crm_changes: dict[str, int] = field(default_factory=dict)
    accounts: Totals | None = None
    savings: Savings | None = None

    @property
    def category_accuracy(self) -> float:
        return self.category_correct / self.sessions if self.sessions else math.nan

    @property
    def action_accuracy(self) -> float:
        return self.action_correct / self.sessions if self.sessions else math.nan

    def latency(self, p: float) -> float:
        if not self.latencies:
            return math.nan
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


WRITE_ACTIONS = frozenset({"refund", "bug_report", "reset_password", "update_email"})
"""Actions that change the CRM: a claim of one needs the write to count."""


def score(results: Sequence[convoy.SessionResult[TicketOutcome]],
          tickets: Sequence[dict[str, Any]], engine: convoy.Engine | None = None,
          wall_s: float = 0.0, *, crm: CRM | None = None) -> Kpis:
    """KPIs of ``results`` (in ticket order); see the module docstring for what counts as
    right. Without ``crm`` claimed writes are taken at their word."""
    k = Kpis(sessions=len(results), wall_s=wall_s)
    writes = crm.writes_by_session() if crm is not None else None
    per_action: dict[str, list[int]] = {}
    for res, truth in zip(results, tickets, strict=True):
        k.input_tokens += res.usage.input_tokens
        k.output_tokens += res.usage.output_tokens
        k.cost += res.cost
        k.latencies.append(res.duration_s)
        tally = per_action.setdefault(truth["expected_action"], [0, 0])
        tally[0] += 1
        out = res.output
        if not res.ok or out is None:
            error = res.error or {}
            reason = f"{res.status}: {error.get('type', 'unknown')}"
            k.failed[reason] += 1
            k.failure_examples.setdefault(reason, f"{res.id}: {error.get('message', '')}")
            k.escalated += res.status == "escalated"
            continue
        k.completed += 1
        k.resolved += out.resolved
        k.escalated += out.escalated
        k.category_correct += out.category == truth["category"]
        if out.handover is not None:
            agent = out.handover.agent
            kind = f"{out.handover.error} ({agent})" if agent else out.handover.error
            k.handed_over[kind] += 1
            k.handover_examples.setdefault(kind, f"{res.id}: {out.handover.reason}")
            continue  # the agents did not decide the action: never right
        done = writes is None or out.action not in WRITE_ACTIONS or \
            out.action in writes.get(res.id, set())
        k.unbacked += not done
        hit = done and out.action == truth["expected_action"]
        k.action_correct += hit
        tally[1] += hit
    k.by_action = {a: (n, ok) for a, (n, ok) in sorted(per_action.items())}
    if engine is not None:
        k.model_calls = sum(s.calls for s in engine.accounting.by_model.values())
        k.tool_calls = engine.timings.by_kind["tool"].count
    return k


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def kpi_table(k: Kpis, title: str = "Support desk KPIs") -> Table:
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("sessions", str(k.sessions)),
        ("completed", str(k.completed)),
        ("resolved", f"{k.resolved} ({_pct(k.resolved / k.sessions if k.sessions else math.nan)})"),
        ("escalated to a human", str(k.escalated)),
        ("  handed over: the agents gave up", str(sum(k.handed_over.values()))),
        *((f"    {kind}", str(n)) for kind, n in sorted(k.handed_over.items())),
        ("failed", str(sum(k.failed.values()))),
        *((f"  {reason}", str(n)) for reason, n in sorted(k.failed.items())),
        ("category accuracy", _pct(k.category_accuracy)),
        ("action accuracy", _pct(k.action_accuracy)),
        ("  writes claimed, not in the CRM", str(k.unbacked)),
        ("tokens (in / out)", f"{k.input_tokens:,} / {k.output_tokens:,}"),
        ("cost", f"${k.cost:.4f}"),
        ("session latency p50", _duration(k.latency(50))),
        ("session latency p99", _duration(k.latency(99))),
        ("model calls", f"{k.model_calls:,}"),
        ("tool calls", f"{k.tool_calls:,}"),
        ("wall time", f"{k.wall_s:.2f} s"),
        *((f"CRM: {what}", str(n)) for what, n in k.crm_changes.items()),
        *_account_rows(k),
    ]
    for name, value in rows:
        t.add_row(name, value)
    return t


def _account_rows(k: Kpis) -> list[tuple[str, str]]:
    a = k.accounts
    if a is None:
        return []
    return [("shared customer records", f"{a.customers:,}"),
            ("  tickets counted in them", f"{a.tickets:,} of {k.sessions:,}"),
            ("  tickets left open", f"{a.open_tickets:,}"),
            ("  refunds credited", f"${a.credit:,.2f}"),
            ("  concurrent writes re-applied", f"{a.conflicts:,}")]


def action_table(k: Kpis) -> Table:
    t = Table(title="Action accuracy by expected action", header_style="bold")
    t.add_column("expected action")
    t.add_column("tickets", justify="right")
    t.add_column("correct", justify="right")
    t.add_column("accuracy", justify="right")
    for action, (n, ok) in k.by_action.items():
        t.add_row(action, str(n), str(ok), _pct(ok / n if n else math.nan))
    return t
