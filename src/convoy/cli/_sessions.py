"""``convoy sessions list`` and ``convoy sessions show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from convoy.cli._common import DEFAULT_DB, DbOption, fail, open_engine_sync, out
from convoy.cli._render import STATUSES, print_session, sessions_table
from convoy.stores._sqlite import SessionRow

sessions_app = typer.Typer(
    name="sessions", no_args_is_help=True, rich_markup_mode="markdown",
    help="Inspect the sessions in a store.\n\nExample: `convoy sessions list --status failed`")


@sessions_app.command("list")
def list_sessions(
    db: DbOption = Path(DEFAULT_DB),
    status: Annotated[str | None, typer.Option(
        "--status", "-s", help=f"Only this status: {', '.join(STATUSES)}.")] = None,
    workflow: Annotated[str | None, typer.Option(
        "--workflow", "-w", metavar="MODULE:WORKFLOW", help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = 50,
) -> None:
    """List sessions, newest first.

    Example: `convoy sessions list --status failed --limit 20`
    """
    if status is not None and status not in STATUSES:
        fail(f"--status {status!r} is not a session status; use one of {', '.join(STATUSES)}")
    with open_engine_sync(db) as engine:
        rows = engine.store.list_sessions(status=status, workflow=workflow, limit=limit)
        counts = engine.store.counts()
    total = counts.get(status, 0) if status else sum(counts.values())
    if not rows:
        what = f"with status {status!r} " if status else ""
        out.print(f"no sessions {what}in {db}", markup=False)
        return
    out.print(sessions_table(rows))
    if workflow is None and total > len(rows):
        out.print(f"showing {len(rows)} of {total:,} sessions; use --limit N for more",
                  markup=False)
    if counts and status is None:
        out.print("  ".join(f"{s}: {counts[s]:,}" for s in STATUSES if s in counts),
                  markup=False)


@sessions_app.command("show")
def show_session(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id.")],
    db: DbOption = Path(DEFAULT_DB),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
) -> None:
    """Show one session: status, workflow, journaled steps, usage, output or error.

    Example: `convoy sessions show 3f2a9c1b7e4d-12 --json`
    """
    with open_engine_sync(db) as engine:
        row = engine.store.get_session(session_id)
        if row is None:
            fail(f"no session {session_id!r} in {str(db)!r}; 'convoy sessions list' shows "
                 "the ids")
        steps = engine.store.journal(session_id)
    if as_json:
        typer.echo(json.dumps(session_json(row, steps), indent=2))
    else:
        print_session(out, row, steps)


def session_json(row: SessionRow, steps: list[tuple[str, str, str, str, str | None, float]]
                 ) -> dict[str, Any]:
    return {
        "id": row.id, "workflow": row.workflow, "version": row.version, "tenant": row.tenant,
        "status": row.status, "created": row.created, "started": row.started,
        "finished": row.finished, "steps": row.steps,
        "usage": {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens},
        "cost": row.cost, "input": _json(row.input), "output": _json(row.output),
        "error": row.error_record,
        "journal": [{"key": k, "kind": kind, "target": target, "status": st,
                     "result": _json(result), "at": at}
                    for k, kind, target, st, result, at in steps],
    }


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
