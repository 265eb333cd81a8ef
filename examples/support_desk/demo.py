"""Run every support ticket through the desk and print KPIs.

    python -m examples.support_desk.demo [--db PATH] [--crm PATH] [--model SPEC]
                                         [--concurrency N] [--limit N]

Starts from a fresh CRM and a fresh session store (both under ``.convoy/`` by default),
runs the tickets with ``Engine.run_many`` and scores the results against the ground truth
in ``tickets.jsonl``. With no ``--model`` every agent uses the bundled simulator, so it needs
no API key; ``--model openai:gpt-4o-mini`` runs the same desk on a real model.

A local server (``make llama-server``, then ``OPENAI_BASE_URL=http://127.0.0.1:8765/v1
OPENAI_API_KEY=local ... --model openai:smollm2``) answers one request at a time: for an
``openai:`` model on a loopback ``OPENAI_BASE_URL`` the demo runs one session at a time
and gives each call up to :data:`LOCAL_CALL_TIMEOUT` seconds, since sessions queued behind
a single slot would only time out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import convoy
from convoy.cost import ResponseCache
from convoy.resilience import Router, protections
from examples.support_desk import accounts, crm, report
from examples.support_desk.agents import TicketOutcome
from examples.support_desk.sim_script import LARGE_SIM, MINI_SIM, PRICES
from examples.support_desk.workflow import handle_ticket

DEFAULT_DB = Path(".convoy/support_desk.db")
DEFAULT_CONCURRENCY = 32
LOCAL_CALL_TIMEOUT = 300.0
"""Seconds per model call on a local server: a 135M model on two CPU cores reads a
1,500-token prompt and writes a 400-token answer in well under a minute, but not always."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.support_desk.demo",
                                description="Run the support-desk example and print KPIs.")
    p.add_argument("--db", type=Path, default=DEFAULT_DB,
                   help=f"session store, recreated on each run (default {DEFAULT_DB})")
    p.add_argument("--crm", type=Path, default=None,
                   help=f"CRM database, recreated on each run (default ${crm.ENV_VAR} or "
                        f"{crm.DEFAULT_PATH})")
    p.add_argument("--model", default=None,
                   help="run every agent on this model, e.g. openai:gpt-4o-mini "
                        "(default: the bundled simulator)")
    p.add_argument("--structured-output", choices=("json_schema", "json_object", "none"),
                   default=None,
                   help="how an openai: model is asked for JSON (default: json_object for a "
                        "local OPENAI_BASE_URL such as llama.cpp, else json_schema)")
    p.add_argument("--concurrency", type=int, default=None,
                   help=f"sessions at once (default {DEFAULT_CONCURRENCY}; 1 for an openai: "
                        "model on a loopback OPENAI_BASE_URL: llama.cpp's server has one slot)")
    p.add_argument("--limit", type=int, default=None, help="run only the first N tickets")
    p.add_argument("--tickets", type=Path, default=report.TICKETS, help="tickets JSONL file")
    p.add_argument("--no-routing", action="store_true",
                   help="run every agent on its own model: no cheap/strong routing, no cache")
    return p.parse_args(argv)


@dataclass(slots=True)
class CostControl:
    """Routing between a cheap and a strong model, and a per-tenant response cache."""

    router: Router
    cache: ResponseCache

    @classmethod
    def build(cls) -> CostControl:
        return cls(Router(cheap=MINI_SIM.name, strong=LARGE_SIM.name, escalate_after=1),
                   ResponseCache(ttl=3600))


def local_server(spec: str | None) -> bool:
    """An ``openai:`` model served on this machine (``OPENAI_BASE_URL`` on loopback)."""
    if not spec or not spec.startswith("openai:"):
        return False
    host = urlsplit(os.environ.get("OPENAI_BASE_URL", "")).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


def concurrency(args: argparse.Namespace) -> int:
    """``--concurrency``, else one session at a time on a local server (llama_cpp.server
    serves one request at a time and has no endpoint to ask), else 32."""
    if args.concurrency is not None:
        return int(args.concurrency)
    return 1 if local_server(args.model) else DEFAULT_CONCURRENCY


