"""The audit entry each journal record makes (convoy.audit._journal): the kind, actor,
target, status, hashes and references of every kind of record, never a raw value; bytes
that are canonical JSON (what ``json.dumps`` with sorted keys writes) for any text, the
fast path of a model's answer byte for byte the same as the general one."""

from __future__ import annotations

import json
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

import convoy
from convoy._errors import error_to_record
from convoy.audit import AuditEvent
from convoy.audit import _journal as journal
from convoy.audit._journal import JournalEntries, entry_of
from convoy.stores import StepRecord

FP = "0123456789abcdef0123456789abcdef"


def _sha(text: str) -> str:
    return "sha256:" + sha256(text.encode()).hexdigest()


def _canonical(body: bytes) -> bytes:
    return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _decode(body: bytes | None) -> AuditEvent:
    assert body is not None
    assert body == _canonical(body)
    return AuditEvent.decode(body)


def _failed(kind: str, target: str, exc: BaseException, **kw: Any) -> StepRecord:
    return StepRecord(key="1/2", kind=kind, target=target, status="failed",
                      result=to_json(error_to_record(exc)).decode(), **kw)


def test_a_models_answer_and_its_tool_calls() -> None:
    answer = to_json({"model": "gpt-x", "in": 5, "out": 2, "text": "alice@example.com"}).decode()
    e = _decode(entry_of(StepRecord(key="0/0", kind="model", target="triage",
                                    status="completed", result=answer, input_hash=FP,
                                    input_tokens=5, output_tokens=2, config="cfg:1"),
                         "s1", 1.8e9, "t" * 32))
    assert (e.kind, e.status, e.actor, e.target, e.step_key, e.session_id) == (
        "model_call", "ok", "triage", "gpt-x", "0/0", "s1")
    assert e.hashes == {"prompt": "blake2b:" + FP, "output": _sha(answer)}
    assert e.refs == {"decision": "answer", "tokens": "5+2", "config": "cfg:1",
                      "trace_id": "t" * 32}
    calls = to_json({"model": "gpt-x", "in": 5, "out": 2, "tool_calls": [
        {"id": "c1", "name": "refund", "arguments": "{}"},
        {"id": "c2", "name": "transfer_to_billing", "arguments": "{}"}]}).decode()
    e = _decode(entry_of(StepRecord(key="0/1", kind="model", target="triage",
                                    status="completed", result=calls, input_hash=FP),
                         "s1", 1.8e9))
    assert e.refs["decision"] == "refund,transfer_to_billing" and "trace_id" not in e.refs


def test_a_tool_its_agent_does_not_have_is_named_by_its_hash() -> None:
    """A model's decision names the tools it called: those of its agent's definition as
    they are; any other name (made up by the model: an e-mail address, a person's name)
    is model output and may be personal data, in a log nothing erases, so it is kept as
    its hash (keyed in a data subject's session). Where the definition is not known (a
    process that seals a session it did not run), no name can be told from model output:
    each is a hash. (Review of stop 44: a made-up tool name stayed in the log after the
    subject's erasure.)"""

    @convoy.tool
    def refund(order: str) -> str:
        """Refund an order."""
        return order

    billing = convoy.Agent(name="billing")
    triage = convoy.Agent(name="triage", tools=[refund], handoffs=[billing])
    made_up = ["ingrid.q.saxby@example.org", "email_Ingrid_Quellenberg_Saxby"]
    calls = to_json({"model": "gpt-x", "in": 5, "out": 2, "tool_calls": [
        {"id": f"c{i}", "name": n, "arguments": "{}"}
        for i, n in enumerate(["refund", "transfer_to_billing", *made_up])]}).decode()

    def decision(config: str, mac: bytes | None = None) -> str:
        body = entry_of(StepRecord(key="0/1", kind="model", target="triage",
                                   status="completed", result=calls, input_hash=FP,
                                   config=config), "s1", 1.8e9, mac=mac)
        assert body is not None and not any(n.encode() in body for n in made_up), body
        return _decode(body).refs["decision"]

    assert decision(triage.config_id) == ",".join(
        ["refund", "transfer_to_billing", *(_sha(n) for n in made_up)])
    keyed = decision(triage.config_id, mac=b"k" * 32).split(",")
    assert keyed[:2] == ["refund", "transfer_to_billing"]
    assert all(k.startswith("hmac-sha256:") for k in keyed[2:]), keyed
    assert decision("feedfacefeedface") == ",".join(
        _sha(n) for n in ["refund", "transfer_to_billing", *made_up])


