"""A checkpoint is a document a third party hands you: ``convoy audit verify --checkpoint``
and ``convoy audit check`` read its shape strictly. A field missing, of the wrong JSON type
or out of range is "not a checkpoint" (exit 2, one line naming the field), never an
"invalid signature" and never Python's internals; a well-formed checkpoint whose
signature does not verify stays exit 1."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from convoy import UserError
from convoy.audit import AuditEvent, AuditLog, Checkpoint
from convoy.stores import SQLiteStore
from tests.clikit import cli, one_line_error, workdir  # noqa: F401  (autouse fixture)
from tests.store_backends import FakeClock

T = "acme"


@pytest.fixture
def log(tmp_path: Path) -> dict[str, Any]:
    """A store with a log of 4 entries, a published checkpoint of it and a proof of 1."""

    async def build() -> Checkpoint:
        store = SQLiteStore(tmp_path / "a.db", clock=FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            await alog.append(T, [AuditEvent(kind="tool_call", status="ok", at=1000.0 + i,
                                             session_id="s1", step_key=f"0/{i}")
                                  for i in range(4)])
            return await alog.checkpoint(T)
        finally:
            await store.aclose()

    cp = asyncio.run(build())
    db = str(tmp_path / "a.db")
    proof = cli("audit", "prove", "1", "--db", db, "--tenant", T, "--key",
                str(tmp_path / "audit.key"))
    assert proof.code == 0, proof.stderr
    return {"db": db, "cp": json.loads(cp.to_json()), "proof": json.loads(proof.stdout)}


def _sig(flip: int) -> str:
    return base64.b64encode(bytes([flip]) * 64).decode()


MALFORMED: list[tuple[str, Any, str]] = [
    ("signature", None, "signature"),
    ("signature", 5, "signature"),
    ("signature", "not base64!", "signature"),
    ("signature", base64.b64encode(b"short").decode(), "signature"),
    ("size", -1, "size"),
    ("size", "4", "size"),  # a string, even of the right number
    ("size", 4.0, "size"),
    ("size", True, "size"),
    ("size", 10**30, "size"),
    ("tenant", 5, "tenant"),
    ("tenant", None, "tenant"),
    ("timestamp", "x", "timestamp"),
    ("root", 7, "root"),
    ("root", "AAAA", "root"),  # base64, but not a 32-byte hash
    ("public_key", None, "public_key"),
    ("public_key", "AAAA", "public_key"),
    ("format", "something-else/v1", "format"),
    ("key_id", "0000000000000000", "key_id"),  # not the id of its public key
]


def _cases(good: dict[str, Any]) -> list[tuple[Any, str]]:
    cases: list[tuple[Any, str]] = [({**good, k: v}, why) for k, v, why in MALFORMED]
    cases += [({k: v for k, v in good.items() if k != field}, field)
              for field in ("format", "tenant", "size", "root", "timestamp", "public_key",
                            "signature")]
    return cases


def test_a_malformed_published_checkpoint_is_not_a_checkpoint(log: dict[str, Any],
                                                               tmp_path: Path) -> None:
    path = tmp_path / "published.jsonl"
    for doc, field in _cases(log["cp"]):
        path.write_text(json.dumps(doc) + "\n")
        res = cli("audit", "verify", "--db", log["db"], "--checkpoint", str(path))
        one_line_error(res, 2, f"--checkpoint {str(path)!r} line 1: not a Convoy audit "
                               "checkpoint")
        assert f"{field}:" in res.stderr and "invalid signature" not in res.stderr, \
            (doc, res.stderr)
    # (the JSON type it got, in JSON's words: not Python's 'list', 'NoneType')
    for doc, said in (([], "a JSON object, got an array"), ("x", "a JSON object, got a string"),
                      (7, "a JSON object, got a number"), (None, "a JSON object, got null"),
                      (True, "a JSON object, got true")):
        path.write_text(json.dumps(doc) + "\n")
        one_line_error(cli("audit", "verify", "--db", log["db"], "--checkpoint", str(path)),
                       2, said)
    for doc, said in (([], "got an array"), (None, "got null"), (3.5, "got a number")):
        path.write_text(json.dumps(doc))
        one_line_error(cli("audit", "check", str(path)), 2,
                       f"not a Convoy inclusion proof: expected a JSON object, {said}")


def test_a_proof_whose_checkpoint_is_malformed_is_not_a_proof(log: dict[str, Any],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "proof.json"
    for doc, field in _cases(log["cp"]):
        path.write_text(json.dumps({**log["proof"], "checkpoint": doc}))
        res = cli("audit", "check", str(path))
        one_line_error(res, 2, f"not a Convoy inclusion proof: 'checkpoint.{field}'")
        assert "invalid signature" not in res.stderr, (doc, res.stderr)
    for doc in ([], "x", None):
        path.write_text(json.dumps({**log["proof"], "checkpoint": doc}))
        one_line_error(cli("audit", "check", str(path)), 2,
                       "not a Convoy inclusion proof: 'checkpoint': expected a JSON object")


def test_a_proof_of_an_index_outside_its_tree_says_so(log: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """An index past the tree's size is said as that (exit 1), not as an entry that does
    not hash to its leaf_hash; a proof without its leaf_hash (the entry determines it)
    still checks."""
    path = tmp_path / "proof.json"
    for index in (4, 99):
        path.write_text(json.dumps({**log["proof"], "index": index}))
        one_line_error(cli("audit", "check", str(path)), 1,
                       f"entry index {index} is outside the proof's tree of 4 entries")
    path.write_text(json.dumps({k: v for k, v in log["proof"].items() if k != "leaf_hash"}))
    res = cli("audit", "check", str(path))
    assert res.code == 0, res.stderr


def test_a_well_formed_checkpoint_that_does_not_verify_is_exit_1(log: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    forged = {**log["cp"], "signature": _sig(1)}
    path = tmp_path / "published.jsonl"
    path.write_text(json.dumps(forged) + "\n")
    one_line_error(cli("audit", "verify", "--db", log["db"], "--checkpoint", str(path)), 1,
                   "has an invalid signature")
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps({**log["proof"], "checkpoint": forged}))
    one_line_error(cli("audit", "check", str(proof)), 1, "has an invalid signature")
    # and the untouched ones pass
    path.write_text(json.dumps(log["cp"]) + "\n")
    assert cli("audit", "verify", "--db", log["db"], "--checkpoint", str(path)).code == 0
    proof.write_text(json.dumps(log["proof"]))
    assert cli("audit", "check", str(proof)).code == 0


def test_the_python_api_says_which_field(log: dict[str, Any]) -> None:
    with pytest.raises(UserError, match=r"not a Convoy audit checkpoint .*size: "):
        Checkpoint.from_dict({**log["cp"], "size": "4"})
    with pytest.raises(UserError, match=r"NaN"):
        Checkpoint.from_json(json.dumps(log["cp"]).replace(
            str(log["cp"]["timestamp"]), "NaN"))
    assert Checkpoint.from_dict(log["cp"]).to_dict() == log["cp"]


def _consistency_proof(log: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A consistency proof from the fixture's checkpoint of 4 entries to one of 6."""

    async def grow() -> None:
        store = SQLiteStore(log["db"], clock=FakeClock())
        await store.open()
        try:
            alog = AuditLog(store, key_path=tmp_path / "audit.key", clock=FakeClock())
            await alog.append(T, [AuditEvent(kind="tool_call", status="ok", at=2000.0 + i,
                                             session_id="s2", step_key=f"0/{i}")
                                  for i in range(2)])
            await alog.checkpoint(T)
        finally:
            await store.aclose()

    asyncio.run(grow())
    res = cli("audit", "consistency", "4", "--db", log["db"], "--tenant", T)
    assert res.code == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["proof"], doc
    return doc


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_proof_hash_that_is_not_a_sha256_hash_is_not_a_proof(
        log: dict[str, Any], tmp_path: Path, size: int) -> None:
    """A hash of a proof's path (or its leaf_hash) that is base64 but not of 32 bytes is a
    field out of range: not a proof (exit 2, one line naming the field), as a
    checkpoint's root of the wrong length is; not a proof that does not hold (exit 1).
    Of a consistency proof too, called that."""
    path = tmp_path / "proof.json"
    bad = base64.b64encode(b"x" * size).decode()
    good = log["proof"]
    said = f"not a SHA-256 hash ({size} bytes, not 32)"
    path.write_text(json.dumps({**good, "proof": [*good["proof"][:-1], bad]}))
    last = len(good["proof"]) - 1
    one_line_error(cli("audit", "check", str(path)), 2,
                   f"not a Convoy inclusion proof: 'proof.{last}': {said}")
    path.write_text(json.dumps({**good, "leaf_hash": bad}))
    one_line_error(cli("audit", "check", str(path)), 2,
                   f"not a Convoy inclusion proof: 'leaf_hash': {said}")
    consistency = _consistency_proof(log, tmp_path)
    path.write_text(json.dumps({**consistency, "proof": [bad, *consistency["proof"][1:]]}))
    one_line_error(cli("audit", "check", str(path)), 2,
                   f"not a Convoy consistency proof: 'proof.0': {said}")


