"""The ``convoy`` Typer application: global options and command registration."""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

import convoy
from convoy.cli._alerts import alerts
from convoy.cli._audit import audit_app
from convoy.cli._chaos import chaos
from convoy.cli._control import cancel, signal
from convoy.cli._cost import cost
from convoy.cli._db import db_app
from convoy.cli._flag_help import install as _flags_without_a_type
from convoy.cli._inbox import inbox_app
from convoy.cli._metrics import metrics_app
from convoy.cli._privacy import erase, export, keygen, purge
from convoy.cli._redteam import redteam
from convoy.cli._replay import replay
from convoy.cli._resume import resume
from convoy.cli._retry import retry
from convoy.cli._run import run
from convoy.cli._sessions import sessions_app
from convoy.cli._state import state_app
from convoy.cli._trace import trace
from convoy.cli._usage import install as _one_line_usage_errors
from convoy.cli._worker import worker
from convoy.stores import SCHEMA_VERSION

_one_line_usage_errors()
_flags_without_a_type()

app = typer.Typer(
    name="convoy",
    help="Convoy: run typed multi-agent LLM workflows durably.\n\n"
         "Sessions and their step journals live in a store (--db or $CONVOY_DB: a SQLite "
         "file, default ./convoy.db, or a postgresql:// URL): a crashed run resumes where "
         "it stopped.\n\n"
         "Example: `convoy run myapp.flows:handle_ticket --input tickets.jsonl`\n\n"
         "Exit codes: 0 done; 1 the command could not complete (a store error: one line, "
         "sessions stay unfinished), or what it checks did not hold (`run --strict` found "
         "an input that did not complete, a replay diverged, `audit verify` found "
         "tampering, a `state set` lost its compare-and-set, a chaos or red-team check "
         "failed); 2 usage errors (bad options, workflow, input file or --db path; a "
         "session, state key or subject the store does not have); "
         "130 interrupted (Ctrl-C); 141 its output was closed before it was all written "
         "(a pipe into head); 143 stopped by SIGTERM (run, resume, retry, worker or "
         "metrics serve; chaos, signal, audit check or audit verify while they read their "
         "input).",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"convoy {convoy.__version__} (store schema {SCHEMA_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True,
        help="Print the version (and the store schema it writes) and exit.")] = False,
) -> None:
    """Convoy: run typed multi-agent LLM workflows durably."""
    _escape_what_cannot_be_printed()


def _escape_what_cannot_be_printed() -> None:
    """Standard output (and error) write what their encoding cannot carry as an escape
    instead of stopping a command with a traceback halfway through its output: a lone
    surrogate an earlier release stored in a value shows as ``\\ud800`` (valid JSON, in
    a JSON string), a character an ASCII terminal lacks as ``\\u4e2d``. (Python's
    standard error does so already; its standard output refuses.)"""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


app.command("run")(run)
app.command("resume")(resume)
app.command("retry")(retry)
app.command("worker")(worker)
# (extra words: a value where --payload goes, said so by the command, not by Click)
app.command("signal", context_settings={"allow_extra_args": True})(signal)
app.command("cancel")(cancel)
app.command("replay")(replay)
app.add_typer(sessions_app)
app.add_typer(state_app)
app.add_typer(inbox_app)
app.add_typer(audit_app)
app.command("chaos")(chaos)
app.command("cost")(cost)
app.command("alerts")(alerts)
app.add_typer(db_app)
app.command("redteam")(redteam)
app.command("trace")(trace)
app.add_typer(metrics_app)
app.command("erase")(erase)
app.command("export")(export)
app.command("purge")(purge)
app.command("keygen")(keygen)
