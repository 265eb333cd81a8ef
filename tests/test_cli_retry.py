"""``convoy retry``: finished sessions that did not complete run again as new sessions
linked to the old ones, selected by status, error type, id or workflow."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    ids_of,
    one_line_error,
    run_ok,
    session,
    session_ids,
    summary,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
)
from tests.store_backends import SQLiteBackend

FLAKY = {"subject": "flaky", "body": "the backend is down"}
EXPLODE = {"subject": "explode", "body": "!"}
LINES: list[object] = [GOOD[0], FLAKY, EXPLODE]


def test_retry_failed_sessions_as_new_linked_sessions() -> None:
    run_ok(lines=LINES)
    ok, flaky, explode = ids_of(LINES)
    assert session(flaky).status == session(explode).status == "failed"

    dry = cli("retry", "--status", "failed", "--dry-run")
    assert dry.code == 0, dry.stderr
    for text in (flaky, explode, f"{flaky}.r1", "ConnectionError", "RuntimeError",
                 "2 sessions would be retried"):
        assert text in dry.stdout, text
    assert len(session_ids()) == 3  # a dry run creates nothing

    Path("fixed").touch()
    res = cli("retry", "--error-type", "ConnectionError")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "1"
    assert summary(res.stdout, "completed") == "1"
    new = session(f"{flaky}.r1")
    assert (new.status, new.parent, new.input) == ("completed", flaky, session(flaky).input)
    assert session(flaky).status == "failed"  # the old session's history is kept

    # Already retried: not selected again. The failed one can be, by id.
    again = cli("retry", "--status", "failed", "--dry-run")
    assert "1 session would be retried" in again.stdout and f"{flaky}.r1" not in again.stdout
    res = cli("retry", explode)
    assert summary(res.stdout, "failed") == "1"
    assert session(f"{explode}.r1").parent == explode
    one_line_error(cli("retry", flaky), 2,
                   f"session {flaky!r} was already retried as '{flaky}.r1' (completed)")
    one_line_error(cli("retry", ok), 2, f"session {ok!r} is completed")

    # The lineage, both ways.
    shown = cli("sessions", "show", flaky).stdout
    assert "retried as" in shown and f"{flaky}.r1 (completed)" in shown
    shown = cli("sessions", "show", f"{flaky}.r1").stdout
    assert "retry of" in shown and flaky in shown
    data = json.loads(cli("sessions", "show", flaky, "--json").stdout)
    assert data["retried_as"] == f"{flaky}.r1"
    assert f"convoy retry {explode}.r1" in cli("sessions", "show", f"{explode}.r1").stdout


def test_retry_runs_the_current_version_and_a_rerun_does_not_rerun() -> None:
    run_ok(lines=[FLAKY])
    (flaky,) = ids_of([FLAKY])
    tamper("UPDATE sessions SET version='0' WHERE id=?", flaky)
    Path("fixed").touch()
    res = cli("retry", "--workflow", FLOW)
    assert res.code == 0, res.stderr
    assert session(f"{flaky}.r1").version == "1"
    res = cli("retry", "--workflow", FLOW)
    assert res.code == 0 and "nothing to retry" in res.stdout
    # 'convoy run' with the same file still addresses the old session: not re-run.
    res = run_ok(lines=[FLAKY])
    assert summary(res.stdout, "sessions run") == "0"


def test_a_dry_run_opens_the_store_read_only(tmp_path: Path) -> None:
    """A dry run writes nothing: on a store an older Convoy left without its add-ons (which
    a writable open adds), it lists the sessions and leaves the store as it was; only the
    retry itself brings the store up to date."""
    run_ok(lines=LINES)
    backend = SQLiteBackend(tmp_path)
    backend.path = tmp_path / "convoy.db"
    backend.drop_addons()
    before = backend.snapshot()
    dry = cli("retry", "--status", "failed", "--dry-run")
    assert dry.code == 0 and "2 sessions would be retried" in dry.stdout, dry
    assert backend.snapshot() == before
    Path("fixed").touch()
    assert cli("retry", "--status", "failed").code == 0
    assert backend.snapshot() != before


def test_retry_usage_errors() -> None:
    run_ok(lines=LINES)
    one_line_error(cli("retry"), 2, "say which sessions to retry")
    one_line_error(cli("retry", "--status", "running"), 2,
                   "'running' is not a status a retry runs")
    one_line_error(cli("retry", "nope"), 2, "no session 'nope'")
    one_line_error(cli("retry", "--workflow", "handle"), 2,
                   "no sessions of workflow 'handle' of tenant 'default' in 'convoy.db'; its "
                   "workflows: cli_flows:handle")
    one_line_error(cli("retry", "--status", "failed", "--db", "absent.db"), 2,
                   "no Convoy store at 'absent.db'")


def test_retry_strict() -> None:
    run_ok(lines=LINES)
    res = cli("retry", "--status", "failed", "--strict")
    one_line_error(res, 1, "--strict: 2 of 2 retries did not complete (failed 2)")


def test_a_workflow_not_loaded_here_names_the_commands_own_import() -> None:
    run_ok(lines=LINES)
    _, flaky, _ = ids_of(LINES)
    # As if started by a process that imported a module defining 'desk.gone' by name.
    tamper("UPDATE sessions SET workflow='desk.gone' WHERE id=?", flaky)
    res = cli("retry", flaky)
    one_line_error(res, 2, "cannot retry 1 session of workflow 'desk.gone'")
    assert f"convoy retry {flaky} --import MODULE" in res.stderr
    assert "convoy resume" not in res.stderr
    assert len(session_ids()) == 3  # nothing created
    # The dry run says the same, and does not count it as one that would be retried.
    dry = cli("retry", flaky, "--dry-run")
    one_line_error(dry, 2, "cannot retry 1 session of workflow 'desk.gone'")
    assert "would be retried" not in dry.stdout
    assert f"convoy retry {flaky} --dry-run --import MODULE" in dry.stderr
    res = cli("replay", flaky)  # (not a retry, but the same hint, for its own command)
    one_line_error(res, 2, f"cannot replay session {flaky!r} of workflow 'desk.gone'")
    assert f"convoy replay {flaky} --import MODULE" in res.stderr
    assert "convoy resume" not in res.stderr


def test_an_escalated_session_is_answered_not_retried() -> None:
    """An unknown outcome: nobody knows whether the charge went through. 'sessions show'
    says to check and answer; 'retry' refuses unless told, and a retry told to go ahead
    closes the escalation so that no answer charges a third time."""
    run_ok(lines=['"o-1"'], flow="cli_flows:charge")
    (sid,) = session_ids()
    tamper("UPDATE sessions SET status='pending', output=NULL WHERE id=?", sid)
    tamper("UPDATE journal SET status='started', result=NULL WHERE session_id=?", sid)
    assert summary(cli("resume").stdout, "escalated") == "1"

    shown = cli("sessions", "show", sid).stdout
    assert "convoy retry" not in shown
    assert "check whether the step that escalated took effect" in shown
    assert f"convoy inbox approve {sid}:escalated" in shown and \
        f"convoy inbox reject {sid}:escalated" in shown

    one_line_error(cli("retry", sid), 2,
                   f"session {sid!r} is escalated and its escalation is open "
                   "(UnknownOutcomeError)")
    assert "pass --rerun-escalated to retry it anyway" in cli("retry", sid).stderr
    one_line_error(cli("retry", "--status", "escalated"), 2, "pass --rerun-escalated")
    nothing = cli("retry", "--workflow", "cli_flows:charge")
    assert nothing.code == 0 and "nothing to retry" in nothing.stdout
    assert session(sid).status == "escalated" and session_ids() == [sid]

    res = cli("retry", sid, "--rerun-escalated", "--by", "ann")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "completed") == "1"
    old = session(sid)
    assert old.status == "failed" and old.error_record is not None
    assert f"retried as '{sid}.r1'" in old.error_record["message"]
    assert "ann" in cli("inbox", "show", f"{sid}:escalated").stdout  # who closed it
    one_line_error(cli("signal", sid, "convoy.escalation", "--payload", '{"action": "retry"}'),
                   2, "is failed, not escalated")
