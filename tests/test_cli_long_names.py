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
    Res,
    cli,
    one_line_error,
    run_ok,
    subprocess_cli,
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
    ("run", LONG, "--input", "in.jsonl"),
    ("run", f"__main__:{LONG}", "--input", "in.jsonl"),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--model", f"openai:{LONG}"),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--model", f"openai:x?{LONG}=1"),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--model",
     f"openai:x?structured_output={LONG}"),
    ("run", "cli_flows:handle", "--input", "in.jsonl", "--id-field", LONG),
    ("signal", "nosuch", f"{LONG}\x1b"),
    ("cancel", "nosuch", "--by", f"{LONG}\x1b"),
    ("retry", " " * 9000),
    ("cost", "--by", LONG),
    ("purge", "--older-than", LONG),
    ("chaos", "cli_flows:handle", "--input", "in.jsonl", "--faults", LONG),
    ("chaos", "cli_flows:handle", "--input", "in.jsonl", "--faults", f"{LONG}=0.1"),
    # Names too long for the file system: one line, not an OSError's traceback
    ("sessions", "list", "--db", "a" * 300),
    ("db", "info", "--db", "a" * 300),
    ("run", "cli_flows:handle", "--input", "a" * 300),
    ("keygen", f"keys/{'a' * 300}"),
    ("sessions", "list", "--db", f"postgresql://u@{'h' * 64}/db"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(x[:12] for x in a))
def test_a_very_long_argument_is_echoed_cut_short(args: tuple[str, ...],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_ok()
    res = subprocess_cli(Path.cwd(), *args) if any(len(a) == 300 for a in args) else \
        cli(*args)
    res = Res(res.returncode, res.stdout, res.stderr) if not isinstance(res, Res) else res
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


@pytest.mark.parametrize(("args", "said"), [
    (("worker", "flows.py", "--until-idle"),
     "'flows.py' is a file path; name the module as Python imports it: 'flows' (run from "
     "the directory that contains 'flows.py')"),
    (("run", "./app/flows.py:desk", "--input", "in.jsonl"),
     "'./app/flows.py' in './app/flows.py:desk' is a file path; name the module as Python "
     "imports it: 'app.flows' (run from the directory that contains 'app')"),
    (("resume", "--import", "../x-y.py"), "is a file path"),
])
def test_a_module_named_as_a_file_says_how_to_name_it(args: tuple[str, ...],
                                                      said: str) -> None:
    run_ok()
    one_line_error(cli(*args), 2, said)