def test_a_proof_hash_that_is_not_base64_names_its_kind_of_proof(
        log: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "proof.json"
    good = log["proof"]
    path.write_text(json.dumps({**good, "leaf_hash": "not base64!"}))
    one_line_error(cli("audit", "check", str(path)), 2,
                   "not a Convoy inclusion proof: 'leaf_hash': not base64")
    consistency = _consistency_proof(log, tmp_path)
    path.write_text(json.dumps({**consistency, "proof": ["not base64!"]}))
    one_line_error(cli("audit", "check", str(path)), 2,
                   "not a Convoy consistency proof: 'proof.0': not base64")


def test_a_directory_given_for_a_proof_or_checkpoint_says_what_to_give(
        tmp_path: Path, log: dict[str, Any]) -> None:
    """'adir': Is a directory (a new user's trial): the line says what file is wanted."""
    (tmp_path / "adir").mkdir()
    one_line_error(cli("audit", "check", str(tmp_path / "adir")), 2,
                   "is a directory: give the file a proof was written to ('convoy audit "
                   "prove' and 'consistency' print them)")
    one_line_error(cli("audit", "verify", "--db", str(tmp_path / "a.db"), "--checkpoint",
                       str(tmp_path / "adir")), 2,
                   "is a directory: give the file the output of 'convoy audit checkpoint' "
                   "was appended to")
