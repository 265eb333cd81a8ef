"""The ``convoy`` CLI, run for real as a subprocess (``python -m convoy.cli``)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FLOW = "cli_flows:handle"

GOOD = [
    {"subject": "refund", "body": "please refund me", "customer": "c-1"},
    {"subject": "login", "body": "cannot log in"},
    {"subject": "late", "body": "where is my order"},
]


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    path = [str(FIXTURES), *filter(None, [os.environ.get("PYTHONPATH")])]
    full_env = {k: v for k, v in os.environ.items() if k != "CONVOY_DB"}
    full_env.update({"PYTHONPATH": os.pathsep.join(path), "PYTHONIOENCODING": "utf-8",
                     "COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "convoy.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                            for x in lines))
    return path


def summary(stdout: str, label: str) -> str:
    """The value cell of a summary-table row."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[1] == label:
            return cells[2]
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


def session_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM sessions"))


def run_ok(tmp_path: Path, *extra: str, lines: list[object] | None = None
           ) -> subprocess.CompletedProcess[str]:
    write_jsonl(tmp_path / "in.jsonl", GOOD if lines is None else lines)
    res = cli(tmp_path, "run", FLOW, "--input", "in.jsonl", *extra)
    assert res.returncode == 0, res.stderr
    return res


# -- help and version ------------------------------------------------------------------


def test_version_and_help(tmp_path: Path) -> None:
    res = cli(tmp_path, "--version")
    assert res.returncode == 0
    assert res.stdout.strip() == "convoy 0.1.0"
    top = cli(tmp_path, "--help")
    assert top.returncode == 0
    for command in ("run", "resume", "replay", "sessions"):
        assert command in top.stdout
    for command in (["run"], ["resume"], ["replay"], ["sessions", "list"],
                    ["sessions", "show"]):
        res = cli(tmp_path, *command, "--help")
        assert res.returncode == 0, res.stderr
        assert "Example" in res.stdout
        assert "convoy " + command[0] in res.stdout


# -- run -------------------------------------------------------------------------------


def test_run_happy_path(tmp_path: Path) -> None:
    res = run_ok(tmp_path)
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "completed") == "3"
    assert summary(res.stdout, "failed") == "0"
    assert summary(res.stdout, "invalid input lines") == "0"
    # SimModel usage=(120, 30), two model calls per session.
    assert summary(res.stdout, "tokens in / out") == "720 / 180"
    assert summary(res.stdout, "cost").startswith("$0.")
    assert "ms" in summary(res.stdout, "session latency p50 / p99")
    assert "sessions/s" in summary(res.stdout, "throughput")
    ids = session_ids(tmp_path / "convoy.db")
    assert len(ids) == 3
    run_id = ids[0].rsplit("-", 1)[0]
    assert ids == [f"{run_id}-{n}" for n in (1, 2, 3)]
    assert f"run {run_id}" in res.stdout


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    lines: list[object] = [
        GOOD[0],
        '{"subject": "broken", "body": "x",}',     # line 2: malformed JSON
        GOOD[1],
        {"subject": "no body"},                     # line 4: fails validation
        "",                                         # line 5: blank, ignored
        GOOD[2],
    ]
    res = run_ok(tmp_path, lines=lines)
    assert "line 2: invalid JSON: Expecting property name enclosed in double quotes" \
        in res.stderr
    assert "line 4: body: Field required" in res.stderr
    assert "Traceback" not in res.stderr
    assert summary(res.stdout, "completed") == "3"
    assert summary(res.stdout, "invalid input lines") == "2 (lines 2, 4)"
    ids = session_ids(tmp_path / "convoy.db")
    assert [i.rsplit("-", 1)[1] for i in ids] == ["1", "3", "6"]


