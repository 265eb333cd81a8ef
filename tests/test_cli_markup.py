"""What the store holds is data, never markup: a shared-state value, key or namespace, an
audit entry's target, a cancel's ``--by`` name, an error message, a workflow name, an inbox
task's text, an alert's subject (from a model, a tool or a customer) is shown by every
command that reads it literally: a ``[/]`` in it is no traceback, a ``[bold red]`` or a
``[link=...]`` is not obeyed, an ESC is shown as ``\\x1b``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy.audit import AuditInterceptor
from convoy.cli._common import err, out
from convoy.stores import NewAlert, SQLiteStore
from tests.clikit import Res, cli, session_ids, workdir, write_jsonl  # noqa: F401 (fixture)

#: Rich markup that does not parse (a closing tag with nothing to close, a lone bracket),
#: markup that does (a style, a terminal hyperlink) and an emoji code.
PIECES = ["[/]", "[bold red]X[/bold red]", "[link=https://evil.example]x[/link]",
          ":warning:", "[/bold]", "["]
#: A name (a namespace, a key, a session id, a workflow name): names hold no control
#: characters (refused where they enter), any markup they like.
NAME = "n" + "".join(PIECES)
#: A value (a state value, an error message, a task's question): an ESC sequence too.
VALUE = "\x1b[31m" + "".join(PIECES)
#: The start of VALUE as the commands show it (a table cuts a long value short; a JSON
#: value writes its ESC as JSON does).
VALUE_SHOWN = re.compile(r"\\(x1b|u001b)\[31m\[/\]\[bold red\]X\[/bold red\]")

model = convoy.SimModel({"clerk": [{"text": VALUE}]})
clerk = convoy.Agent(name="clerk", model=model)


@convoy.workflow(name=NAME)
async def hostile(ctx: convoy.Context, text: str) -> str:
    await ctx.run(clerk, text)
    key = NAME if ctx.session_id == NAME else f"{NAME}2"
    await ctx.state(NAME).set(key, text, expected_version=None)
    raise RuntimeError(text)


@convoy.workflow(name="markup.waits")
async def waits(ctx: convoy.Context, text: str) -> str:
    return await ctx.wait_for(NAME, str)


@pytest.fixture(autouse=True)
def wide() -> Iterator[None]:
    """Consoles wide enough that no cell wraps (the literal text is on one line)."""
    widths = out.width, err.width
    out.width = err.width = 1000
    yield
    out.width, err.width = widths


def flat(text: str) -> str:
    return " ".join(text.split())


def shown_literally(res: Res, *, name: bool = True, value: bool = True) -> None:
    """``res`` exited 0 without a traceback and shows NAME (``name``) and the start of
    VALUE with its ESC escaped (``value``) as they are, and no ESC of its own."""
    text = res.stdout + res.stderr
    assert res.code == 0, text
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert "\x1b" not in text, text  # (not a terminal: any ESC comes from the data)
    if name:
        assert NAME in flat(text), text
    if value:
        assert VALUE_SHOWN.search(flat(text)), text


@pytest.fixture
def store() -> dict[str, str]:
    """A store holding the hostile text in every field the commands print; the ids of its
    sessions."""
    import hitl_flows

    async def fill() -> None:
        async with convoy.Engine("convoy.db", models={"sim:": model},
                                 interceptors=[AuditInterceptor()]) as eng:
            failed = await eng.run(hostile, VALUE, session_id=NAME)
            assert failed.status == "failed", failed
            assert (await eng.run(waits, "x", session_id="w1")).status == "waiting"
            assert (await eng.run(hitl_flows.refund, VALUE, session_id="h1")).status == \
                "waiting"
        alerts = SQLiteStore(Path("convoy.db"))
        await alerts.open()
        try:
            await alerts.alert_open(NewAlert(
                tenant="default", scope="agent", subject=NAME, metric=NAME, value=3.0,
                mean=0.5, deviation=0.05, threshold=0.65, opened=1_800_000_000.0), [])
        finally:
            await alerts.aclose()

    asyncio.run(fill())
    assert cli("cancel", "w1", "--by", NAME).code == 0
    assert cli("state", "set", NAME, "other", json.dumps(VALUE)).code == 0
    return {"failed": NAME, "cancelled": "w1", "task": "h1:0"}


def test_state_commands_show_namespaces_keys_and_values_literally(
        store: dict[str, str]) -> None:
    shown_literally(cli("state", "list"), value=False)
    shown_literally(cli("state", "list", NAME))
    shown_literally(cli("state", "get", NAME, NAME))
    shown_literally(cli("state", "history", NAME, NAME))
    shown_literally(cli("state", "history", NAME, "other"))


def test_audit_list_shows_targets_literally(store: dict[str, str]) -> None:
    shown_literally(cli("audit", "list"), value=False)
    shown_literally(cli("audit", "list", "--session", NAME), value=False)


def test_sessions_and_replay_show_ids_names_errors_and_cancellers_literally(
        store: dict[str, str]) -> None:
    shown_literally(cli("sessions", "list"), value=False)
    shown_literally(cli("sessions", "list", "--status", "failed"), value=False)
    shown_literally(cli("sessions", "show", NAME))
    shown_literally(cli("sessions", "show", "w1"), value=False)
    replayed = cli("replay", NAME, "--import", __name__)
    shown_literally(Res(0, replayed.stdout, replayed.stderr), value=False)
    assert replayed.code in (0, 1)
    cancelled = cli("replay", "w1", "--import", __name__)  # (the same result, up to its end)
    shown_literally(Res(0, cancelled.stdout, cancelled.stderr), name=False, value=False)
    assert cancelled.code == 0, cancelled
    shown = cli("sessions", "show", "w1")
    assert "cancelled by n[/][bold red]X[/bold red]" in " ".join(shown.stdout.split()), shown
    shown_literally(cli("retry", NAME, "--dry-run"))
    shown_literally(cli("cost", "--by", "session"), value=False)


def test_inbox_alerts_and_trace_show_their_text_literally(store: dict[str, str]) -> None:
    shown_literally(cli("inbox", "list"), name=False)
    shown_literally(cli("inbox", "show", "h1:0"), name=False)
    shown_literally(cli("alerts"), value=False)
    write_jsonl(Path("in.jsonl"), [json.dumps(VALUE)])
    ran = cli("run", f"{__name__}:hostile", "-i", "in.jsonl", "--trace", "store")
    shown_literally(ran)
    (traced,) = set(session_ids()) - {NAME, "w1", "h1"}
    shown_literally(cli("trace", traced))
    shown_literally(cli("sessions", "show", traced))


def test_a_terminal_gets_no_style_nor_hyperlink_from_the_data(
        store: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the command's own colours are sent, none the data asks for: no
    hyperlink (OSC 8), no bold red around the X."""
    monkeypatch.setattr(out, "_force_terminal", True)
    for args in (("state", "list", NAME), ("state", "history", NAME, NAME),
                 ("sessions", "show", NAME), ("audit", "list")):
        res = cli(*args)
        assert res.code == 0, res.stdout + res.stderr
        assert "\x1b]8;" not in res.stdout and "evil.example]x[/link]" in res.stdout, args
        plain = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout)
        assert "[bold red]X[/bold red]" in flat(plain), (args, res.stdout)


