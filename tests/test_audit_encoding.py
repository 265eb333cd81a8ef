"""An audit event's bytes and a digest are canonical JSON (sorted keys, no spaces, UTF-8,
``json.dumps``'s own quoting and number forms), whichever way they are written: the
interceptor's fast encoder (pydantic's) gives byte for byte what ``json.dumps`` gives, for
text that needs escaping, non-ASCII text, any text, every optional field absent or
present, floats in and out of the range where the two writers agree, and the fields that
are not text it hands over to the general encoder."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convoy.audit import AuditEvent, digest
from convoy.audit._event import EVENT_FORMAT, encode_event


def _reference(e: AuditEvent) -> bytes:
    d: dict[str, Any] = {"v": EVENT_FORMAT, "kind": e.kind, "status": e.status, "at": e.at}
    for name in ("session_id", "step_key", "actor", "target"):
        if getattr(e, name) is not None:
            d[name] = getattr(e, name)
    if e.hashes:
        d["hashes"] = dict(e.hashes)
    if e.refs:
        d["refs"] = dict(e.refs)
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


TEXTS = [None, "plain", 'quo"te\\back', "tab\tnew\nline\x01\x7f", "é → 日本 🚀", ""]


@pytest.mark.parametrize("at", [0.0, -0.0, 1.5, 1764513000.123456, 1e16, 9.99e15, 1e-4, 1e-5,
                                1e-7, -2.0, 3, 10**20])
def test_every_shape_of_event_encodes_as_canonical_json(at: float) -> None:
    for actor, target, sid, key in itertools.product(TEXTS, repeat=4):
        if (actor, target, sid, key).count(None) not in (0, 4) and actor == target:
            continue  # keep the product small: 4 fields x 6 texts, minus symmetric repeats
        for hashes, refs in [({}, {}), ({"zeta": "1", "alpha": "é"}, {"b": 'x"', "a": ""})]:
            e = AuditEvent(kind="model_call", status="ok", at=at, session_id=sid,
                           step_key=key, actor=actor, target=target, hashes=hashes, refs=refs)
            assert e.encode() == _reference(e)
            assert AuditEvent.decode(e.encode()) == e


@pytest.mark.parametrize("at", [float("nan"), float("inf"), True])
def test_an_at_json_has_no_plain_form_for_takes_the_general_encoder(at: float) -> None:
    e = AuditEvent(kind="session", status="ok", at=at, actor="a")
    assert e.encode() == _reference(e)


def test_fields_that_are_not_text_take_the_general_encoder() -> None:
    odd: Any = 7
    got = encode_event("session", "ok", 1.0, None, None, odd, None, {"n": odd}, {})
    assert got == b'{"actor":7,"at":1.0,"hashes":{"n":7},"kind":"session","status":"ok","v":1}'


def test_a_digest_is_sha256_of_the_canonical_json() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"y": "é", "x": 'q"'}}
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert digest(value) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert digest(value) == digest(json.loads(canonical))  # key order does not matter


_TEXT = st.text() | st.sampled_from(TEXTS[1:])
_MAP = st.dictionaries(_TEXT, _TEXT, max_size=4)


@settings(max_examples=300, deadline=None)
@given(at=st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
       sid=st.none() | _TEXT, key=st.none() | _TEXT, actor=st.none() | _TEXT,
       target=st.none() | _TEXT, status=_TEXT, hashes=_MAP, refs=_MAP)
def test_any_event_encodes_as_json_dumps_does(at: float, sid: str | None, key: str | None,
                                              actor: str | None, target: str | None,
                                              status: str, hashes: dict[str, str],
                                              refs: dict[str, str]) -> None:
    e = AuditEvent(kind="model_call", status=status, at=at, session_id=sid, step_key=key,
                   actor=actor, target=target, hashes=hashes, refs=refs)
    assert e.encode() == _reference(e)


def test_text_that_is_not_utf_8_fails_as_json_dumps_does() -> None:
    e = AuditEvent(kind="model_call", status="ok", at=1.0, actor="\ud800")
    with pytest.raises(UnicodeEncodeError):
        _reference(e)
    with pytest.raises(UnicodeEncodeError):
        e.encode()

