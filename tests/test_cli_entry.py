"""Entry points (``python -m convoy``, shell completion) and the documented chaos command,
which must really SIGKILL the engine mid-phase."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import convoy
from convoy.cli import app
from convoy.stores import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(convoy.__file__).resolve().parents[1]


def python_m(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1"}
    env.pop("CONVOY_DB", None)
    return subprocess.run([sys.executable, "-m", "convoy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_command_line_needs_no_click_but_the_one_typer_bundles(tmp_path: Path) -> None:
    """Typer (0.29 on) bundles its Click and installs no other: a fresh install of the
    declared dependencies has no ``click`` module. The command line runs without one, a
    usage error included."""
    run = ("import runpy, sys; sys.modules['click'] = None; sys.argv = ['convoy', *sys.argv[1:]]; "
           "runpy.run_module('convoy', run_name='__main__', alter_sys=True)")
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1"}
    for args, code in ((["--help"], 0), (["sessions", "list", "--limit"], 2)):
        res = subprocess.run([sys.executable, "-c", run, *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == code, (args, res.stderr)
        assert "Traceback" not in res.stderr and "click" not in res.stderr, res.stderr


def test_python_dash_m_convoy(tmp_path: Path) -> None:
    res = python_m("--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == \
        f"convoy {convoy.__version__} (store schema {SCHEMA_VERSION})"
    res = python_m("sessions", "list", cwd=tmp_path)
    assert res.returncode == 2 and "no Convoy store at 'convoy.db'" in res.stderr


def test_an_argument_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 on the command line (Python keeps them as lone surrogates)
    stopped commands with a traceback deep inside them; refused at the door, one line."""
    bad = os.fsdecode(b"\xff")
    for args in (("inbox", "comment", "r0:0", bad, "--by", "bob"),
                 ("inbox", "comment", "r0:0", "x", "--by", bad), ("export", bad),
                 ("trace", bad), ("signal", "s", "go", "-p", f'"{bad}"')):
        res = python_m(*args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        [line] = res.stderr.splitlines()
        assert re.fullmatch(r"error: argument \d \('.*'\) is not UTF-8 text: it holds the byte "
                            r"0xff; Convoy reads its arguments as UTF-8 \(a file name too: "
                            r"rename the file\)", line), line
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_shell_completion(tmp_path: Path) -> None:
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).stdout
    # What the installed bash completion script asks the program (the shell itself is not
    # detected here: that depends on which processes started the tests).
    env = {**os.environ, "PYTHONPATH": str(SRC), "_CONVOY_COMPLETE": "complete_bash",
           "COMP_WORDS": "convoy ses", "COMP_CWORD": "1"}
    res = subprocess.run([sys.executable, "-m", "convoy"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "sessions" in res.stdout.split()


def readme_chaos_commands() -> list[list[str]]:
    """The chaos commands the docs show (docs/how-to/chaos.md): Convoy's protections, then
    the example application's interceptors."""
    text = (ROOT / "docs" / "how-to" / "chaos.md").read_text()
    return [shlex.split(line)[1:] for line in re.findall(r"^ *convoy chaos .*$", text, re.M)]


def test_the_docs_show_two_chaos_commands() -> None:
    plain, named = readme_chaos_commands()
    assert "--interceptors" not in plain and "--interceptors" in named


@pytest.mark.parametrize("which", [0, 1], ids=["protections", "interceptors"])
def test_the_readme_chaos_command_kills_the_engine(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   which: int) -> None:
    args = readme_chaos_commands()[which]
    assert "--kill-after-sessions" in args or "--kill-after" in args
    monkeypatch.chdir(ROOT)  # the example workflow imports from the repository root
    monkeypatch.syspath_prepend(str(ROOT))
    out = tmp_path / "journal.json"
    res = CliRunner().invoke(app, [*args, "--db-dir", str(tmp_path / "chaos"), "--journal",
                                   str(out)])
    assert res.exit_code == 0, res.stdout + res.stderr
    journal = json.loads(out.read_text())
    (kill,) = [r["output"] for r in journal["run"]
               if r["activity"]["name"] == "sigkill-engine"]
    assert kill["killed"] is True and kill["unfinished_at_kill"] > 0, kill
    (resumed,) = [r["output"] for r in journal["run"]
                  if r["activity"]["name"] == "resume-engine"]
    assert resumed["resumed"] == kill["unfinished_at_kill"]
    assert resumed["unfinished_after"] == 0
    assert "SIGKILLed after" in res.stdout
    if "--interceptors" in args:
        assert journal["convoy"]["interceptors"] == args[args.index("--interceptors") + 1]
        assert journal["convoy"]["protections"] is False


def test_kill_after_sessions_must_leave_sessions_to_kill(tmp_path: Path) -> None:
    from convoy.chaos import run_experiment

    @convoy.workflow(name="entry_tests:echo")
    async def echo(ctx: convoy.Context, text: str) -> str:
        return text

    with pytest.raises(convoy.UserError, match="kill_after_sessions must be between 1 and 1"):
        run_experiment(echo, ["a", "b"], db_dir=tmp_path, kill_after_sessions=2)