def test_the_progress_bar_of_a_run_on_a_terminal_shows_the_workflow_name_literally(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(err, "_force_terminal", True)
    write_jsonl(Path("in.jsonl"), [json.dumps("a")])
    res = cli("run", f"{__name__}:hostile", "-i", "in.jsonl")
    assert res.code == 0, res.stdout + res.stderr
    assert "\x1b]8;" not in res.stderr
    assert NAME in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", res.stderr), res.stderr


def test_audit_check_names_the_step_of_an_entry_only_if_it_has_one(
        store: dict[str, str], tmp_path: Path) -> None:
    """An entry without a step (the start of a session) is checked as ``(session ID)``,
    not ``step None``; one with a step names it."""
    entries = [json.loads(line) for line in
               cli("audit", "list", "--json").stdout.splitlines()]
    no_step = next(e["index"] for e in entries if e.get("step_key") is None)
    a_step = next(e for e in entries if e.get("step_key") is not None)
    for index in (no_step, a_step["index"]):
        proof = cli("audit", "prove", str(index), "--key", str(tmp_path / "audit.key"))
        assert proof.code == 0, proof.stderr
        (tmp_path / "proof.json").write_text(proof.stdout)
        res = cli("audit", "check", str(tmp_path / "proof.json"))
        assert res.code == 0, res.stderr
        assert "None" not in res.stdout and "Traceback" not in res.stdout, res.stdout
        if index == no_step:
            assert "step" not in res.stdout, res.stdout
        else:
            assert f", step {a_step['step_key']})" in res.stdout, res.stdout
