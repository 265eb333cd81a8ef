"""``--log-format json`` (``$CONVOY_LOG_FORMAT``) for the commands that run sessions: the
``convoy`` logger's records on stderr as JSON lines, each with the tenant, session, agent,
step key, trace and span ids of where it was logged, personal data redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from .clikit import (
    FLOW,
    GOOD,
    cli,
    ids_of,
    one_line_error,
    subprocess_cli,
    workdir,
    write_jsonl,
)

__all__ = ["workdir"]

EMAIL = "ada.lovelace@example.org"
DECLINED = "json_log_flows:declined"
IDS = ("tenant", "session_id", "agent", "step_key", "trace_id", "span_id")


def records(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line, read as JSON (a line that is not fails the test)."""
    return [json.loads(line) for line in stderr.splitlines()]


def test_run_logs_each_session_run_as_json_lines(workdir: Path) -> None:
    before = list(logging.getLogger("convoy").handlers)
    inputs = write_jsonl(workdir / "in.jsonl", GOOD)
    res = cli("run", FLOW, "--input", str(inputs), "--log-format", "json")
    assert res.code == 0, res.stderr
    ended = [r for r in records(res.stderr) if r["message"] == "session run ended completed"]
    assert sorted(r["session_id"] for r in ended) == sorted(ids_of(GOOD))
    for r in ended:
        assert set(IDS) <= set(r) and r["tenant"] == "default" and r["level"] == "info"
        assert len(r["trace_id"]) == 32 and len(r["span_id"]) == 16, r
        assert r["workflow"] == FLOW and r["status"] == "completed"
    assert len({r["trace_id"] for r in ended}) == len(GOOD)  # (a trace per session)
    # The handler goes with the command (this process runs the next one).
    assert logging.getLogger("convoy").handlers == before


def test_a_failed_step_is_a_warning_with_its_ids_and_no_personal_data(workdir: Path) -> None:
    line = {"subject": "refund", "body": "please refund me", "customer": EMAIL}
    inputs = write_jsonl(workdir / "in.jsonl", [line])
    res = cli("run", DECLINED, "--input", str(inputs), "--log-format", "json")
    assert res.code == 0, res.stderr
    logged = records(res.stderr)
    [failed] = [r for r in logged if r["message"].startswith("step charge failed")]
    assert failed["level"] == "warning" and failed["error_type"] == "Declined"
    assert failed["message"] == "step charge failed: card declined for [EMAIL]"
    [ended] = [r for r in logged if r["message"].startswith("session run ended")]
    assert ended["status"] == "failed" and ended["error_kind"] == "other"
    assert failed["session_id"] == ended["session_id"] and failed["step_key"]
    assert failed["trace_id"] == ended["trace_id"] and failed["span_id"] != ended["span_id"]
    assert EMAIL not in res.stderr


def test_the_variable_sets_it_and_a_bad_format_is_one_line(workdir: Path) -> None:
    inputs = write_jsonl(workdir / "in.jsonl", GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), env={"CONVOY_LOG_FORMAT": "json"})
    assert res.code == 0, res.stderr
    assert [r["message"] for r in records(res.stderr)] == ["session run ended completed"]
    one_line_error(cli("run", FLOW, "--input", str(inputs), "--log-format", "yaml"), 2,
                   "--log-format: unknown log format 'yaml'; use 'text' or 'json'")
    one_line_error(cli("run", FLOW, "--input", str(inputs), env={"CONVOY_LOG_FORMAT": "xml"}),
                   2, "CONVOY_LOG_FORMAT: unknown log format 'xml'; use 'text' or 'json'")
    res = cli("run", FLOW, "--input", str(inputs), env={"CONVOY_LOG_FORMAT": " JSON "})
    assert res.code == 0 and res.stderr == "", res.stderr  # (the session ran before: none)
    res = cli("run", FLOW, "--input", str(inputs))  # text: nothing logged on success
    assert res.code == 0 and res.stderr == "", res.stderr


def test_with_trace_store_the_records_carry_the_stored_trace(workdir: Path) -> None:
    inputs = write_jsonl(workdir / "in.jsonl", GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--log-format", "json", "--trace", "store")
    assert res.code == 0, res.stderr
    [sid] = ids_of(GOOD[:1])
    [ended] = records(res.stderr)
    shown = cli("trace", sid, "--json")
    assert shown.code == 0, shown.stderr
    spans = json.loads(shown.stdout)
    assert {s["trace_id"] for s in spans} == {ended["trace_id"]}
    assert ended["span_id"] in {s["span_id"] for s in spans}


def test_an_application_that_logs_already_is_not_logged_twice(workdir: Path) -> None:
    inputs = write_jsonl(workdir / "in.jsonl", GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--log-format", "json",
              "--interceptors", "json_log_flows:logged")
    assert res.code == 0, res.stderr
    assert [r["message"] for r in records(res.stderr)] == ["session run ended completed"]


@pytest.mark.parametrize("command", ["worker", "resume"])
def test_worker_and_resume_log_as_json_lines(workdir: Path, command: str) -> None:
    # Sessions parked on a signal: a worker (or resume) runs them once it arrives.
    asks = ['"one"', '"two"']
    res = cli("run", "cli_flows:approval", "--input", str(write_jsonl(
        workdir / "asks.jsonl", list(asks))))
    assert res.code == 0, res.stderr
    sids = ids_of(list(asks), "cli_flows:approval")
    for sid in sids:
        assert cli("signal", sid, "approve", "--payload", "true").code == 0
    args = ["worker", "cli_flows", "--until-idle"] if command == "worker" else ["resume"]
    res = cli(*args, "--log-format", "json")
    assert res.code == 0, res.stderr
    # (the worker's own banner stays a line of text)
    lines = "\n".join(x for x in res.stderr.splitlines() if not x.startswith("worker on "))
    ended = [r for r in records(lines) if r["message"] == "session run ended completed"]
    assert sorted(r["session_id"] for r in ended) == sorted(sids)
    assert all(r["trace_id"] and r["span_id"] for r in ended)


def test_an_application_that_configures_logging_gets_the_json_lines_only(
        workdir: Path) -> None:
    """A module that sets up a root handler of its own (``logging.basicConfig``) when the
    command imports it: the ``convoy`` logger's records are the JSON lines, not also that
    handler's lines of text (unredacted)."""
    line = {"subject": "refund", "body": "please refund me", "customer": EMAIL}
    write_jsonl(workdir / "in.jsonl", [line])
    res = subprocess_cli(workdir, "run", "json_log_flows:declined", "--input", "in.jsonl",
                         "--log-format", "json", "--interceptors", "logging_flows:NONE")
    assert res.returncode == 0, res.stderr
    logged = records(res.stderr)  # (every line JSON)
    assert [r["level"] for r in logged] == ["warning", "warning"], logged
    assert EMAIL not in res.stderr


def test_the_command_that_finishes_sessions_keeps_the_log_format_the_variable_does_not_say(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from convoy.cli._interceptors import session_options

    monkeypatch.delenv("CONVOY_LOG_FORMAT", raising=False)
    assert (session_options(None, None, None, "text"),
            session_options(None, None, None, "json")) == ("", "--log-format json")
    monkeypatch.setenv("CONVOY_LOG_FORMAT", " JSON")  # (read as the option reads it)
    assert (session_options(None, None, None, "json"),
            session_options(None, None, None, "text")) == ("", "--log-format text")