def test_str_input_workflow_validation(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", ['"hello"', "42", '"world"'])  # raw lines
    res = cli(tmp_path, "run", "cli_flows:shout", "-i", "in.jsonl")
    assert res.returncode == 0, res.stderr
    assert "line 2: (input): Input should be a valid string" in res.stderr
    assert summary(res.stdout, "completed") == "2"


def test_failed_sessions_counted_by_reason_exit_zero(tmp_path: Path) -> None:
    res = run_ok(tmp_path, lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "failed") == "1"
    assert "the ticket asked to explode" in res.stdout
    assert "convoy sessions show ID" in res.stdout


def test_unknown_module_is_a_usage_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = cli(tmp_path, "run", "no_such_module:flow", "-i", "in.jsonl")
    assert res.returncode == 2
    assert "error: cannot import module 'no_such_module'" in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli(tmp_path, "run", "cli_flows:nothing", "-i", "in.jsonl")
    assert res.returncode == 2
    assert "has no attribute 'nothing'; workflows it defines: handle, shout" in res.stderr


def test_missing_input_file_is_a_usage_error(tmp_path: Path) -> None:
    res = cli(tmp_path, "run", FLOW, "--input", "missing.jsonl")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: input file 'missing.jsonl' does not exist"
    assert not (tmp_path / "convoy.db").exists()


def test_bad_model_is_a_usage_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = cli(tmp_path, "run", FLOW, "-i", "in.jsonl", "--model", "simm:")
    assert res.returncode == 2
    assert "unknown model provider 'simm'" in res.stderr
    assert "Did you mean 'sim:'?" in res.stderr
    assert "Traceback" not in res.stderr


def test_model_override_and_db_from_env(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", GOOD[:2])
    res = cli(tmp_path, "run", FLOW, "-i", "in.jsonl", "--model", "sim:", "-c", "1",
              env={"CONVOY_DB": "elsewhere.db"})
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout, "completed") == "2"
    assert (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / "convoy.db").exists()


# -- idempotent re-runs ----------------------------------------------------------------


def test_rerun_does_not_duplicate_sessions(tmp_path: Path) -> None:
    first = run_ok(tmp_path)
    ids = session_ids(tmp_path / "convoy.db")
    again = run_ok(tmp_path)
    assert session_ids(tmp_path / "convoy.db") == ids
    assert summary(again.stdout, "sessions run") == "0"
    assert summary(again.stdout, "already finished") == "3 (not re-run: completed 3)"
    assert summary(first.stdout, "cost") != summary(again.stdout, "cost") == "$0"


def test_rerun_resumes_unfinished_sessions(tmp_path: Path) -> None:
    run_ok(tmp_path)
    db = tmp_path / "convoy.db"
    victim = session_ids(db)[1]
    with sqlite3.connect(db) as conn:  # as if the process died before the last step
        before = conn.execute("SELECT output FROM sessions WHERE id=?", (victim,)).fetchone()
        conn.execute("UPDATE sessions SET status='running', output=NULL WHERE id=?", (victim,))
        conn.execute("DELETE FROM journal WHERE session_id=? AND key='0/2'", (victim,))
    res = run_ok(tmp_path)
    assert summary(res.stdout, "sessions run") == "1"
    assert summary(res.stdout, "completed") == "1"
    assert summary(res.stdout, "already finished") == "2 (not re-run: completed 2)"
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT status, output FROM sessions WHERE id=?",
                             (victim,)).fetchone()
        steps = conn.execute("SELECT COUNT(*) FROM journal WHERE session_id=?",
                             (victim,)).fetchone()
    assert after == ("completed", before[0])
    assert steps == (3,)
    assert len(session_ids(db)) == 3


def test_changed_file_is_a_new_run(tmp_path: Path) -> None:
    run_ok(tmp_path)
    run_ok(tmp_path, lines=[*GOOD, {"subject": "new", "body": "one more"}])
    assert len(session_ids(tmp_path / "convoy.db")) == 7


# -- resume ----------------------------------------------------------------------------


def test_resume_finishes_pending_sessions(tmp_path: Path) -> None:
    run_ok(tmp_path)
    db = tmp_path / "convoy.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sessions SET status='pending', output=NULL")
        conn.execute("DELETE FROM journal")
    res = cli(tmp_path, "resume", "--concurrency", "2")
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "completed") == "3"
    res = cli(tmp_path, "resume")
    assert res.returncode == 0
    assert "nothing to resume" in res.stdout


def test_commands_need_an_existing_store(tmp_path: Path) -> None:
    for args in (["resume"], ["replay", "x"], ["sessions", "list"], ["sessions", "show", "x"]):
        res = cli(tmp_path, *args, "--db", "absent.db")
        assert res.returncode == 2, args
        assert "no Convoy store at 'absent.db'" in res.stderr
    assert not (tmp_path / "absent.db").exists()


