"""``convoy run``: a session's identity comes from the input line itself (an id field, or a
content hash), never from the file's name, path or other lines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from convoy.cli._inputs import content_id
from tests.clikit import (
    FLOW,
    GOOD,
    cli,
    run_ok,
    session,
    session_ids,
    summary,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
    write_jsonl,
)

HASHED = re.compile(r"^handle-[0-9a-f]{12}$")


def test_ids_are_content_hashes_so_a_grown_copied_file_runs_only_new_lines() -> None:
    run_ok()
    ids = session_ids()
    assert len(ids) == 3 and all(HASHED.match(i) for i in ids), ids

    # Copy the file elsewhere under another name, reorder it and append two lines.
    Path("more").mkdir()
    grown = [GOOD[2], {"subject": "new", "body": "one more"}, GOOD[0], GOOD[1],
             {"subject": "newer", "body": "and another"}]
    write_jsonl(Path("more/claims.jsonl"), grown)
    res = cli("run", FLOW, "-i", "more/claims.jsonl")
    assert res.code == 0, res.stderr
    assert summary(res.stdout, "sessions run") == "2"
    assert summary(res.stdout, "already finished") == "3 (not re-run: completed 3)"
    assert len(session_ids()) == 5

    shutil.copy("more/claims.jsonl", "copy.jsonl")
    again = cli("run", FLOW, "-i", "copy.jsonl")
    assert summary(again.stdout, "sessions run") == "0"
    assert len(session_ids()) == 5


def test_the_hash_is_of_the_validated_input_and_the_workflow() -> None:
    from cli_flows import handle, shout

    a = content_id(handle, handle.input_adapter.validate_python(GOOD[1]))
    # Same input: key order, spacing and defaults spelled out do not matter.
    b = content_id(handle, handle.input_adapter.validate_python(
        {"body": "cannot log in", "customer": "anonymous", "subject": "login"}))
    assert a == b and HASHED.match(a)
    assert content_id(handle, handle.input_adapter.validate_python(GOOD[0])) != a
    assert content_id(shout, "x").startswith("shout-")
    assert content_id(shout, "x") != content_id(shout, "y")


def test_identical_lines_are_one_session() -> None:
    res = run_ok(lines=[GOOD[0], GOOD[1], GOOD[0], {**GOOD[1]}, GOOD[2]])
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "identical input lines") == \
        "2 (line 3 = line 1, line 4 = line 2: one session each)"
    assert len(session_ids()) == 3


def test_id_field_names_the_sessions() -> None:
    lines: list[object] = [
        {"claim_id": "c-1", **GOOD[0]},
        {"claim_id": "c-2", **GOOD[1]},
        GOOD[2],                                   # line 3: no claim_id
        {"claim_id": "", **GOOD[2]},               # line 4: empty
        {"claim_id": "c-1", **GOOD[2]},            # line 5: duplicate
        {"claim_id": 7, **GOOD[2]},                # line 6: a number is fine
        {"claim_id": ["x"], **GOOD[2]},            # line 7: not a string or integer
    ]
    write_jsonl(Path("claims.jsonl"), lines)
    res = cli("run", FLOW, "-i", "claims.jsonl", "--id-field", "claim_id")
    assert res.code == 0, res.stderr
    assert "line 3: no 'claim_id' field (--id-field) (skipped)" in res.stderr
    assert "line 4: empty 'claim_id' (--id-field) (skipped)" in res.stderr
    assert "line 5: duplicate claim_id 'c-1' (first on line 1) (skipped)" in res.stderr
    assert """line 7: 'claim_id' must be a string or an integer, got ["x"]""" in res.stderr
    assert summary(res.stdout, "sessions run") == "3"
    assert summary(res.stdout, "invalid input lines") == "4 (lines 3, 4, 5, 7)"
    assert session_ids() == ["7", "c-1", "c-2"]
    assert session("c-1").status == "completed"

    # A grown file runs only its new ids; an edited line keeps its id (and its session).
    write_jsonl(Path("claims.jsonl"), [*lines[:2], {"claim_id": "c-3", **GOOD[2]},
                                       {"claim_id": "c-2", "subject": "edited", "body": "x"}])
    res = cli("run", FLOW, "-i", "claims.jsonl", "--id-field", "claim_id")
    assert summary(res.stdout, "sessions run") == "1"
    assert "line 4: duplicate claim_id 'c-2' (first on line 2) (skipped)" in res.stderr
    assert session_ids() == ["7", "c-1", "c-2", "c-3"]
    # An edited line whose id names its session is said (a new user's trial: it got the
    # stored session's result, its new content never run, in silence); the same content
    # with its keys in another order is the same input.
    write_jsonl(Path("claims.jsonl"), [{"claim_id": "c-1", "subject": "edited", "body": "x"},
                                       {**GOOD[1], "claim_id": "c-2"}])
    res = cli("run", FLOW, "-i", "claims.jsonl", "--id-field", "claim_id")
    assert res.code == 0, res.stderr
    assert "line 1: session 'c-1' was started with another input (its id comes from " \
        "--id-field): that input is the session's, and this line's content is not run" \
        in res.stderr, res.stderr
    assert "line 2" not in res.stderr, res.stderr
    assert summary(res.stdout, "invalid input lines") == "0"
    assert json.loads(session("c-1").input) != {"subject": "edited", "body": "x"}


def test_id_field_needs_objects_and_ids_of_other_workflows_are_refused() -> None:
    write_jsonl(Path("words.jsonl"), ['"hello"'])
    res = cli("run", "cli_flows:shout", "-i", "words.jsonl", "--id-field", "id")
    assert "line 1: not a JSON object, so it has no 'id' field (--id-field) (skipped)" \
        in res.stderr

    write_jsonl(Path("claims.jsonl"), [{"claim_id": "c-1", **GOOD[0]}])
    assert cli("run", FLOW, "-i", "claims.jsonl", "--id-field", "claim_id").code == 0
    tamper("UPDATE sessions SET workflow='cli_flows:other'")
    res = cli("run", FLOW, "-i", "claims.jsonl", "--id-field", "claim_id")
    assert res.code == 0, res.stderr
    assert "line 1: session 'c-1' belongs to workflow 'cli_flows:other', not " \
        "'cli_flows:handle' (skipped)" in res.stderr
    assert summary(res.stdout, "sessions run") == "0"


def test_run_help_states_the_identity_rule() -> None:
    text = " ".join(cli("run", "--help").stdout.split())
    assert "--id-field" in text
    assert "content hash" in text


def test_ids_without_a_subject_are_unchanged_and_a_key_gives_other_ids() -> None:
    """The ids of runs without --subject are those earlier Convoy versions gave (their
    sessions are found again); keyed (a subject's), they depend on the key alone."""
    from cli_flows import handle, shout

    login = handle.input_adapter.validate_python(GOOD[1])
    assert content_id(handle, login) == "handle-676374020af5"
    assert content_id(handle, login, "acme") == "handle-b0de98f1a7cf"
    assert content_id(shout, "x") == "shout-24f3bce2374c"
    one, two = b"k" * 32, b"j" * 32
    keyed = content_id(handle, login, key=one)
    assert HASHED.match(keyed) and keyed == content_id(handle, login, key=one)
    assert keyed not in {content_id(handle, login), content_id(handle, login, key=two),
                         content_id(handle, login, "acme", key=one)}


def test_id_field_compares_only_what_a_line_gives() -> None:
    """A review: the same file run again was said to hold lines of another input, where
    the input type filled a time as the line was read (or a default) and coerced a
    number given as text. Only the fields a line gives are compared, as its input type
    reads them."""
    lines: list[object] = [{"claim": "c-1", "amount": "42"}, {"claim": "c-2", "amount": 7}]
    write_jsonl(Path("c.jsonl"), lines)
    args = ("run", "id_flows:claim", "-i", "c.jsonl", "--id-field", "claim")
    assert cli(*args).code == 0
    again = cli(*args)
    assert again.code == 0 and "another input" not in again.stderr, again.stderr
    write_jsonl(Path("c.jsonl"), [lines[0], {"claim": "c-2", "amount": 8}])
    edited = cli(*args)
    assert "line 2: session 'c-2' was started with another input" in edited.stderr, edited
    assert "line 1" not in edited.stderr, edited.stderr

