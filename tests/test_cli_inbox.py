"""``convoy inbox``: list, show, answer (a form from the answer type), approve, reject and
comment human tasks from the terminal, one tenant at a time."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import pty
import select
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import (
    UUID4,
    AliasChoices,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
)
from typer.testing import CliRunner

import convoy
from convoy.cli import app

from .clikit import (  # noqa: F401 - the fixture
    LIMIT,
    cli,
    one_line_error,
    subprocess_cli,
    subprocess_env,
    workdir,
)


def start(flow: str, value: str, sid: str, tenant: str = "default") -> None:
    import hitl_flows

    async def main() -> None:
        async with convoy.Engine("convoy.db") as eng:
            res = await eng.tenant(tenant).run(getattr(hitl_flows, flow), value,
                                               session_id=sid)
            assert res.status == "waiting", res

    asyncio.run(main())


def finish(sid: str) -> Any:
    async def main() -> Any:
        async with convoy.Engine("convoy.db") as eng:
            await eng.resume()
            return await eng.result(sid)

    return asyncio.run(main())


def test_list_show_and_answer_with_options() -> None:
    start("refund", "c-7", "r1", tenant="acme")
    res = cli("inbox", "list", "--tenant", "acme")
    assert res.code == 0 and "r1:0" in res.stdout and "billing" in res.stdout
    assert "Refund customer c-7?" in res.stdout
    res = cli("inbox", "list")  # the default tenant has none
    assert res.code == 0 and "no open tasks" in res.stdout and "--tenant" in res.stdout
    shown = cli("inbox", "show", "r1:0", "-t", "acme")
    assert shown.code == 0, shown.stderr
    for text in ('"customer": "c-7"', "amount: integer, at least 0, required (cents)",
                 'one of "goodwill", "error"',
                 "note: string or empty", "convoy inbox answer r1:0"):
        assert text in shown.stdout, (text, shown.stdout)
    data = json.loads(cli("inbox", "show", "r1:0", "-t", "acme", "--json").stdout)
    assert data["kind"] == "question" and data["actions"] == ["answer"]
    bad = cli("inbox", "answer", "r1:0", "-t", "acme", "--by", "ann", "--set", "approve=yes",
              "--set", "amount=-5", "--set", "reason=error")
    assert bad.code == 2 and "amount" in bad.stderr and "Traceback" not in bad.stderr
    ok = cli("inbox", "answer", "r1:0", "-t", "acme", "--by", "ann", "--set", "approve=yes",
             "--set", "amount=500", "--set", "reason=error", "-m", "sorry")
    assert ok.code == 0 and "answered task r1:0 (by ann)" in ok.stdout, ok.stderr
    again = cli("inbox", "answer", "r1:0", "-t", "acme", "--by", "bob", "--value", "{}")
    assert again.code == 2 and "already answered by 'ann'" in again.stderr
    out = finish("r1")
    assert out.output == {"approve": True, "amount": 500, "reason": "error", "note": None,
                          "by": "ann", "comment": "sorry"}
    listed = json.loads(cli("inbox", "list", "-t", "acme", "--status", "all",
                            "--json").stdout)
    assert [t["status"] for t in listed] == ["answered"]


def test_a_tasks_text_is_shown_as_written_not_as_ascii_escapes() -> None:
    """A new user's trial: ``inbox show`` (and ``--json``) wrote an answer's note as
    ``"h\\u00e9 \\u2713"``, where ``state get`` and ``export`` show ``"hé ✓"``; what a
    terminal would obey is still escaped."""
    start("refund", "c-8", "u1")
    ok = cli("inbox", "answer", "u1:0", "--by", "ann", "--set", "approve=yes",
             "--set", "amount=5", "--set", "reason=error", "--set", "note=hé ✓\u202e")
    assert ok.code == 0, ok.stderr
    shown = cli("inbox", "show", "u1:0")
    assert shown.code == 0 and '"note": "hé ✓\\u202e"' in shown.stdout, shown.stdout
    assert "\u202e" not in shown.stdout
    doc = cli("inbox", "show", "u1:0", "--json").stdout
    assert "hé ✓" in doc and json.loads(doc)["decision"]["value"]["note"] == "hé ✓\u202e"


def test_answer_with_the_form() -> None:
    start("refund", "c-8", "r2")
    res = CliRunner().invoke(app, ["inbox", "answer", "r2:0", "--by", "ann"],
                             input="y\nabc\n-3\n250\nmaybe\nerror\n\n")
    assert res.exit_code == 0, res.output
    assert "Refund customer c-8?" in res.output and "Approve [y/n]" in res.output
    assert "amount: not a valid integer: write a whole number" in res.output  # asked again
    # a value of the right type that the field's own rule refuses: asked again at once,
    # not refused after the last field with everything typed lost
    [refused] = [line for line in res.output.splitlines() if "'minimum' rule" in line]
    assert "amount: its 'minimum' rule (0) refuses it" in refused and "-3" not in refused
    assert "Reason [goodwill/error]" in res.output and "use one of goodwill" in res.output
    out = finish("r2")
    assert out.output["amount"] == 250 and out.output["reason"] == "error"
    assert out.output["note"] is None


def test_the_form_asks_nothing_of_a_task_it_could_not_record() -> None:
    """A task answered already, one assigned to others, or whose session ended: the form
    is refused before its first field, not after the reviewer typed every one (a new
    user's trial: the whole form, then 'already answered')."""
    start("refund", "c-9", "r3")
    assert cli("inbox", "answer", "r3:0", "--by", "ann", "--value",
               '{"approve": true, "amount": 5, "reason": "error"}').code == 0
    res = CliRunner().invoke(app, ["inbox", "answer", "r3:0", "--by", "bob"],
                             input="y\n250\nerror\n\n")
    assert res.exit_code == 2, res.output
    assert "Approve [y/n]" not in res.output and "Refund customer" not in res.output
    assert "is already answered by 'ann'; nothing was changed" in res.stderr, res.stderr
    start("refund", "c-10", "r4")
    assert cli("cancel", "r4").code == 0
    res = CliRunner().invoke(app, ["inbox", "answer", "r4:0", "--by", "bob"], input="y\n")
    assert res.exit_code == 2 and "Approve [y/n]" not in res.output, res.output
    assert "nobody waits for this answer any more" in res.stderr, res.stderr


def test_a_typed_value_the_form_cannot_take_is_one_line_that_does_not_repeat_it() -> None:
    """``--set`` and the form: NaN and infinities (they were stored as null), JSON nested
    past what is stored or what the decoder reads, a lone surrogate: one line each, and
    the value typed (personal data, perhaps) is not repeated."""
    from pydantic import BaseModel

    from convoy.cli._form import fields, parse

    class Answer(BaseModel):
        x: float
        tags: list[str]
        n: int

    form = {f.name: f for f in fields(Answer.model_json_schema()) or ()}
    cases = [("x", "nan", "x: not a valid number: NaN and infinite numbers are not JSON"),
             ("x", "1e999", "x: not a valid number: NaN and infinite"),
             ("x", "Jane Doe", "x: not a valid number: write a number"),
             ("n", "Jane Doe 123-45-6789", "n: not a valid integer: write a whole number"),
             ("tags", "[NaN]", "NaN and infinite numbers are not JSON"),
             ("tags", '["Jane", 1e999]', "NaN and infinite numbers are not JSON"),
             ("tags", "[" * 300 + "]" * 300, "nest more than 200 levels deep"),
             ("tags", "[" * 5000 + "]" * 5000, "nest more than 200 levels deep"),
             ("tags", '["\\ud800 Jane"]', "tags: a lone surrogate"),
             ("tags", "[" + "1" * 5000 + "]", "an integer with more than 4300 digits"),
             ("n", "1" * 5000, "n: not a valid integer: an integer with more than 4300 "
                               "digits")]
    for name, text, said in cases:
        with pytest.raises(convoy.UserError) as info:
            parse(form[name], text)
        message = str(info.value)
        assert said in message and "Jane" not in message and "\n" not in message, message
    assert parse(form["x"], "4.5") == 4.5 and parse(form["tags"], '["a"]') == ["a"]



def test_an_answer_checked_by_the_schema_alone_is_not_repeated_in_the_error() -> None:
    """Without the answer's type loaded, its JSON schema checks it: the error names the
    field and the rule, not the value (jsonschema's own message quotes it)."""
    from pydantic import BaseModel

    from convoy.hitl._task import HumanTask, answer_checker

    class Refund(BaseModel):
        amount: int
        reason: str

    task = HumanTask(id="t:0", session_id="t", tenant="default", kind="question",
                     prompt="?", answer_type="nowhere:Refund",
                     answer_schema=Refund.model_json_schema(), created_at=0.0)
    check = answer_checker(task)
    with pytest.raises(convoy.UserError) as info:
        check({"amount": "Jane Doe SSN 123-45-6789", "reason": "x"})
    assert str(info.value) == ("the answer does not match the task's schema: amount: its "
                               "'type' rule (\"integer\") refuses it")
    with pytest.raises(convoy.UserError, match="'reason' is a required property"):
        check({"amount": 5})
    assert check({"amount": 5, "reason": "x"}) == {"amount": 5, "reason": "x"}
    # (a new user's trial: a field the schema does not have was "its 'additionalProperties'
    # rule (false) refuses it", naming no field)
    closed = HumanTask(id="t:1", session_id="t", tenant="default", kind="question",
                       prompt="?", answer_type="nowhere:Refund", created_at=0.0,
                       answer_schema={**Refund.model_json_schema(),
                                      "additionalProperties": False})
    with pytest.raises(convoy.UserError) as info:
        answer_checker(closed)({"amount": 5, "reason": "x", "result": 1})
    assert str(info.value) == ("the answer does not match the task's schema: (answer): it "
                               "has no field 'result' (its fields: 'amount', 'reason')")


def test_the_open_task_of_a_cancelled_session_says_nobody_waits_for_it() -> None:
    start("refund", "c-9", "gone")
    assert cli("cancel", "gone").code == 0
    shown = cli("inbox", "show", "gone:0")
    assert shown.code == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    assert "but its session is cancelled: nobody waits for an answer any more" in said
    assert "decide:" not in said
    doc = json.loads(cli("inbox", "show", "gone:0", "--json").stdout)
    assert doc["actions"] == [] and doc["session_ended"] == "cancelled"
    still = json.loads(cli("inbox", "show", "gone:0", "--json").stdout)
    assert still["status"] == "open"  # (the task itself is as it was)
    # (a new user's trial: --status all left it out, though show finds it and db info
    # counts it; the open tasks people answer leave it out)
    every = json.loads(cli("inbox", "list", "--status", "all", "--json").stdout)
    assert [t["id"] for t in every] == ["gone:0"], every
    # (as show says it: nobody waits for an answer, a review)
    assert every[0]["actions"] == [] and every[0]["session_ended"] == "cancelled", every
    table = cli("inbox", "list", "--status", "all").stdout
    assert "open (session" in table and "cancelled)" in table, table  # (folded)
    assert json.loads(cli("inbox", "list", "--json").stdout) == []


def test_what_a_task_shows_is_never_obeyed_by_the_terminal() -> None:
    """A question built from a customer's input can hold ESC sequences (a window title, a
    screen clear, colours) and bidi overrides: the inbox shows them escaped, never sends
    them to the reviewer's terminal raw, and reads no markup in them. ``--by`` refuses
    them."""
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mX\u202eY [bold]Z[/bold]"
    start("refund", hostile, "h1")
    listed = cli("inbox", "list")
    shown = cli("inbox", "show", "h1:0")
    cli("inbox", "comment", "h1:0", "line one\nline two \x1b[2J", "--by", "ann")
    commented = cli("inbox", "show", "h1:0")
    for res in (listed, shown, commented):
        assert res.code == 0, res.stderr
        assert "\x1b" not in res.stdout and "\x07" not in res.stdout, res.stdout
        assert "\u202e" not in res.stdout
    assert "\\x1b]0;pwned\\x07" in shown.stdout and "[bold]Z[/bold]" in shown.stdout
    assert "line one\nline two \\x1b[2J" in commented.stdout  # lines kept, ESC shown
    answered = CliRunner().invoke(app, ["inbox", "answer", "h1:0", "--by", "ann"],
                                  input="n\n1\nerror\n\n")
    assert "\x1b" not in answered.output and "\\x1b[2J" in answered.output
    empty = cli("inbox", "comment", "h1:0", "x", "--by", "")
    assert empty.code == 2 and "the --by is empty" in empty.stderr, empty.stderr
    one_line_error = cli("inbox", "comment", "h1:0", "x", "--by", "ann\x1b[31m")
    assert one_line_error.code == 2 and "--by 'ann\\x1b[31m' holds the character" in \
        one_line_error.stderr
    # A name from the environment is said to be $CONVOY_USER's, not an option never typed.
    from_env = cli("inbox", "comment", "h1:0", "x", env={"CONVOY_USER": "ann\x1b[31m"})
    assert from_env.code == 2 and "$CONVOY_USER 'ann\\x1b[31m' holds the character" in \
        from_env.stderr and "--by" not in from_env.stderr, from_env.stderr


def test_approve_reject_and_edit_tool_calls() -> None:
    import hitl_flows

    hitl_flows.PAID.clear()
    for sid in ("p1", "p2", "p3"):
        start("payout", "pay a-1", sid)
    listed = json.loads(cli("inbox", "list", "--kind", "approval", "--json").stdout)
    ids = {t["session_id"]: t["id"] for t in listed}
    assert set(ids) == {"p1", "p2", "p3"}
    assert listed[0]["proposal"] == {"tool": "pay", "arguments": {"account": "a-1",
                                                                  "cents": 900}}
    shown = cli("inbox", "show", ids["p1"]).stdout
    assert "cents: integer, required" in shown and "approve" in shown
    assert cli("inbox", "approve", ids["p1"], "--by", "fin").code == 0
    assert cli("inbox", "reject", ids["p2"], "--by", "fin", "-m", "wrong account").code == 0
    # what was decided, not only that it was: a rejected payment must not read as paid
    again = cli("inbox", "reject", ids["p2"], "--by", "ann")
    assert again.code == 2 and "already answered (rejected) by 'fin'" in again.stderr
    table = " ".join(cli("inbox", "list", "--status", "answered").stdout.split())
    assert "(approved)" in table and "(rejected)" in table, table  # (a cell on two lines)
    bad = cli("inbox", "approve", ids["p3"], "--by", "fin", "--set", "cents=lots")
    assert bad.code == 2 and "cents" in bad.stderr
    assert cli("inbox", "approve", ids["p3"], "--by", "fin", "--set", "cents=100").code == 0
    assert finish("p1").output == '"paid 900"'
    assert "wrong account" in finish("p2").output
    assert finish("p3").output == '"paid 100"'
    assert sorted(hitl_flows.PAID) == [100, 900]


def test_comments_tenants_and_bad_input_are_one_line() -> None:
    start("refund", "c-9", "r3", tenant="acme")
    assert cli("inbox", "comment", "r3:0", "asking finance", "-t", "acme",
               "--by", "ann").code == 0
    shown = cli("inbox", "show", "r3:0", "-t", "acme").stdout
    assert "comment by ann" in shown and "asking finance" in shown
    other = cli("inbox", "show", "r3:0", "-t", "globex")
    assert other.code == 2 and "no human task 'r3:0' of tenant 'globex'" in other.stderr
    every = cli("inbox", "list", "--all-tenants")
    assert every.code == 0 and "acme" in every.stdout and "r3:0" in every.stdout
    for args, msg in ((["show", "nonsense"], "not a task id"),
                      (["list", "--status", "maybe"], "--status 'maybe'"),
                      (["answer", "r3:0", "-t", "acme", "--by", "x", "--value", "{"],
                       "--value is not JSON"),
                      (["answer", "r3:0", "-t", "acme", "--by", "x", "--set", "colour=red"],
                       "no field 'colour'"),
                      (["approve", "r3:0", "-t", "acme", "--by", "x"], "answer it, not "
                                                                         "approve")):
        res = cli("inbox", *args)
        assert res.code == 2 and msg in res.stderr and "Traceback" not in res.stderr, \
            (args, res.stderr)


def test_reserved_namespaces_are_read_only_from_the_cli(workdir: Path) -> None:  # noqa: F811
    start("refund", "c-1", "r4")
    res = cli("state", "set", "convoy.inbox", "r4:0", '{"status": "answered"}')
    assert res.code == 2 and "reserved for Convoy" in res.stderr
    assert cli("state", "history", "convoy.inbox", "r4:0").code == 0  # reading is fine


def test_sessions_say_which_task_they_wait_for() -> None:
    start("refund", "c-2", "r5")
    shown = cli("sessions", "show", "r5")
    assert shown.code == 0 and "inbox task r5:0" in shown.stdout
    assert "convoy inbox show r5:0" in shown.stdout
    listed = cli("sessions", "list", "--status", "waiting")
    assert "a person (task r5:0)" in listed.stdout


def test_metrics_serve_counts_the_open_human_tasks_by_kind_and_queue() -> None:
    """The parked human tasks, as ``convoy metrics serve`` reads them at a scrape."""
    from convoy.cli._common import Scope
    from convoy.cli._metrics import StoreCollector

    start("refund", "c-1", "r1")
    start("refund", "c-2", "r2")
    start("payout", "pay it", "p1")
    start("refund", "c-3", "r3", tenant="globex")

    def scrape(scope: Scope) -> dict[tuple[str, str], float]:
        return {(s.labels["kind"], s.labels["queue"]): s.value
                for fam in StoreCollector("convoy.db", scope).collect()
                if fam.name == "convoy_store_human_tasks_open" for s in fam.samples}

    assert scrape(Scope("default")) == {("question", "billing"): 2,
                                        ("approval", "approvals"): 1}
    # Every tenant's: each series names its tenant (the sessions' gauges too).
    families = {f.name: f for f in StoreCollector("convoy.db", Scope(None)).collect()}
    assert {tuple(s.labels.items()): s.value
            for s in families["convoy_store_human_tasks_open"].samples} == {
        (("tenant", "default"), ("kind", "question"), ("queue", "billing")): 2,
        (("tenant", "default"), ("kind", "approval"), ("queue", "approvals")): 1,
        (("tenant", "globex"), ("kind", "question"), ("queue", "billing")): 1}
    waiting = {s.labels["tenant"]: s.value for s in families["convoy_store_sessions"].samples
               if s.labels["status"] == "waiting"}
    assert waiting == {"default": 3, "globex": 1}
    unfinished: Counter[tuple[str, str]] = Counter()
    for sample in families["convoy_store_unfinished_sessions"].samples:
        unfinished[sample.labels["tenant"], sample.labels["status"]] += int(sample.value)
    assert unfinished == {("default", "waiting"): 3, ("globex", "waiting"): 1}
    assert cli("inbox", "answer", "r1:0", "--by", "ann", "--set", "approve=true",
               "--set", "amount=5", "--set", "reason=goodwill").code == 0
    assert scrape(Scope("default")) == {("question", "billing"): 1,
                                        ("approval", "approvals"): 1}


def test_metrics_serve_redacts_and_bounds_the_queue_label() -> None:
    """A queue's name is the application's text: as a label it is redacted, and past
    max_label_values distinct values the smallest queues count as 'other'."""
    from convoy.cli._common import Scope
    from convoy.cli._metrics import StoreCollector

    start("review", "review:zoe.quinn@mail.example.org", "q1")
    start("review", "review:zoe.quinn@mail.example.org", "q2")
    start("review", "team-a", "q3")
    start("review", "team-b", "q4")

    def scrape(cap: int) -> dict[tuple[str, str], float]:
        collector = StoreCollector("convoy.db", Scope("default"), max_label_values=cap)
        return {(s.labels["kind"], s.labels["queue"]): s.value
                for fam in collector.collect()
                if fam.name == "convoy_store_human_tasks_open" for s in fam.samples}

    assert scrape(200) == {("question", "review:[EMAIL]"): 2, ("question", "team-a"): 1,
                           ("question", "team-b"): 1}
    assert scrape(1) == {("question", "review:[EMAIL]"): 2, ("question", "other"): 2}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a terminal of its own (pty.fork)")
def test_ctrl_c_at_the_form_stops_it_at_once_saying_so(tmp_path: Path) -> None:
    """At a terminal: one Ctrl-C (the terminal's SIGINT) ends the form, exit 130, one line,
    nothing answered. (The event loop's own handler only cancelled its task, which the
    prompt never saw: the first Ctrl-C did nothing, the second printed "Aborted!".)"""
    code, text = _at_the_form(tmp_path, b"\x03")  # Ctrl-C, as the terminal sends it
    assert code == 130, text
    assert "interrupted: nothing was answered" in text and "Traceback" not in text, text
    assert "Aborted" not in text
    assert finish("r5").status == "waiting"  # nothing answered


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a terminal of its own (pty.fork)")
def test_ctrl_d_at_the_form_is_the_end_of_its_input_as_from_a_pipe(tmp_path: Path) -> None:
    """At a terminal, Ctrl-D (the end of the form's input) is what the end of a pipe or a
    file is: no answer, one line, exit 2. It said "interrupted", exit 130, as Ctrl-C does
    (which of the two came was read from whether standard input is a terminal)."""
    code, text = _at_the_form(tmp_path, b"\x04")
    assert code == 2, text
    [line] = [x for x in text.splitlines() if x.startswith("error: ")]
    assert line == ("error: no answer: the input ended before the form did (Ctrl-D at the "
                    "terminal); give the answer with --value JSON or --set FIELD=VALUE"), text
    assert "interrupted" not in text and "Traceback" not in text, text
    assert finish("r5").status == "waiting"  # nothing answered
    piped = cli("inbox", "answer", "r5:0")  # (standard input: empty) the same, in its words
    one_line_error(piped, 2, "no answer: the input ended before the form did (no terminal "
                   "to ask on); give the answer with --value JSON or --set FIELD=VALUE")


def test_sigint_at_a_form_reading_a_pipe_is_an_interrupt(tmp_path: Path) -> None:
    """A SIGINT at a form whose input is a pipe (a script's) is Ctrl-C, not the end of
    its input: exit 130, nothing answered. It said the input had ended (exit 2). The
    moment is observable: the form's first question written."""
    start("refund", "c-5", "r5")
    proc = subprocess.Popen([sys.executable, "-m", "convoy.cli", "inbox", "answer", "r5:0"],
                            cwd=tmp_path, env=subprocess_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        said = b""
        while b"[y/n]" not in said:  # the form's first question (Approve): it reads now
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, said
            said += chunk
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stderr.decode().splitlines() == ["interrupted: nothing was answered"]
    assert finish("r5").status == "waiting"  # nothing answered


def _at_the_form(tmp_path: Path, keys: bytes) -> tuple[int, str]:
    """``convoy inbox answer`` of a waiting task, at a terminal of its own: ``keys`` typed
    at its first question; its exit code and all it wrote."""
    start("refund", "c-5", "r5")
    pid, fd = pty.fork()
    if pid == 0:  # the child: its own terminal, the convoy under test
        os.environ.update(subprocess_env())
        os.execv(sys.executable, [sys.executable, "-m", "convoy", "inbox", "answer",
                                  "r5:0", "--db", str(tmp_path / "convoy.db")])

    def read() -> bytes:  # (what the child wrote next; b"" once it closed its terminal)
        if not select.select([fd], [], [], 120)[0]:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the form said nothing more in 120 s: {said!r}")
        try:
            return os.read(fd, 4096)
        except OSError:  # the child's side closed
            return b""

    said = b""
    while b"[y/n]" not in said:  # the form's first question (Approve)
        chunk = read()
        assert chunk, said
        said += chunk
    os.write(fd, keys)
    while chunk := read():
        said += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), said.decode(errors="replace")


def test_a_store_without_tenant_counts_is_counted_page_by_page() -> None:
    """``convoy metrics serve --all-tenants`` on a store of the protocol alone (not one of
    Convoy's, which count in one query)."""
    from convoy.cli._metrics import tenant_counts
    from convoy.stores import SessionFilter, SessionRow, store_from_url

    start("refund", "c-1", "r1")
    start("refund", "c-3", "r3", tenant="globex")

    class ProtocolOnly:  # (only what the protocol has: no ``tenant_counts``)
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def list_sessions(self, where: SessionFilter) -> list[SessionRow]:
            return list(await self.inner.list_sessions(where))

    async def counted() -> None:
        store = store_from_url("convoy.db", read_only=True)
        await store.open()
        try:
            expected = await tenant_counts(store)
            assert expected == {("default", "waiting"): 1, ("globex", "waiting"): 1}
            assert await tenant_counts(ProtocolOnly(store)) == expected  # type: ignore[arg-type]
        finally:
            await store.aclose()

    asyncio.run(counted())


class _Grant(BaseModel):
    """An answer with an optional field: a typo in its name used to be dropped in
    silence, so the answer recorded said the opposite of what was typed."""

    amount: int
    approve: bool = False
    note: _Note | None = None


class _Note(BaseModel):
    text: str


class _Aliased(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    approved: bool = Field(False, alias="isApproved")
    amount: int = Field(0, validation_alias=AliasChoices("amount_cents", "amount"))
    extra: _Note | dict[str, str] | None = None


class _Ignoring(BaseModel):
    model_config = ConfigDict(extra="ignore")  # (said: left to the model)
    amount: int


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    amount: int


_Grant.model_rebuild()
_Aliased.model_rebuild()


def _checker(tp: type[BaseModel], loaded: bool = True) -> Any:
    from convoy.hitl._task import HumanTask, answer_checker, type_name

    return answer_checker(HumanTask(
        id="t:0", session_id="t", tenant="default", kind="question", prompt="?",
        answer_type=type_name(tp) if loaded else "nowhere:G",
        answer_schema=tp.model_json_schema(), created_at=0.0))


def test_an_answer_with_a_field_its_type_does_not_have_is_refused() -> None:
    """``{"aprove": true}`` is refused, naming the field and the type's fields, where the
    inbox has the answer's type loaded (``--import``); nothing is recorded."""
    check = _checker(_Grant)
    with pytest.raises(convoy.UserError) as info:
        check({"amount": 5, "aprove": True})
    assert str(info.value) == ("the answer has a field _Grant does not have: 'aprove' (its "
                               "fields: amount, approve, note); check its name")
    assert check({"amount": 5, "approve": True}) == {"amount": 5, "approve": True,
                                                     "note": None}


@pytest.mark.parametrize(("tp", "answer", "recorded"), [
    (_Aliased, {"approved": True, "amount": 500, "extra": {"ticket": "T-1"}},
     {"approved": True, "amount": 500, "extra": {"ticket": "T-1"}}),
    (_Aliased, {"isApproved": True, "amount_cents": 7}, {"approved": True, "amount": 7,
                                                         "extra": None}),
    (_Ignoring, {"amount": 1, "more": 2}, {"amount": 1}),
    (_Open, {"amount": 1, "more": 2}, {"amount": 1, "more": 2}),
    (_Grant, {"amount": 1, "note": {"text": "x", "txet": "y"}},  # (nested: the model's)
     {"amount": 1, "approve": False, "note": {"text": "x"}}),
], ids=["alias_by_name", "alias_choices", "extra_ignore", "extra_allow", "nested"])
def test_what_pydantic_takes_is_taken(tp: type[BaseModel], answer: dict[str, Any],
                                      recorded: dict[str, Any]) -> None:
    """Names Pydantic takes (a field's name beside its alias, an alias among choices), a
    model that says what it does with more fields, a nested model's fields: as before."""
    assert _checker(tp)(answer) == recorded


def test_without_the_type_loaded_the_schema_decides_as_before() -> None:
    """Checked by its JSON schema alone (no ``--import``): names the schema cannot tell
    (a field's name beside its alias) would be refused, so more fields are left as the
    schema leaves them, and the session's own check of the answer has the type."""
    assert _checker(_Grant, loaded=False)({"amount": 5, "aprove": True}) == \
        {"amount": 5, "aprove": True}


def _formatted(tp: Any) -> Any:
    """A checker of an answer ``{"v": ...}`` whose field has type ``tp``, by its schema."""
    from pydantic import create_model

    return _checker(create_model("Formatted", v=(tp | None, None)), loaded=False)


@pytest.mark.parametrize(("tp", "fmt", "taken", "refused"), [
    (datetime.date, "date", ["2026-01-05", "2026-01-05T00:00:00"],
     ["2026-13-45", "2026-01-05T10:00:00", "20260105", "soon"]),
    (datetime.datetime, "date-time",  # (naive, as Pydantic writes a naive datetime)
     ["2026-01-05T10:00:00", "2026-01-05T10:00:00Z", "2026-01-05 10:00", "2026-01-05"],
     ["2026-13-05T10:00:00Z", "tomorrow"]),
    (datetime.time, "time", ["10:00", "10:00:00", "10:00:00.5+02:00"], ["25:00", "noon"]),
    (datetime.timedelta, "duration", ["P1D", "PT1H30M", "01:00:00"], ["a while"]),
    (uuid.UUID, "uuid", ["12345678-1234-5678-1234-567812345678",
                         "12345678123456781234567812345678"], ["12345678-1234"]),
    (UUID4, "uuid4", [str(uuid.UUID(int=1, version=4))], [str(uuid.UUID(int=1, version=1))]),
    (AnyUrl, "uri", ["https://example.com/a?b=1", "mailto:ann@example.com"],
     ["example.com", "https://"]),
    (ipaddress.IPv4Address, "ipv4", ["10.0.0.1"], ["10.0.0.256", "::1"]),
    (ipaddress.IPv6Address, "ipv6", ["::1", "fe80::1"], ["10.0.0.1", "::g"]),
    (IPvAnyAddress, "ipvanyaddress", ["10.0.0.1", "::1"], ["10.0.0"]),
    (IPvAnyNetwork, "ipvanynetwork", ["10.0.0.0/8", "::/0"], ["10.0.0.1/8"]),
    (ipaddress.IPv4Interface, "ipv4interface", ["10.0.0.1/8"], ["10.0.0.1/33"]),
], ids=lambda x: x if isinstance(x, str) else None)
def test_without_the_type_loaded_the_formats_of_its_schema_are_checked(
        tp: Any, fmt: str, taken: list[str], refused: list[str]) -> None:
    """The bug: ``when: date | None`` answered ``"2026-13-45"`` without ``--import`` was
    recorded (the schema check ignored ``"format": "date"``) and the session refused it
    later, in silence. A format Pydantic writes is checked as the session checks it: the
    strings its type takes are taken (a naive datetime, a time without seconds, a UUID
    without dashes, which stricter RFC 3339 / JSON Schema checkers refuse), the others
    refused naming the field and the format, not the value."""
    from pydantic import TypeAdapter

    check = _formatted(tp)
    assert TypeAdapter(tp).json_schema()["format"] == fmt
    for text in taken:
        TypeAdapter(tp).validate_python(text)  # (the session takes it)
        assert check({"v": text}) == {"v": text}
    for text in refused:
        with pytest.raises(ValueError):
            TypeAdapter(tp).validate_python(text)  # (the session refuses it)
        with pytest.raises(convoy.UserError) as info:
            check({"v": text})
        assert str(info.value) == ("the answer does not match the task's schema: v: its "
                                   f"'format' rule (\"{fmt}\") refuses it"), text
    assert check({"v": None}) == {"v": None}


def test_an_email_field_is_checked_without_email_validator() -> None:
    """Pydantic's ``EmailStr`` needs the ``email-validator`` extra, which the inbox's
    process may not have: its schema's ``email`` format is checked by jsonschema's own
    check (an ``@``), which refuses no address the session would take."""
    schema = {"type": "object", "properties": {"to": {"type": "string", "format": "email"},
                                               "pw": {"type": "string", "format": "password",
                                                      "writeOnly": True},
                                               "p": {"type": "string", "format": "path"}}}
    from convoy.hitl._task import HumanTask, answer_checker

    check = answer_checker(HumanTask(id="t:0", session_id="t", tenant="default",
                                     kind="question", prompt="?", answer_type="nowhere:E",
                                     answer_schema=schema, created_at=0.0))
    assert check({"to": "ann@example.com", "pw": "x", "p": "no/such/file"})
    with pytest.raises(convoy.UserError, match="to: its 'format' rule"):
        check({"to": "ann at example.com"})


def test_an_answer_that_breaks_a_format_is_refused_by_the_command(tmp_path: Path) -> None:
    """The trial: ``convoy inbox answer`` without ``--import`` (a process without the
    answer's type) refuses a date that is no date, in one line, and records nothing."""
    start("redo", "o-1", "d1")
    res = subprocess_cli(tmp_path, "inbox", "answer", "d1:0", "--by", "b", "--value",
                         '{"action": "refund", "when": "2026-13-45"}')
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == ("error: the answer does not match the task's schema: when: "
                                  "its 'format' rule (\"date\") refuses it"), res.stderr
    # --set (and the form) check a field's format as it is given
    res = subprocess_cli(tmp_path, "inbox", "answer", "d1:0", "--by", "b", "--set",
                         "action=refund", "--set", "when=2026-13-45")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == ("error: when: its 'format' rule (\"date\") refuses it"), \
        res.stderr
    assert json.loads(cli("inbox", "show", "d1:0", "--json").stdout)["status"] == "open"
    assert 'when: string or empty, format "date"' in cli("inbox", "show", "d1:0").stdout


def test_an_answer_the_session_refuses_is_one_warning_line(tmp_path: Path) -> None:
    """An answer the schema takes and the session's type refuses (a rule of the type's
    own code) reopens the task: 'convoy resume' and 'convoy worker' said nothing of it, and
    the task silently waited again. One 'warning:' line says so, as for a refused signal,
    with the error kinds, not the answer; a later run that replays it says nothing."""
    start("redo", "o-2", "d2")
    start("redo", "o-3", "d3")
    for sid in ("d2", "d3"):
        res = subprocess_cli(tmp_path, "inbox", "answer", f"{sid}:0", "--by", "b", "--value",
                             '{"action": "replace"}')
        assert res.returncode == 0, res.stderr
    res = subprocess_cli(tmp_path, "resume", "--import", "hitl_flows")
    assert res.returncode == 0, res.stderr
    lines = sorted(x for x in res.stderr.splitlines() if "refused" in x)
    assert len(lines) == 2, res.stderr
    for sid, line in zip(("d2", "d3"), lines, strict=True):
        assert line.startswith(f"warning: session '{sid}' refused the answer to task "
                               f"'{sid}:0' (given at "), line
        assert line.endswith("): it does not validate as the task's type: 1 error "
                             "(value_error); the task is open again for a valid answer"), line
    shown = json.loads(cli("inbox", "show", "d2:0", "--json").stdout)
    assert shown["status"] == "open" and "a replacement needs a date" in shown["error"]
    # a worker says it too
    res = subprocess_cli(tmp_path, "inbox", "answer", "d2:0", "--by", "b", "--value",
                         '{"action": "replace"}')
    assert res.returncode == 0, res.stderr
    res = subprocess_cli(tmp_path, "worker", "hitl_flows", "--until-idle")
    assert res.returncode == 0, res.stderr
    [line] = [x for x in res.stderr.splitlines() if "refused" in x]
    assert line.startswith("warning: session 'd2' refused the answer to task 'd2:0'"), line
    # answered right, the session ends; its replay of the refusals says nothing
    for sid in ("d2", "d3"):
        res = subprocess_cli(tmp_path, "inbox", "answer", f"{sid}:0", "--by", "b", "--value",
                             '{"action": "replace", "when": "2026-01-05"}')
        assert res.returncode == 0, res.stderr
    res = subprocess_cli(tmp_path, "resume", "--import", "hitl_flows")
    assert res.returncode == 0, res.stderr
    assert "refused" not in res.stderr and "warning" not in res.stderr, res.stderr
    assert "completed" in cli("sessions", "show", "d2").stdout


def test_a_signal_to_a_session_waiting_for_a_person_says_what_it_waits_for() -> None:
    start("refund", "c-5", "s1")
    res = cli("signal", "s1", "approve", "--payload", "true")
    assert res.code == 0, res.stderr
    assert res.stderr.strip() == (
        "warning: session s1 waits for a person (task s1:0), not a signal 'approve': this "
        "one does not wake it (it is kept for a wait of that name); to continue it: convoy "
        "inbox show s1:0"), res.stderr


def test_replay_of_a_session_waiting_for_a_person_names_the_task_and_how_to_answer() -> None:
    """With the --db and --tenant given (the review of stop 56: the line said 'convoy
    inbox' answers it, a group, without them)."""
    start("refund", "c-1", "r1", tenant="globex")
    Path("convoy.db").rename("other.db")
    res = cli("replay", "r1", "--db", "other.db", "--tenant", "globex")
    one_line_error(res, 2, "session 'r1' has not finished: it waits for a person (task r1:0)")
    assert "'convoy inbox show r1:0 --db other.db --tenant globex' shows how to answer it" \
        in res.stderr, res.stderr
