"""``convoy run``: one session per line of a JSONL file, resumable by re-running."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from convoy import Engine, Workflow, load_workflow
from convoy.cli._common import (
    DEFAULT_DB,
    ConcurrencyOption,
    DbOption,
    ModelOption,
    build_engine,
    err,
    out,
    usage_errors,
    workflows_from_cwd,
)
from convoy.cli._inputs import InputBatch, read_inputs
from convoy.cli._progress import session_progress
from convoy.cli._render import print_failures, summary_table
from convoy.cli._stats import RunStats

UNFINISHED = ("pending", "running")


def run(
    workflow: Annotated[str, typer.Argument(
        metavar="MODULE:WORKFLOW",
        help="The workflow to run, e.g. 'examples.support_desk.workflow:handle_ticket' "
             "(importable from the current directory or PYTHONPATH).")],
    input: Annotated[Path, typer.Option(
        "--input", "-i", metavar="FILE.jsonl",
        help="One workflow input (a JSON value) per line.")],
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = Path(DEFAULT_DB),
    tenant: Annotated[str, typer.Option(help="Tenant the sessions are billed to.")] = "default",
) -> None:
    """Run a workflow once per line of a JSONL file and print a summary.

    Lines that are not JSON or do not match the workflow's input type are reported with
    their line number and skipped. Each line gets a session id derived from the file and the
    line number: run the same command again after a crash or Ctrl-C and finished sessions
    are kept, unfinished ones resume from their journal, nothing runs twice.

    Exit code 0 when the run happened (even if some sessions failed), 2 on usage errors.

    Example: `convoy run examples.support_desk.workflow:handle_ticket -i tickets.jsonl`
    """
    workflows_from_cwd()
    with usage_errors():
        wf = load_workflow(workflow)
    engine = build_engine(db, concurrency=concurrency, model=model)
    with usage_errors():
        batch = read_inputs(wf, input)
    for bad in batch.invalid:
        err.print(f"{input}: line {bad.line}: {bad.reason} (skipped)", markup=False,
                  style="yellow", soft_wrap=True)
    if not batch.valid and not batch.invalid:
        err.print(f"{input}: no inputs (the file has no non-blank lines)", markup=False)
    try:
        with usage_errors():
            stats = asyncio.run(_run(engine, wf, batch, tenant))
    except KeyboardInterrupt:
        err.print("interrupted: unfinished sessions are saved; run the same command again "
                  "(or 'convoy resume') to finish them", markup=False)
        raise typer.Exit(130) from None
    out.print(summary_table(f"convoy run {wf.name} · run {batch.run_id} · {db}", stats,
                            batch.invalid))
    print_failures(out, stats)


async def _run(engine: Engine, wf: Workflow[Any, Any], batch: InputBatch,
               tenant: str) -> RunStats:
    stats = RunStats()
    async with engine:
        ids: list[str] = []
        values: list[Any] = []
        for item in batch.valid:
            sid = batch.session_id(item.line)
            row = engine.store.get_session(sid)
            if row is not None and row.status not in UNFINISHED:
                stats.skipped[row.status] += 1
                continue
            if row is not None and row.version != wf.version:
                err.print(f"line {item.line}: session {sid} started on version "
                          f"{row.version!r} of {wf.name} but the code is version "
                          f"{wf.version!r}; not resumed (run it with the old code)",
                          markup=False, style="yellow", soft_wrap=True)
                stats.stale.append(sid)
                continue
            ids.append(sid)
            values.append(item.value)
        stats.start()
        if ids:
            with session_progress(len(ids), wf.name) as on_done:
                results = await engine.run_many(wf, values, ids=ids, tenant=tenant,
                                                on_done=on_done)
            for res in results:
                stats.add(res)
    stats.stop()
    return stats
