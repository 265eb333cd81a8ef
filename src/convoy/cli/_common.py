"""What every command shares: consoles, the ``--db`` option, usage errors, model specs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from convoy import Engine, JournalError, Model, UserError, infer_model

#: Where the session store lives unless ``--db`` or ``CONVOY_DB`` says otherwise.
DEFAULT_DB = "convoy.db"
#: Exit code of a usage error (the same code click uses for bad options).
USAGE_ERROR = 2

DbOption = Annotated[Path, typer.Option(
    "--db", envvar="CONVOY_DB", show_envvar=True, dir_okay=False,
    help="SQLite session store.")]
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="SPEC",
    help="Run every agent on this model instead of its own, e.g. 'sim:' or "
         "'openai:gpt-4o-mini'.")]
ConcurrencyOption = Annotated[int, typer.Option(
    "--concurrency", "-c", min=1, help="Sessions running at once.")]


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped or captured: do not squeeze tables into 80 columns
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print a one-line error to stderr and exit (no traceback)."""
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn Convoy's misuse errors into a one-line message and exit code 2."""
    try:
        yield
    except (UserError, JournalError) as e:
        fail(str(e))


def workflows_from_cwd() -> None:
    """Let ``MODULE:WORKFLOW`` references resolve from the current directory, as with
    ``python -m`` (the ``convoy`` console script does not put it on ``sys.path``)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def build_engine(db: Path, *, concurrency: int = 1000, model: str | None = None) -> Engine:
    """An engine on ``db``; ``--model`` (if given) overrides every agent's model.

    The model is built here, not lazily by the engine, so a typo fails before any session
    starts; it is registered under its spec so the engine closes it. Bad specs exit 2.
    """
    models: dict[str, Model] = {}
    if model is not None:
        try:
            models[model] = infer_model(model)
        except UserError as e:
            fail(f"--model: {e}")
        except ImportError as e:
            fail(f"--model {model!r} needs a package that is not installed: {e}")
    if db.is_dir():
        fail(f"--db {str(db)!r} is a directory, not a Convoy store file")
    with usage_errors():
        return Engine(db, models=models, model=model, concurrency=concurrency)


def require_store(db: Path) -> None:
    """Commands that read sessions must not silently create an empty store."""
    if not db.exists():
        fail(f"no Convoy store at {str(db)!r}; pass --db PATH or set CONVOY_DB "
             "('convoy run' creates it)")


@contextmanager
def open_engine_sync(db: Path) -> Iterator[Engine]:
    """An engine with its store open, for read-only commands that never await."""
    require_store(db)
    engine = build_engine(db)
    with usage_errors():
        engine.open()
    try:
        yield engine
    finally:
        engine.store.close()
