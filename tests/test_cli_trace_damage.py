"""``convoy trace`` over a chunk of spans edited by hand (or damaged) in every way: each
field of a valid chunk with the wrong type, missing, a huge number, nested junk. The
command never ends in a traceback: it shows the value safely, or leaves the chunk out
(another chunk reads) or fails (none does), in one line in plain words, never a Python
exception's name or text (``docs/how-to/observability.md``, "The store")."""

from __future__ import annotations

import copy
import json
import random
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clikit import (
    GOOD,
    cli,
    run_live_traced,
    tamper,
    workdir,  # noqa: F401  (autouse fixture)
)

DAMAGED = "the store was edited or damaged"
#: What a line in plain words never holds: a Python exception's name or its wording.
PYTHON = re.compile(r"[A-Z][a-zA-Z]*(Error|Exception)\b|object has no attribute|"
                    r"unknown format code|not subscriptable|unhashable|not iterable|"
                    r"values to unpack|index out of range|'NoneType'|Traceback")

JUNK: list[Any] = [None, "abc", 10**40, -(10**40), -1, 1.5, float("1e300"), True, [],
                   {}, [[["x"]]], {"a": [1, {"b": None}]}, "\x1b[31mred", 99]


def _chunk() -> tuple[str, str, Any]:
    """A traced session's id, and the key and decoded value of its first chunk of spans."""
    [sid] = run_live_traced([GOOD[0]])
    with sqlite3.connect("convoy.db") as conn:
        key, value = conn.execute("SELECT key, value FROM kv WHERE namespace=? ORDER BY key",
                                  (f"trace:{sid}",)).fetchone()
    conn.close()
    return sid, key, json.loads(value)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a decoded chunk (the chunk itself included)."""
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


_GONE = object()


def _edited(chunk: Any, path: tuple[Any, ...], new: Any) -> Any:
    """``chunk`` with the value at ``path`` replaced by ``new`` (``_GONE``: removed)."""
    if not path:
        return new if new is not _GONE else {}
    out = copy.deepcopy(chunk)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if new is _GONE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


def _check(sid: str, shown: str) -> None:
    for args in ((), ("--json",)):
        res = cli("trace", sid, *args)  # (an exception that escapes fails the test)
        assert res.code in (0, 1), (shown, res.code, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) <= 1, (shown, res.stderr)
        for line in lines:
            assert not PYTHON.search(line), (shown, line)
            # (a version number this Convoy does not know: a later Convoy wrote it)
            assert DAMAGED in line or "(upgrade Convoy)" in line, (shown, line)
        if res.code == 1:
            assert lines and (lines[0].startswith("error: the spans kept for session")
                              or "(upgrade Convoy)" in lines[0]), (shown, res.stderr)
        elif args:
            json.loads(res.stdout)
        else:
            assert "trace " in res.stdout, (shown, res.stdout)


def test_a_chunk_damaged_in_any_way_is_shown_safely_or_left_out_in_one_line() -> None:
    sid, key, chunk = _chunk()
    edits = [(p, v) for p in _paths(chunk) for v in [_GONE, *JUNK] if p or v is not _GONE]
    rng = random.Random(7)
    picked = rng.sample(edits, min(len(edits), 60))
    # Every top-level field and every field of the first span and shape, always
    picked += [(p, v) for p, v in edits if len(p) <= 1 or (p[:2] in (("spans", 0),
                                                                     ("shapes", 0))
               and len(p) == 3)]
    for path, value in picked:
        edited = _edited(chunk, path, value)
        text = json.dumps(edited)
        tamper("UPDATE kv SET value=? WHERE namespace=? AND key=?", text, f"trace:{sid}", key)
        _check(sid, f"{path} = {'(removed)' if value is _GONE else repr(value)[:40]}")


def _span_attrs(chunk: Any, name: str) -> dict[str, Any]:
    """The own attributes of the first span of the shape named ``name``."""
    shape = next(s[0] for s in chunk["shapes"] if s[1] == name)
    return next(s[6] for s in chunk["spans"] if s[0] == shape)


@pytest.mark.parametrize(("attr", "value", "seen"), [
    pytest.param("gen_ai.usage.output_tokens", _GONE, "120+? tokens", id="no-output-tokens"),
    pytest.param("gen_ai.usage.input_tokens", "many", "'many'+30 tokens", id="tokens-text"),
    pytest.param("convoy.cost_usd", "abc", "cost 'abc'", id="cost-text"),
    pytest.param("convoy.cost_usd", [1], "cost [1]", id="cost-list"),
    pytest.param("convoy.step.key", {"a": 1}, "key {'a': 1}", id="key-object"),
])
def test_an_attribute_of_the_wrong_kind_is_shown_as_it_is(attr: str, value: Any,
                                                          seen: str) -> None:
    sid, key, chunk = _chunk()
    attrs = _span_attrs(chunk, "chat cli")
    if value is _GONE:
        del attrs[attr]
    else:
        attrs[attr] = value
    tamper("UPDATE kv SET value=? WHERE namespace=? AND key=?", json.dumps(chunk),
           f"trace:{sid}", key)
    res = cli("trace", sid)
    assert res.code == 0 and not res.stderr, res.stderr
    assert seen in res.stdout, res.stdout


@pytest.mark.parametrize(("edit", "said"), [
    pytest.param(lambda c: c["spans"][0].__setitem__(3, 10**40),
                 "a span's start or end is not a time", id="start-huge"),
    pytest.param(lambda c: c["spans"][0].__setitem__(0, 99),
                 "a span names shape 99, which the chunk does not have", id="shape-unknown"),
    pytest.param(lambda c: c.__setitem__("spans", {"a": 1}),
                 "its fields are not what Convoy writes", id="spans-object"),
    pytest.param(lambda c: c["spans"][0].__setitem__(6, ["x"]),
                 "its fields are not what Convoy writes", id="attrs-list"),
])
def test_a_chunk_that_cannot_be_read_is_said_in_plain_words(edit: Any, said: str) -> None:
    sid, key, chunk = _chunk()
    edit(chunk)
    tamper("UPDATE kv SET value=? WHERE namespace=? AND key=?", json.dumps(chunk),
           f"trace:{sid}", key)
    res = cli("trace", sid)
    assert res.code in (0, 1), res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert said in line and DAMAGED in line, line
    assert not PYTHON.search(line), line


def test_spans_whose_parents_go_round_in_a_circle_are_shown_too() -> None:
    """A span edited to be its own parent, or two each other's: every span is a row."""
    from rich.console import Console

    from convoy.cli._trace import waterfall

    def span(sid: str, parent: str | None, start: int) -> dict[str, object]:
        return {"name": f"step {sid}", "trace_id": "t" * 32, "span_id": sid,
                "parent_id": parent, "start": start, "end": start + 10, "kind": "internal",
                "status": "ok", "attrs": {}, "message": None, "links": [], "events": []}

    spans = [span("a", None, 0), span("b", "b", 1), span("c", "d", 2), span("d", "c", 3)]
    console = Console(width=200, record=True)
    console.print(waterfall(spans))  # type: ignore[arg-type]
    text = console.export_text()
    assert all(f"step {sid}" in text for sid in "abcd"), text


