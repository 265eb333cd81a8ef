"""A progress bar on stderr (only when stderr is a terminal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from convoy import SessionResult
from convoy.cli._common import err


@contextmanager
def session_progress(total: int, description: str
                     ) -> Iterator[Callable[[SessionResult[Any]], None]]:
    """Yield an ``on_done`` callback that advances the bar."""
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("[red]{task.fields[failed]} not completed"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                   disable=not err.is_terminal or total == 0)
    with bar:
        task = bar.add_task(description, total=total, failed=0)
        failed = 0

        def on_done(res: SessionResult[Any]) -> None:
            nonlocal failed
            failed += not res.ok
            bar.update(task, advance=1, failed=failed)

        yield on_done