def test_every_other_kind_of_record() -> None:
    at = 1.8e9

    def one(r: StepRecord) -> AuditEvent:
        return _decode(entry_of(r, "s", at))

    tool = one(StepRecord(key="k", kind="tool", target="refund", status="completed",
                          result='"done"', input_hash=FP, agent="billing"))
    assert (tool.kind, tool.status, tool.actor, tool.target) == (
        "tool_call", "ok", "billing", "refund")
    assert tool.hashes == {"args": "blake2b:" + FP, "result": _sha('"done"')}
    err = one(_failed("tool", "refund", convoy.ToolError("boom"), agent="billing",
                      input_hash=FP))
    assert (err.kind, err.status, err.hashes) == ("tool_call", "ToolError",
                                                 {"args": "blake2b:" + FP})
    ask = one(_failed("tool", "refund", convoy.ApprovalRequired("ask"), agent="billing"))
    assert (ask.kind, ask.status) == ("approval", "required")
    denied = one(_failed("tool", "refund", convoy.ToolDenied("no", reason="scope"),
                         agent="billing"))
    assert (denied.kind, denied.status) == ("policy_refusal", "scope")
    hand = one(StepRecord(key="k", kind="handoff", target="billing", status="completed",
                          result='{"text":"x"}', input_hash=FP, agent="triage"))
    assert (hand.kind, hand.actor, hand.target, hand.hashes) == (
        "handoff", "triage", "billing", {"payload": _sha('{"text":"x"}')})
    write = one(StepRecord(key="k", kind="state", target="set c:1/last", status="completed",
                           result='{"version":1}', input_hash=FP))
    assert (write.kind, write.target) == ("state_write", "set c:1/last")
    assert write.hashes == {"input": "blake2b:" + FP, "result": _sha('{"version":1}')}
    read = one(StepRecord(key="k", kind="state", target="get c:1/last", status="completed",
                          result="null"))
    assert (read.kind, read.hashes) == ("state_read", {"result": _sha("null")})
    step = one(StepRecord(key="k", kind="effect", target="charge", status="completed",
                          result="1"))
    assert (step.kind, step.target, step.hashes) == ("effect", "charge", {"result": _sha("1")})
    sig = one(StepRecord(key="k", kind="wait", target="go", status="completed", result='"x"'))
    assert (sig.kind, sig.target, sig.hashes) == ("signal", "go", {"payload": _sha('"x"')})
    assert entry_of(StepRecord(key="k", kind="effect", target="charge", status="started"),
                    "s", at) is None
    damaged = one(StepRecord(key="k", kind="tool", target="t", status="failed",
                             result="not json"))
    assert damaged.status == "unknown"


TEXT = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(agent=TEXT, model=TEXT, key=TEXT, sid=TEXT, config=st.one_of(st.none(), TEXT),
       trace=st.one_of(st.none(), TEXT), content=TEXT,
       at=st.one_of(st.floats(min_value=1e-3, max_value=1e12, allow_nan=False),
                    st.floats(min_value=1e-300, max_value=1e300, allow_nan=False)),
       tokens=st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
       fp=st.one_of(st.just(FP), TEXT), actor=st.one_of(st.none(), TEXT))
