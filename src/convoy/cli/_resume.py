"""``convoy resume``: finish every pending or running session in a store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from convoy import Engine, UserError
from convoy.cli._common import (
    DEFAULT_DB,
    ConcurrencyOption,
    DbOption,
    ModelOption,
    build_engine,
    err,
    out,
    require_store,
    usage_errors,
    workflows_from_cwd,
)
from convoy.cli._progress import session_progress
from convoy.cli._render import print_failures, summary_table
from convoy.cli._stats import RunStats


def resume(
    concurrency: ConcurrencyOption = 64,
    model: ModelOption = None,
    db: DbOption = Path(DEFAULT_DB),
) -> None:
    """Finish every pending or running session in the store (after a crash or Ctrl-C).

    Steps already in a session's journal are replayed, not re-run: no model or tool is
    called twice. Workflows are imported by the name they were started with, so run this
    from the same directory (or PYTHONPATH) as 'convoy run'.

    Example: `convoy resume --db convoy.db --concurrency 32`
    """
    workflows_from_cwd()
    require_store(db)
    engine = build_engine(db, concurrency=concurrency, model=model)
    try:
        with usage_errors():
            stats = asyncio.run(_resume(engine))
    except KeyboardInterrupt:
        err.print("interrupted: run 'convoy resume' again to finish", markup=False)
        raise typer.Exit(130) from None
    if stats is None:
        out.print(f"nothing to resume: no pending or running sessions in {db}", markup=False)
        return
    out.print(summary_table(f"convoy resume · {db}", stats))
    print_failures(out, stats)


async def _resume(engine: Engine) -> RunStats | None:
    async with engine:
        rows = engine.store.unfinished()
        if not rows:
            return None
        # Import every workflow first: a missing one must not stop the resume half-way.
        for name in sorted({r.workflow for r in rows}):
            try:
                engine.workflow_named(name)
            except UserError as e:
                n = sum(r.workflow == name for r in rows)
                raise UserError(f"cannot resume {n} session(s) of workflow {name!r}: {e}"
                                ) from None
        stats = RunStats()
        with session_progress(len(rows), "resuming") as on_done:
            results = await engine.resume(on_done=on_done)
        for res in results:
            stats.add(res)
    stats.stop()
    return stats
