"""Hostile input to the command line: whatever a user types, or a file holds, the answer is
one line (or the line is skipped), never a traceback, and nothing unreadable is stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import convoy
from convoy import UserError
from convoy.stores import store_from_url
from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    one_line_error,
    run_ok,
    session_ids,
    sessions,
    subprocess_env,
    summary,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)
from tests.conftest import STORE_KINDS, store_db

HUGE = "99999999999999999999"


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for where in store_db(request.param, tmp_path):
        yield str(where)


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1"])
def test_busy_timeout_must_be_finite_and_sane(value: str) -> None:
    run_ok()
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--busy-timeout", value), 2,
                   "--busy-timeout")
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", env={"CONVOY_BUSY_TIMEOUT": value}),
                   2, "CONVOY_BUSY_TIMEOUT must be")


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1"])
@pytest.mark.parametrize("command", [("run", FLOW, "-i", "in.jsonl"), ("resume",),
                                     ("worker", "cli_flows")])
def test_stop_grace_must_be_finite_and_sane(value: str, command: tuple[str, ...]) -> None:
    run_ok()
    one_line_error(cli(*command, "--stop-grace", value), 2, "--stop-grace must be")
    one_line_error(cli(*command, env={"CONVOY_STOP_GRACE": value}), 2,
                   "CONVOY_STOP_GRACE must be")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e308, -1.0])
def test_busy_timeout_of_the_python_api_is_a_user_error(value: float) -> None:
    with pytest.raises(UserError, match="busy_timeout"):
        store_from_url("x.db", busy_timeout=value)


@pytest.mark.parametrize("args", [
    ("sessions", "list", "--limit", HUGE), ("sessions", "list", "--offset", HUGE),
    ("sessions", "list", "--offset", "-1"), ("sessions", "list", "--limit", "0"),
    ("alerts", "--limit", HUGE), ("state", "history", "ns", "k", "--limit", HUGE),
    ("state", "set", "ns", "k", "1", "--expected-version", HUGE),
    ("cost", "--limit", HUGE), ("audit", "list", "--limit", HUGE),
])
def test_counts_beyond_a_64_bit_integer_are_usage_errors(db: str, args: tuple[str, ...]
                                                         ) -> None:
    run_ok("--db", db)
    bound = "at most 9,223,372,036,854,775,807" if args[-1] == HUGE else \
        f"at least {int(args[-1]) + 1}"  # (not the huge bound for a slip below the least)
    one_line_error(cli(*args, "--db", db), 2, f"{args[-2]} must be {bound}")


BAD_URLS = ["postgresql://[::1",
            "postgresql://x:sekret@h/db?foo=bar", "postgresql://%zz@h/db",
            "postgresql://u:%zz-sekret@h/db", "postgres://u:sekret@[::1/db",
            "postgresql://h/db?foo=bar&password=sekret"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_postgresql_url_is_one_line_without_its_password(url: str) -> None:
    with pytest.raises(UserError, match="PostgreSQL URL") as caught:
        store_from_url(url)
    assert "sekret" not in str(caught.value)
    for args in (("sessions", "list"), ("state", "set", "ns", "k", "1"),
                 ("run", FLOW, "-i", "in.jsonl"), ("erase", "someone")):
        res = cli(*args, "--db", url)
        one_line_error(res, 2, "PostgreSQL URL")
        assert "sekret" not in res.stderr


@pytest.mark.parametrize("url", [
    "postgresql://", "postgresql:///convoy",  # libpq's defaults; a local socket
    "postgresql:///?host=/var/run/postgresql&dbname=convoy",
    "postgresql://?dbname=convoy&host=/tmp", "postgresql:///?service=prod&schema=app"])
def test_every_url_libpq_takes_is_taken(url: str) -> None:
    """Parsed as libpq parses them (nothing is connected to here)."""
    from convoy.stores._postgres_conn import split_url

    conninfo, schema, shown = split_url(url)
    assert conninfo.startswith(url.partition("?")[0]) and "schema=" not in conninfo
    assert shown.startswith(url.partition("?")[0])
    assert schema == ("app" if "schema=app" in url else "convoy")


# -- lone surrogates: never stored, the line skipped ------------------------------------

SURROGATE = '"\\ud800"'  # JSON text: the escape of half a UTF-16 pair


def test_a_line_with_a_lone_surrogate_is_skipped_and_the_others_run() -> None:
    bad = '{"subject": "x", "body": ' + SURROGATE + '}'
    write_jsonl(Path("in.jsonl"), [GOOD[0], bad, GOOD[1]])
    res = cli("run", FLOW, "-i", "in.jsonl")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "2"
    assert "line 2: a lone surrogate \\ud800 cannot be stored" in " ".join(res.stderr.split())

    write_jsonl(Path("ids.jsonl"), [{"id": "a", **GOOD[2]},
                                    '{"id": ' + SURROGATE + ', "subject": "y", "body": "z"}'])
    res = cli("run", FLOW, "-i", "ids.jsonl", "--id-field", "id")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "1"
    assert len(session_ids()) == 3


def test_state_values_and_signal_payloads_with_a_lone_surrogate_are_refused(db: str) -> None:
    one_line_error(cli("state", "set", "ns", "k", SURROGATE, "--db", db), 2,
                   "a lone surrogate \\ud800 cannot be stored")
    assert cli("state", "get", "ns", "k", "--db", db).code != 0  # (nothing was written)
    run_ok("--db", db, lines=['"order 1"'], flow="cli_flows:approval")
    (sid,) = [r.id for r in sessions(db)]
    one_line_error(cli("signal", sid, "approve", "--payload", SURROGATE, "--db", db), 2,
                   "a lone surrogate \\ud800 cannot be stored")

    async def api() -> None:
        async with convoy.Engine(store_from_url(db)) as engine:
            with pytest.raises(UserError, match="lone surrogate"):
                await engine.signal(sid, "approve", "\ud800")
            with pytest.raises(UserError, match="lone surrogate"):
                await engine.state("ns").set("k", {"a": "\udfff"}, expected_version=0)
            with pytest.raises(UserError, match="lone surrogate"):
                await engine.state("ns", type=str).set("k", "\ud800", expected_version=0)
            with pytest.raises(UserError, match="lone surrogate"):
                await engine.run(convoy.load_workflow("cli_flows:shout"), "a\ud800")
            assert not (await engine.state("ns").get("k")).exists

    asyncio.run(api())


# -- names that would be obeyed by a terminal ---------------------------------------------

UNSHOWABLE = ["a\x1b[2Jb", "a\rb", "a\nb", "a\x00b", "a\u202eb", "a\x85b", "\u2066x"]


@pytest.mark.parametrize("sid", UNSHOWABLE)
def test_session_ids_with_control_characters_are_refused(sid: str) -> None:
    write_jsonl(Path("ids.jsonl"), [{"id": "fine", **GOOD[0]}, {"id": sid, **GOOD[1]}])
    res = cli("run", FLOW, "-i", "ids.jsonl", "--id-field", "id")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "1"
    assert "cannot be shown as it is" in " ".join(res.stderr.split())
    assert session_ids() == ["fine"]

    async def api() -> None:
        async with convoy.Engine(store_from_url("convoy.db")) as engine:
            flow = convoy.load_workflow(FLOW)
            for call in (engine.run(flow, GOOD[2], session_id=sid),
                         engine.tenant("acme").run(flow, GOOD[2], session_id=sid),
                         engine.run_many(flow, [GOOD[2]], ids=[sid])):
                with pytest.raises(UserError, match="session id"):
                    await call
            with pytest.raises(UserError, match="signal name"):
                await engine.signal("fine", sid, True)
            with pytest.raises(UserError, match="namespace"):
                engine.state(sid)
            with pytest.raises(UserError, match="state key"):
                await engine.state("ns").set(sid, 1, expected_version=0)

    asyncio.run(api())
    assert session_ids() == ["fine"]
    for args in (("signal", "fine", sid), ("state", "set", sid, "k", "1"),
                 ("state", "set", "ns", sid, "1")):
        res = cli(*args)
        one_line_error(res, 2, "cannot be shown as it is")
        assert sid not in res.stderr


def test_tables_show_control_characters_escaped() -> None:
    """Defence in depth: a session id stored before ids were checked (or written behind
    Convoy's back) is shown, not obeyed."""
    run_ok(lines=[GOOD[0]])
    tamper("UPDATE sessions SET id = ?, workflow = ?", "evil\x1b[2J\nrow", "wf\u202e")
    listed = cli("sessions", "list")
    assert listed.code == 0, listed.stderr
    assert "evil\\x1b[2J\\nrow" in listed.stdout and "\x1b" not in listed.stdout
    assert "wf\\u202e" in listed.stdout and "\u202e" not in listed.stdout
    shown = cli("sessions", "show", "evil\x1b[2J\nrow")
    assert shown.code == 0, shown.stderr
    assert "evil\\x1b[2J\\nrow" in shown.stdout and "\x1b" not in shown.stdout


# -- Ctrl-C at any moment: one line, never a traceback ------------------------------------

#: Shared libraries the command loads one after the other while it imports: SIGINT is sent
#: as each appears in the process's memory map (observable state, no clock), and once
#: right after the start.
MOMENTS = [None, "_pydantic_core", "_sqlite3", "_psycopg", "_decimal"]


def _interrupt_at(marker: str | None, args: tuple[str, ...], cwd: Path
                  ) -> tuple[int, str]:
    # SIGINT handled here (not ignored, as in a background job) is at its default in the
    # child, which then turns it into KeyboardInterrupt as an interactive one does.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "convoy", *args], cwd=cwd, env=subprocess_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before)
    maps = Path(f"/proc/{proc.pid}/maps")
    while marker is not None and proc.poll() is None:
        try:
            if marker in maps.read_text():
                break
        except OSError:  # exiting
            break
        os.sched_yield()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
@pytest.mark.parametrize("args", [("--version",), ("sessions", "list"),
                                  ("resume",)])
def test_ctrl_c_at_any_moment_is_one_line_never_a_traceback(
        args: tuple[str, ...], workdir: Path) -> None:  # noqa: F811
    run_ok()
    for marker in MOMENTS:
        code, stderr = _interrupt_at(marker, args, workdir)
        assert "Traceback" not in stderr, (marker, stderr)
        if code == 0:  # done before the signal landed
            continue
        # 130: the command said why it stopped. -SIGINT: Python ended the process by the
        # signal after the import was interrupted (a shell shows 130), or the signal landed
        # before Python could handle it (nothing runs then, nothing is said).
        assert code in (130, -signal.SIGINT), (marker, code, stderr)
        lines = stderr.strip().splitlines()
        if code == 130 or lines:
            assert lines and "interrupted" in lines[-1], (marker, code, stderr)


def test_ctrl_c_that_python_swallows_during_the_import_still_stops_the_command(
        tmp_path: Path) -> None:
    """A SIGINT that lands in a callback Python runs for itself (the import system's
    module-lock weakref, for one) is "ignored" by Python with a traceback on stderr, and the
    command ran on. Raised in such a callback here, as a Ctrl-C during the import does."""
    script = tmp_path / "convoy"  # the command line, as the installed script is
    script.write_text(
        "import weakref\n"
        "import convoy\n"
        "class Lock: pass\n"
        "def cb(_): raise KeyboardInterrupt\n"
        "lock = Lock()\n"
        "ref = weakref.ref(lock, cb)\n"
        "del lock\n"
        "for _ in range(1000): pass\n"
        "print('ran on')\n")
    res = subprocess.run([sys.executable, str(script)], env=subprocess_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == "interrupted", res.stderr
    assert "ran on" not in res.stdout
    assert res.returncode == -signal.SIGINT


#: Test-only ``sitecustomize`` for the child: a real SIGINT, sent by the child to itself as
#: it starts the Nth import of a module Python had not loaded once ``convoy`` began to
#: import (``$TRIP_AT``): the same Ctrl-C at the same moment every run, no clock.
_TRIP = """\
import os, signal, sys

class _Trip:
    seen, started = 0, False

    def find_spec(self, name, path=None, target=None):
        if name == "convoy":
            _Trip.started = True
        elif _Trip.started and name not in sys.modules:
            _Trip.seen += 1
            if _Trip.seen == int(os.environ["TRIP_AT"]):
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _Trip())
"""


@pytest.mark.parametrize("how", ["script", "python -m convoy"])
@pytest.mark.parametrize("nth", [1, 2, 3, 5, 20, 100])
def test_ctrl_c_in_the_first_imports_is_one_line(tmp_path: Path, how: str, nth: int
                                                 ) -> None:
    """New user's trial: a Ctrl-C in the first moments of a command (importing
    ``convoy._interrupt``, which sets the hook, or what it imports before setting it)
    printed Python's traceback. The hook is now set by ``convoy``'s first lines, before any
    import: the first imports of Convoy's own (1: ``convoy._interrupt``, 2 and 3: what it
    imports) and later ones are one line, and the command ends by SIGINT (130 in a shell)
    or exits 130."""
    (tmp_path / "trip").mkdir()
    (tmp_path / "trip" / "sitecustomize.py").write_text(_TRIP)
    script = tmp_path / "convoy"  # what pip writes for the console script
    script.write_text("import sys\nfrom convoy.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    env = subprocess_env()
    env.update(TRIP_AT=str(nth),
               PYTHONPATH=os.pathsep.join([str(tmp_path / "trip"), env["PYTHONPATH"]]))
    argv = [str(script)] if how == "script" else ["-m", "convoy"]
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # (not inherited
    try:  # ignored, as in a background job: the child turns it into KeyboardInterrupt)
        res = subprocess.run([sys.executable, *argv, "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    finally:
        signal.signal(signal.SIGINT, before)
    assert "Traceback" not in res.stderr, (how, nth, res.stderr)
    assert res.stderr.strip() == "interrupted", (how, nth, res.stderr)
    assert res.returncode in (130, -signal.SIGINT), (how, nth, res.returncode)
    assert "convoy" not in res.stdout  # (it never printed its version)


@pytest.mark.parametrize(("sid", "shown"), [("id\u200bzw", "id\\u200bzw"),
                                           ("a\u2028b", "a\\u2028b"),
                                           ("\ufeffbom", "\\ufeffbom")])
def test_characters_a_terminal_draws_as_nothing_are_shown_escaped(sid: str, shown: str
                                                                  ) -> None:
    from convoy._text import escaped

    assert escaped(sid) == shown
    assert escaped("👨\u200d👩\u200d👧 family") == "👨\u200d👩\u200d👧 family"  # joiners kept


def test_an_ipv6_address_is_bracketed_in_a_url() -> None:
    from convoy.cli._common import host_in_url

    assert host_in_url("::1") == "[::1]" and host_in_url("127.0.0.1") == "127.0.0.1"
    assert host_in_url("[::1]") == "[::1]"