def test_a_chunk_of_a_newer_format_names_its_session() -> None:
    """A chunk a later Convoy wrote (its format version unknown here): the one line names
    the session, as a damaged chunk's does (it did not)."""
    sid, key, chunk = _chunk()
    with sqlite3.connect("convoy.db") as conn:
        conn.execute("UPDATE kv SET value=? WHERE namespace=? AND key=?",
                     (json.dumps({**chunk, "v": 99}), f"trace:{sid}", key))
    conn.close()
    res = cli("trace", sid)
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"the spans kept for session '{sid}': stored spans are in format 99" in \
        res.stderr and "(upgrade Convoy)" in res.stderr, res.stderr


def test_a_span_that_ends_before_it_starts_shows_no_negative_time() -> None:
    """New user's trial: a span timed by a wall clock stepped back while it ran (its end
    before its start) showed a negative duration ("-5.0 ms"). It shows "?" for how long
    it took, and its detail says the clock stepped back, and by how much; the trace's
    total is never negative either; --json keeps the times as recorded."""
    sid, key, chunk = _chunk()
    row = chunk["spans"][-1]
    row[4] = row[3] - 5_000_000  # (ends 5 ms before it starts)
    tamper("UPDATE kv SET value=? WHERE namespace=? AND key=?", json.dumps(chunk),
           f"trace:{sid}", key)
    res = cli("trace", sid)
    assert res.code == 0 and res.stderr == "", res.stderr
    assert not re.search(r"-\d+(\.\d+)? ?(ms|s)\b", res.stdout), res.stdout
    text = " ".join(res.stdout.split())  # (a long detail folds)
    assert "clock stepped back: ends 5.0 ms before it starts" in text, res.stdout
    rows = [line for line in res.stdout.splitlines() if "clock stepped" in line]
    assert rows and " ? " in rows[0], res.stdout
    spans = json.loads(cli("trace", sid, "--json").stdout)
    assert any(s["end"] == s["start"] - 5_000_000 for s in spans)


def test_a_trace_whose_every_span_ends_before_the_first_starts_has_no_negative_total(
) -> None:
    from rich.console import Console

    from convoy.cli._trace import took, waterfall

    spans = [{"span_id": "a", "parent_id": None, "name": "invoke_workflow w",
              "start": 10_000_000, "end": 2_000_000, "status": "ok", "attrs": {},
              "message": None}]
    console = Console(width=120, record=True, color_system=None)
    console.print(waterfall(spans))
    text = console.export_text()
    assert "clock stepped back: ends 8.0 ms before it starts" in text and "-8" not in text
    assert took(2_000_000 - 10_000_000) == "?" and took(0) == "0.0 ms"
