"""A name the user typed (a session id, a status, a workflow, a namespace, a model, a
module) is echoed back cut short: a 10,000-character argument makes a one-line error of a
few hundred characters, not a 10 KB line."""

from __future__ import annotations

from pathlib import Path

import pytest

import convoy
from convoy.models import infer_model
from convoy.stores import SQLiteStore
from tests.clikit import (
    cli,
    one_line_error,
    run_ok,
    workdir,  # noqa: F401  (autouse fixture)
)

LONG = "x" * 10_000
LIMIT = 600  # characters on the error line, whatever the argument's length

COMMANDS = [
    ("sessions", "show", LONG),
    ("sessions", "list", "--status", LONG),
    ("sessions", "list", "--workflow", LONG),
    ("retry", LONG),
    ("retry", "--workflow", LONG),
    ("replay", LONG),
    ("cancel", LONG),
    ("signal", LONG, "go"),
    ("trace", LONG),
    ("state", "get", "ns", LONG),
    ("state", "get", LONG, "k"),
    ("state", "list", LONG),
    ("inbox", "list", "--status", LONG),
    ("inbox", "show", LONG),
    ("run", f"{LONG}:flow", "--input", "in.jsonl"),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--model", LONG),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--model", f"{LONG}:m"),
    ("worker", LONG, "--until-idle"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(x[:12] for x in a))
def test_a_very_long_argument_is_echoed_cut_short(args: tuple[str, ...]) -> None:
    run_ok()
    res = cli(*args)
    assert res.code in (0, 1, 2), (res.code, res.stdout[:300], res.stderr[:300])
    assert "Traceback" not in res.stdout + res.stderr
    assert LONG not in res.stdout + res.stderr
    for line in (res.stdout + res.stderr).splitlines():
        assert len(line) <= LIMIT, line[:300]


def test_the_messages_keep_the_start_of_the_name() -> None:
    run_ok()
    one_line_error(cli("sessions", "list", "--status", "x" * 200), 2,
                   f"--status '{'x' * 79}…' is not a session status")


async def test_the_python_api_cuts_the_names_it_echoes(tmp_path: Path) -> None:
    flow = convoy.load_workflow("cli_flows:shout")
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        await engine.run(flow, "a", session_id="s-1")
        for call in (lambda: engine.session(LONG), lambda: engine.cancel(LONG),
                     lambda: engine.signal(LONG, "go", 1), lambda: engine.tenant("acme")
                     .session(LONG)):
            with pytest.raises(convoy.UserError) as caught:
                await call()
            assert len(str(caught.value)) <= LIMIT, str(caught.value)[:300]
        with pytest.raises(convoy.UserError) as caught:
            await engine.sessions(status=LONG)  # type: ignore[arg-type]
        assert len(str(caught.value)) <= LIMIT
    for name in (LONG, f"{LONG}:m", f"sim:{LONG}.yaml"):
        with pytest.raises(convoy.UserError) as caught:
            infer_model(name)
        assert len(str(caught.value)) <= LIMIT, str(caught.value)[:300]
