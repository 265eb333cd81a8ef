"""The tables a support desk reads most, on an 80-column terminal and narrower: ``convoy
sessions show``'s steps, ``convoy cost``, ``convoy inbox list``. An id the user copies into
another command (a session, a task) stays whole on one line, no cell is cut short with an
ellipsis, and no line is wider than the terminal (new user's trial: at 80 columns a step's
status read ``complet…`` beside a result eight cells wide, cost's session ids and inbox
task ids were folded into pieces, inbox dates read ``2026-12-…``; at 60 columns cost's
first column had no width at all)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from rich.cells import cell_len

import convoy
from tests.clikit import (
    GOOD,
    ids_of,
    run_ok,
    subprocess_env,
    workdir,  # noqa: F401  (autouse fixture)
)

WIDTHS = ("80", "60")


def convoy_at(columns: str, *args: str, notes: int = 0) -> list[str]:
    """The lines ``convoy ARGS`` prints on a terminal ``columns`` wide (no line wider, but
    the last ``notes``: a line of text, which the terminal wraps itself)."""
    r = subprocess.run([sys.executable, "-m", "convoy", *args],
                       env={**subprocess_env(), "COLUMNS": columns}, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(map(cell_len, lines[:len(lines) - notes])) <= int(columns), (columns, r.stdout)
    return lines


def line_with(lines: list[str], *texts: str) -> str:
    found = [line for line in lines if all(t in line for t in texts)]
    assert found, (texts, "\n".join(lines))
    return found[0]


@pytest.mark.parametrize("columns", WIDTHS)
def test_sessions_show_names_each_step_whole(columns: str) -> None:
    run_ok()
    sid = ids_of(GOOD)[0]
    lines = convoy_at(columns, "sessions", "show", sid)
    steps = [("0/0", "model", "triage"), ("0/1", "tool", "lookup_account"),
             ("0/2", "model", "triage")]
    for key, kind, target in steps:  # (a table's row, or a list's first line)
        line = line_with(lines, key, f" {kind} ", target, "completed")
        assert "…" not in line, "\n".join(lines)
    # what the model called is readable: its name on one line, not a column of pieces
    assert line_with(lines, "→ lookup_account(")


def test_sessions_show_on_a_wide_terminal_keeps_the_tokens_and_cost_columns() -> None:
    run_ok()
    lines = convoy_at("200", "sessions", "show", ids_of(GOOD)[0])
    header = line_with(lines, "key", "kind", "target", "status")
    assert "tokens in / out" in header and "cost" in header and "result" in header
    assert line_with(lines, "0/0", "120 / 30", "lookup_account(")


@pytest.mark.parametrize("columns", WIDTHS)
def test_cost_by_session_keeps_each_id_whole(columns: str) -> None:
    run_ok()
    lines = convoy_at(columns, "cost", "--by", "session")
    for sid in ids_of(GOOD):
        assert "…" not in line_with(lines, sid, "$"), "\n".join(lines)
    assert line_with(lines, "total", "$")


def test_cost_on_a_wide_terminal_keeps_every_column() -> None:
    run_ok()
    lines = convoy_at("200", "cost", "--by", "session")
    header = line_with(lines, "session", "calls")
    for name in ("tokens in", "tokens out", "cost", "cached", "share"):
        assert name in header, header


LONG_SESSION = "refund-2f6c3d1e9a8b4c7d8e9f0a1b2c3d4e5f"


def _asked(sids: list[str]) -> None:
    import hitl_flows

    async def main() -> None:
        async with convoy.Engine("convoy.db") as eng:
            for sid in sids:
                res = await eng.tenant("acme").run(hitl_flows.refund, "c-7", session_id=sid)
                assert res.status == "waiting", res

    asyncio.run(main())


@pytest.mark.parametrize("columns", ("100", *WIDTHS))
def test_inbox_list_keeps_task_ids_and_times_whole(columns: str) -> None:
    _asked([LONG_SESSION, "r-1"])
    lines = convoy_at(columns, "inbox", "list", "--tenant", "acme")
    text = "\n".join(lines)
    assert "…" not in text, text
    for task in (f"{LONG_SESSION}:0", "r-1:0"):
        assert line_with(lines, task)
    assert "billing" in text and "Refund customer c-7?" in " ".join(text.split())


def test_inbox_list_on_a_wide_terminal_is_the_table_it_was() -> None:
    _asked(["r-1"])
    lines = convoy_at("200", "inbox", "list", "--tenant", "acme")
    header = line_with(lines, "task", "kind", "queue", "question")
    assert "assignees" in header and "created" in header and "deadline" in header
    assert line_with(lines, "r-1:0", "question", "billing", "Refund customer c-7?",
                     "anyone")


@pytest.mark.parametrize("columns", ("80", "60"))
def test_trace_details_are_folded_never_cut_off(columns: str) -> None:
    """A span's details (its step key, tokens, cost) fold within the terminal: at 80
    columns the waterfall was drawn a few columns wider and the terminal's edge cut them
    off (``key 0/0, 2`` for ``27+10 tokens``, ``$0`` for ``$0.00001``)."""
    import json

    from convoy.cli._trace import detail

    run_ok()
    sid = ids_of(GOOD)[0]
    spans = json.loads(subprocess.run(
        [sys.executable, "-m", "convoy", "trace", sid, "--json"], env=subprocess_env(),
        capture_output=True, text=True, timeout=120, check=True).stdout)
    words = " ".join(convoy_at(columns, "trace", sid, notes=1)[:-1]).split()
    for span in spans:
        for word in detail(span).split():
            assert word in words, (word, detail(span), columns)


@pytest.mark.parametrize("columns", WIDTHS)
def test_sessions_list_of_waiting_sessions_stays_readable(columns: str) -> None:
    """What a waiting session waits for (a person's task, whose id ``inbox answer`` takes)
    is readable at 80 columns: the table gave way to a list only when its one wrapping
    column could not get 8 cells, so with three (tenant, workflow, waits for) each got
    three, and a task id was folded into a column of pieces."""
    _asked([LONG_SESSION, "r-1"])
    lines = convoy_at(columns, "sessions", "list", "--all-tenants")
    assert line_with(lines, LONG_SESSION)
    words = {w.strip("()") for w in " ".join(lines).split()}
    assert f"{LONG_SESSION}:0" in words and "r-1:0" in words, "\n".join(lines)


@pytest.mark.parametrize("columns", (80, 100))
def test_chaos_phases_keep_their_figures_whole(columns: int) -> None:
    """The phases of ``convoy chaos`` at 80 columns cut its figures short: ``$0.0007…``
    for a session's maximum cost (a new user's trial). The headers wrap; no value is cut.
    (At 60 columns its eight columns cannot all hold their figures: they fold.)"""
    import io

    from rich.console import Console

    from convoy.cli._chaos import phases_table

    state = {"steady_state_met": True}
    phase = {"sessions": 222, "completed": 222, "success_rate": 1.0, "p50_s": 1.05,
             "p99_s": 5.75, "max_cost": 0.000729}
    result = {"convoy": {"phases": {"before": phase, "during": phase, "after": phase}},
              "steady_states": {"before": state, "during": [state], "after": state}}
    console = Console(file=io.StringIO(), width=columns, color_system=None)
    console.print(phases_table(result, width=columns))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text, text
    assert max(map(cell_len, text.splitlines())) <= columns, text
    row = line_with(text.splitlines(), "during")
    for value in ("222", "100.00%", "1.05 s", "5.75 s", "$0.000729", "yes"):
        assert value in row, (value, text)


@pytest.mark.parametrize("columns", WIDTHS)
def test_retry_dry_run_keeps_each_error_readable(columns: str) -> None:
    """``convoy retry --dry-run`` at 80 columns gave the error column one cell: each error
    went down the screen a letter a line (a new user's trial). Where the table cannot give
    it room, a list says each session's plan on a line and its error under it."""
    run_ok(lines=[{"subject": "explode", "body": "x"}])
    lines = convoy_at(columns, "retry", "--status", "failed", "--dry-run", notes=1)
    assert "RuntimeError: the ticket asked to explode" in " ".join(" ".join(lines).split())
    sid = ids_of([{"subject": "explode", "body": "x"}])[0]
    assert line_with(lines, sid, f"{sid}.r1")