def test_a_models_answer_takes_the_fast_path_byte_for_byte(
        agent: str, model: str, key: str, sid: str,
        config: str | None, trace: str | None, content: str, at: float,
        tokens: tuple[int, int], fp: str, actor: str | None) -> None:
    result = to_json({"model": model, "in": tokens[0], "out": tokens[1],
                      "text": content}).decode()
    r = StepRecord(key=key, kind="model", target=agent, status="completed", result=result,
                   input_hash=fp, input_tokens=tokens[0], output_tokens=tokens[1],
                   config=config, at=at, agent=actor)  # (the target: the agent, if none)
    fast = entry_of(r, sid, at, trace)
    tap = JournalEntries(sid, trace)  # (the tap's own path: the record's time)
    tap(r)
    assert tap.take() == ([] if fast is None else [fast])
    with pytest.MonkeyPatch.context() as m:
        m.setattr(journal, "_model_answer", lambda *a: None)
        general = entry_of(r, sid, at, trace)
    assert fast == general
    assert general is not None and general == _canonical(general)


@pytest.mark.parametrize("at", [1.8e9, 1e-4, 0.5, 1e16 - 2, 1e-5, 1e16, 1e300, 5e-324])
def test_a_models_answer_at_any_time_is_written_as_json_writes_its_time(at: float) -> None:
    """A time from 1e-4 to 1e16 (a clock's) takes the fast path, any other the general
    one; both write the time as ``json.dumps`` does."""
    result = to_json({"model": "m", "in": 1, "out": 2, "text": "x"}).decode()
    r = StepRecord(key="0/0", kind="model", target="a", status="completed", result=result,
                   input_hash=FP, input_tokens=1, output_tokens=2, at=at)
    fast = journal._model_answer(journal.kept(r), journal._answer_tail("s", None))
    assert (fast is not None) == (1e-4 <= at < 1e16)
    body = entry_of(r, "s", at)
    assert body == _canonical(body) and json.loads(body)["at"] == at


def test_the_definitions_known_outlast_many_made_per_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Definitions made per request (more than the table keeps) do not push out those
    still held, a module's agents (review of stop 44: the table was cleared when full, and
    their tool names were hashed from then on); the newest dropped ones are known too."""
    from convoy.definitions import _agent as agents

    monkeypatch.setattr(agents, "_RECENT_MAX", 20)
    monkeypatch.setattr(agents, "_RECENT", {})

    @convoy.tool
    def lookup(order: str) -> str:
        """Look an order up."""
        return order

    kept = convoy.Agent(name="kept", tools=[lookup])
    for i in range(60):  # made per request, dropped at once
        convoy.Agent(name="request", instructions=f"answer request {i}", tools=[lookup])
    assert agents.callable_names(kept.config_id) == frozenset({"lookup"})
    last = convoy.Agent(name="request", instructions="answer request 59", tools=[lookup])
    config = last.config_id
    del last
    assert agents.callable_names(config) == frozenset({"lookup"})  # (among the newest)


def test_definitions_made_in_many_threads_at_once_are_all_known(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents made per request in a threaded server, past the table's bound: the oldest
    is dropped under a lock (two threads dropping the same one raised KeyError out of
    Agent(...): the second review of stop 44)."""
    import sys
    import threading

    from convoy.definitions import _agent as agents

    monkeypatch.setattr(agents, "_RECENT_MAX", 8)
    monkeypatch.setattr(agents, "_RECENT", {})
    errors: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def make(n: int) -> None:
        try:
            for i in range(600):
                convoy.Agent(name="request", instructions=f"thread {n} request {i}")
        except BaseException as e:  # (what a request would have raised)
            errors.append(e)

    try:
        threads = [threading.Thread(target=make, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == [] and len(agents._RECENT) == 8



@settings(max_examples=2000, deadline=None)
@given(at=st.one_of(st.floats(min_value=1e-4, max_value=1e16, allow_nan=False),
                    st.floats(min_value=1.5e9, max_value=2.5e9),
                    st.floats(allow_nan=False, allow_infinity=True)))
def test_a_cursors_time_is_written_as_repr_writes_it(at: float) -> None:
    """An audit cursor is compared as text with the one another engine (or an earlier
    Convoy) wrote by ``repr``: ``time_text`` writes the same."""
    assert journal.time_text(at) == repr(at)
