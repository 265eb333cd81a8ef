"""Progress on stderr: a bar on a terminal, plain lines when output is piped or logged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
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

#: Seconds between two plain progress lines (a run that ends sooner prints none).
PLAIN_EVERY_S = 5.0


@contextmanager
def session_progress(total: int, description: str, *, console: Console | None = None,
                     every_s: float = PLAIN_EVERY_S,
                     clock: Callable[[], float] = time.monotonic,
                     ) -> Iterator[Callable[[SessionResult[Any]], None]]:
    """Yield an ``on_done`` callback that advances the progress.

    On a terminal this is a bar. Otherwise (a pipe, a CI log) it prints a line such as
    ``flows:handle: 120/222 done, 3 not completed`` at most every ``every_s`` seconds, and
    a last one when the run ends if it printed any.
    """
    console = console if console is not None else err
    if not console.is_terminal:
        with _plain(total, description, console, every_s, clock) as on_done:
            yield on_done
        return
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                   MofNCompleteColumn(), TextColumn("[red]{task.fields[failed]} not completed"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                   disable=total == 0)
    with bar:
        task = bar.add_task(description, total=total, failed=0)
        failed = 0

        def on_done(res: SessionResult[Any]) -> None:
            nonlocal failed
            failed += not res.ok
            bar.update(task, advance=1, failed=failed)

        yield on_done


@contextmanager
def _plain(total: int, description: str, console: Console, every_s: float,
           clock: Callable[[], float]) -> Iterator[Callable[[SessionResult[Any]], None]]:
    done = failed = printed = 0
    last = clock()

    def say() -> None:
        nonlocal printed, last
        console.print(f"{description}: {done:,}/{total:,} done, {failed:,} not completed",
                      markup=False, highlight=False, soft_wrap=True)
        printed, last = done, clock()

    def on_done(res: SessionResult[Any]) -> None:
        nonlocal done, failed
        done += 1
        failed += not res.ok
        if clock() - last >= every_s or (done >= total and printed):
            say()

    yield on_done
    if printed and printed != done:
        say()