# -- sessions --------------------------------------------------------------------------


def test_sessions_list(tmp_path: Path) -> None:
    run_ok(tmp_path, lines=[*GOOD, {"subject": "explode", "body": "!"}])
    ids = session_ids(tmp_path / "convoy.db")
    res = cli(tmp_path, "sessions", "list")
    assert res.returncode == 0, res.stderr
    for header in ("id", "workflow", "status", "steps", "tokens in / out", "cost", "created"):
        assert header in res.stdout
    for sid in ids:
        assert sid in res.stdout
    assert "240 / 60" in res.stdout
    assert "completed: 3  failed: 1" in res.stdout
    failed = cli(tmp_path, "sessions", "list", "--status", "failed")
    assert [s for s in ids if s in failed.stdout] == [ids[3]]
    limited = cli(tmp_path, "sessions", "list", "--limit", "2")
    assert "showing 2 of 4 sessions" in limited.stdout
    bad = cli(tmp_path, "sessions", "list", "--status", "done")
    assert bad.returncode == 2
    assert "--status 'done' is not a session status" in bad.stderr


def test_sessions_show(tmp_path: Path) -> None:
    run_ok(tmp_path, lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    ok_id, failed_id = session_ids(tmp_path / "convoy.db")
    res = cli(tmp_path, "sessions", "show", ok_id)
    assert res.returncode == 0, res.stderr
    for text in ("completed", "cli_flows:handle (version 1)", "default", "240 / 60",
                 "→ lookup_account", '"plan":"pro"', "We refunded your last invoice."):
        assert text in res.stdout, text
    assert [k for k in ("0/0", "0/1", "0/2") if k in res.stdout] == ["0/0", "0/1", "0/2"]

    res = cli(tmp_path, "sessions", "show", failed_id)
    assert "reason: failed" in res.stdout
    assert "RuntimeError: the ticket asked to explode" in res.stdout

    data = json.loads(cli(tmp_path, "sessions", "show", ok_id, "--json").stdout)
    assert data["status"] == "completed"
    assert data["output"] == {"category": "billing", "reply": "We refunded your last invoice."}
    assert data["input"]["customer"] == "c-1"
    assert data["usage"] == {"input_tokens": 240, "output_tokens": 60}
    assert [(s["key"], s["kind"], s["target"]) for s in data["journal"]] == [
        ("0/0", "model", "triage"), ("0/1", "tool", "lookup_account"),
        ("0/2", "model", "triage")]

    missing = cli(tmp_path, "sessions", "show", "nope")
    assert missing.returncode == 2
    assert "no session 'nope'" in missing.stderr


# -- replay ----------------------------------------------------------------------------


def test_replay_matches(tmp_path: Path) -> None:
    run_ok(tmp_path, lines=[GOOD[0], {"subject": "explode", "body": "!"}])
    ok_id, failed_id = session_ids(tmp_path / "convoy.db")
    res = cli(tmp_path, "replay", ok_id)
    assert res.returncode == 0, res.stderr
    assert f"session {ok_id}: same result (completed, 3 steps" in res.stdout
    res = cli(tmp_path, "replay", failed_id)
    assert res.returncode == 0, res.stderr
    assert "same result (failed" in res.stdout


def test_replay_detects_divergence(tmp_path: Path) -> None:
    run_ok(tmp_path, lines=[GOOD[0]])
    db = tmp_path / "convoy.db"
    (sid,) = session_ids(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sessions SET output=? WHERE id=?",
                     ('{"category":"other","reply":"tampered"}', sid))
    res = cli(tmp_path, "replay", sid)
    assert res.returncode == 1
    assert "DIVERGED" in res.stdout
    assert "tampered" in res.stdout
    assert "We refunded your last invoice." in res.stdout


@pytest.mark.parametrize("args", [["replay", "nope"], ["sessions", "show", "nope"]])
def test_unknown_session_id(tmp_path: Path, args: list[str]) -> None:
    run_ok(tmp_path, lines=[GOOD[0]])
    res = cli(tmp_path, *args)
    assert res.returncode == 2
    assert "no session 'nope'" in res.stderr
    assert "Traceback" not in res.stderr