def build_model(spec: str, structured_output: str | None) -> convoy.Model:
    """The model for ``--model``. For ``openai:`` it also picks how JSON is requested:
    llama.cpp's server rejects OpenAI's ``json_schema`` response format, so a loopback
    ``OPENAI_BASE_URL`` gets ``json_object`` unless ``--structured-output`` says otherwise."""
    provider, _, name = spec.partition(":")
    if provider != "openai" or not name:
        return convoy.infer_model(spec)
    # OpenAIModel is not exported and the "openai:" string cannot set structured_output.
    from convoy.models._openai import OpenAIModel

    local = local_server(spec)
    mode = structured_output or ("json_object" if local else "json_schema")
    return OpenAIModel(model=name, structured_output=mode,  # type: ignore[arg-type]
                       timeout=LOCAL_CALL_TIMEOUT if local else 60.0)


def reset_store(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def run(args: argparse.Namespace, console: Console) -> report.Kpis:
    tickets = report.load_tickets(args.tickets, args.limit)
    crm_path = args.crm or crm.crm_path()
    os.environ[crm.ENV_VAR] = str(crm_path)  # the tools read it on every call
    desk_crm = crm.CRM.reset(crm_path)
    reset_store(args.db)
    # Registered under its spec, so the engine both uses it for every agent and closes it.
    models = {args.model: build_model(args.model, args.structured_output)} if args.model else {}
    control = None if args.model or args.no_routing else CostControl.build()
    interceptors: list[convoy.Interceptor] = []
    if control is not None:
        models |= {MINI_SIM.name: MINI_SIM, LARGE_SIM.name: LARGE_SIM}
        interceptors = protections(router=control.router, cache=control.cache)
    elif local_server(args.model):
        interceptors = protections(call_timeout=LOCAL_CALL_TIMEOUT)
    else:
        interceptors = protections()
    engine = convoy.Engine(args.db, models=models, model=args.model, interceptors=interceptors,
                           concurrency=concurrency(args), prices=convoy.PriceTable(PRICES))
    statuses: Counter[str] = Counter()
    columns = (TextColumn("[bold]tickets"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    async with engine:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("tickets", total=len(tickets), status="")

            def on_done(res: convoy.SessionResult[TicketOutcome]) -> None:
                statuses[res.status] += 1
                summary = " ".join(f"{s}={n}" for s, n in sorted(statuses.items()))
                progress.update(task, advance=1, status=summary)

            t0 = time.perf_counter()
            results = await engine.run_many(handle_ticket, tickets,
                                            ids=[t["id"] for t in tickets], on_done=on_done)
            wall = time.perf_counter() - t0
        kpis = report.score(results, tickets, engine, wall, crm=desk_crm)
        kpis.accounts = await accounts.totals(engine, [t["customer_email"] for t in tickets])
        if control is not None:
            kpis.savings = report.savings(engine, control.cache, strong=LARGE_SIM.name)
    kpis.crm_changes = desk_crm.changes()
    return kpis


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    model = args.model or "sim:support (bundled simulator)"
    console.print(f"[bold]Support desk[/bold]: model {model}, concurrency {concurrency(args)}, "
                  f"store {args.db}")
    try:
        kpis = asyncio.run(run(args, console))
    except convoy.UserError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 2
    except (convoy.StoreError, OSError) as e:  # disk full, read-only, bad path: one line
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 1
    console.print(report.kpi_table(kpis))
    console.print(report.action_table(kpis))
    if kpis.savings is not None:
        console.print(report.savings_table(kpis.savings))
    examples = [(f"handed over: {kind}", ex) for kind, ex in kpis.handover_examples.items()]
    for reason, example in sorted([*examples, *kpis.failure_examples.items()]):
        console.print(f"[yellow]{escape(reason)}[/yellow], e.g. {escape(example[:300])}",
                      highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
