"""Which key signs, and what ``convoy audit verify`` vouches for (a review by a new user):

- ``checkpoint`` and ``prove`` refuse a ``--key`` file that exists but is not the key that
  signed the tenant's checkpoints, as they refuse a missing one; a stored signed
  checkpoint is never replaced by another signature of the same size (not even by a
  ``--new-key`` rotation);
- ``verify`` with a pinned key fails on a store holding no checkpoint that key signed (a
  wiped log, the wrong ``--db``), the same with and without ``--tenant``; an empty
  ``--checkpoint`` file is refused; published checkpoints that do not match point at
  ``--db``;
- messages: ``verify --key`` of a file that is no key does not offer to create one, and a
  proof whose ``entry`` is not base64 names the field.

Real SQLite stores, the command line in-process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy.audit import AuditEvent, AuditLog, Checkpoint, entry_leaf
from convoy.stores import SQLiteStore
from tests.clikit import cli, workdir  # noqa: F401  (autouse fixture)
from tests.store_backends import FakeClock

T = "acme"


def _event(i: int) -> AuditEvent:
    return AuditEvent(kind="tool_call", status="ok", at=1000.0 + i, session_id="s1",
                      step_key=f"0/{i}", actor="clerk", target=f"tool-{i:03d}")


def _append(db: Path, start: int, stop: int, tenant: str = T, shift: int = 0) -> None:
    async def go() -> None:
        store = SQLiteStore(db, clock=FakeClock())
        await store.open()
        try:
            await AuditLog(store, clock=FakeClock()).append(
                tenant, [_event(i + shift) for i in range(start, stop)])
        finally:
            await store.aclose()

    asyncio.run(go())


def _sql(db: Path, *statements: str) -> list[Any]:
    conn = sqlite3.connect(db)
    rows: list[Any] = []
    with conn:
        for s in statements:
            rows = conn.execute(s).fetchall()
    conn.close()
    return rows


def _kept(db: Path) -> list[tuple[int, str]]:
    return [(int(size), str(body)) for size, body in _sql(
        db, "SELECT size, body FROM audit_checkpoints WHERE tenant='acme' ORDER BY size")]


@pytest.fixture
def log(tmp_path: Path) -> dict[str, Any]:
    """A log of 8 entries with a checkpoint (audit.key) of it, published to a file, and
    another key file (other.key) that signed another store's checkpoint (of another log of
    the same tenant, 10 entries)."""
    db = tmp_path / "a.db"
    _append(db, 0, 8)
    _append(tmp_path / "other.db", 0, 10, shift=100)
    signed = cli("audit", "checkpoint", "--db", str(db), "--tenant", T, "--key",
                 str(tmp_path / "audit.key"))
    assert signed.code == 0, signed.stderr
    other = cli("audit", "checkpoint", "--db", str(tmp_path / "other.db"), "--tenant", T,
                "--key", str(tmp_path / "other.key"))
    assert other.code == 0, other.stderr
    published = tmp_path / "published.jsonl"
    published.write_text(signed.stdout)
    return {"db": db, "key": tmp_path / "audit.key", "other": tmp_path / "other.key",
            "cp": Checkpoint.from_json(signed.stdout), "published": published}


def _one_line(r: Any, code: int, *said: str) -> None:
    text = r.stderr.strip()
    assert r.code == code, (r.code, r.stdout, text)
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    for s in said:
        assert s in text, text


def _verifies(log: dict[str, Any]) -> None:
    r = cli("audit", "verify", "--db", str(log["db"]), "--key", str(log["key"]))
    assert r.code == 0, r.stderr


# --- 1. the key that signs --------------------------------------------------------------

def test_checkpoint_with_another_existing_key_is_refused(log: dict[str, Any]) -> None:
    _append(log["db"], 8, 10)  # grown: a checkpoint of size 10 would be a new one
    before = _kept(log["db"])
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["other"]))
    _one_line(r, 2, f"signed by key {log['cp'].key_id}: pass the key file that signed them",
              "--new-key")
    assert r.stdout == "" and _kept(log["db"]) == before
    _verifies(log)


def test_checkpoint_with_another_key_never_overwrites_one_of_the_same_size(
        log: dict[str, Any]) -> None:
    before = _kept(log["db"])
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["other"]))
    _one_line(r, 2, f"signed by key {log['cp'].key_id}")
    assert _kept(log["db"]) == before
    _verifies(log)


def test_prove_says_when_it_signed_a_checkpoint(log: dict[str, Any]) -> None:
    """A checkpoint prove signs (none covered the entry) is kept in the store and never
    reaches the published file unless someone knows of it: prove says so on stderr (it
    signed in silence); a proof against a kept checkpoint says nothing."""
    db, key = str(log["db"]), str(log["key"])
    kept = cli("audit", "prove", "3", "--db", db, "--tenant", T, "--key", key)
    assert kept.code == 0 and kept.stderr == "", kept.stderr
    _append(log["db"], 8, 10)
    signed = cli("audit", "prove", "9", "--db", db, "--tenant", T, "--key", key)
    assert signed.code == 0, signed.stderr
    [note] = signed.stderr.strip().splitlines()
    assert note.startswith("note: no checkpoint covered entry 9: signed one of size 10 (key "
                           f"{log['cp'].key_id}) and kept it in the store; publish it"), note
    # the command it names runs as pasted: with the key it signs with (new user's trial)
    newest = note.split("; ")[-1]
    assert newest.startswith("'convoy audit checkpoint ") and f"--key {key}" in newest, note
    assert json.loads(signed.stdout)["checkpoint"]["size"] == 10


def test_prove_with_another_existing_key_is_refused(log: dict[str, Any]) -> None:
    _append(log["db"], 8, 10)  # entry 9: no checkpoint covers it, prove would sign one
    before = _kept(log["db"])
    r = cli("audit", "prove", "9", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["other"]))
    _one_line(r, 2, f"signed by key {log['cp'].key_id}: pass the key file that signed them")
    assert r.stdout == "" and _kept(log["db"]) == before
    _verifies(log)
    # A kept checkpoint covers entry 3: nothing is signed, but a --key given is still
    # checked (a mistyped path, a file that is no key, another store's key): refused in
    # one line, as checkpoint and verify refuse them. Without --key, or with the signer's,
    # the proof is printed.
    (log["db"].parent / "junk.key").write_text("not a key")
    for wrong, said in ((log["other"], "leave --key out: a kept checkpoint covers entry 3"),
                        (log["db"].parent / "typo.key", "does not exist"),
                        (log["db"].parent / "junk.key", "junk.key")):
        r = cli("audit", "prove", "3", "--db", str(log["db"]), "--tenant", T, "--key",
                str(wrong))
        _one_line(r, 2, said)
        assert r.stdout == "" and not (log["db"].parent / "typo.key").exists()
    for key in ((), ("--key", str(log["key"]))):
        covered = cli("audit", "prove", "3", "--db", str(log["db"]), "--tenant", T, *key)
        assert covered.code == 0, covered.stderr
    assert _kept(log["db"]) == before


def test_checkpoint_again_keeps_the_stored_one(log: dict[str, Any]) -> None:
    """The log has not grown: the kept checkpoint is printed again, never re-signed."""
    before = _kept(log["db"])
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["key"]))
    assert r.code == 0, r.stderr
    assert Checkpoint.from_json(r.stdout) == log["cp"]
    assert "has not grown" in r.stderr
    assert _kept(log["db"]) == before


def test_a_rotation_never_replaces_a_checkpoint_of_the_same_size(
        log: dict[str, Any], tmp_path: Path) -> None:
    before = _kept(log["db"])
    new = tmp_path / "new.key"
    for key in (new, log["other"]):  # a key made for it, or one that exists
        r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
                str(key), "--new-key")
        _one_line(r, 2, "checkpoint of size 8", "is kept", "append")
        assert r.stdout == "" and _kept(log["db"]) == before
    assert not new.exists()
    _verifies(log)
    _append(log["db"], 8, 9)  # grown: the new key signs the next size
    rotated = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
                  str(new), "--new-key")
    assert rotated.code == 0 and new.exists(), rotated.stderr
    kept = _kept(log["db"])
    assert kept[0] == before[0] and [size for size, _ in kept] == [8, 9]
    assert Checkpoint.from_json(kept[1][1]).key_id != log["cp"].key_id


def test_checkpoint_over_a_log_rewritten_at_the_same_size_keeps_the_evidence(
        log: dict[str, Any]) -> None:
    body = _event(99).encode()
    _sql(log["db"], "DELETE FROM audit_log WHERE tenant='acme' AND idx=7")
    conn = sqlite3.connect(log["db"])
    with conn:
        conn.execute("INSERT INTO audit_log (tenant, idx, body, leaf) VALUES (?, ?, ?, ?)",
                     (T, 7, body, entry_leaf(T, 7, body)))
    conn.close()
    before = _kept(log["db"])
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["key"]))
    _one_line(r, 1, "checkpoint of size 8", "convoy audit verify")
    assert r.stdout == "" and _kept(log["db"]) == before
    v = cli("audit", "verify", "--db", str(log["db"]), "--key", str(log["key"]))
    assert v.code == 1 and "forked from its signed checkpoint of size 8" in v.stderr


# --- 2. what verify vouches for ---------------------------------------------------------

WIPE = ("DELETE FROM audit_log", "DELETE FROM audit_head", "DELETE FROM audit_checkpoints")


@pytest.mark.parametrize("tenant", [(), ("--tenant", T)], ids=["every tenant", "--tenant"])
def test_verify_with_a_pinned_key_fails_on_a_wiped_log(log: dict[str, Any],
                                                       tenant: tuple[str, ...]) -> None:
    _sql(log["db"], *WIPE)
    r = cli("audit", "verify", "--db", str(log["db"]), "--key", str(log["key"]), *tenant)
    _one_line(r, 1, f"no checkpoint signed by key {log['cp'].key_id}", "--db")
    public = cli("audit", "verify", "--db", str(log["db"]), "--public-key",
                 log["cp"].public_key, *tenant)
    _one_line(public, 1, f"no checkpoint signed by key {log['cp'].key_id}", "--db")
    # no log to sign at all: the line suggests no checkpoint command (it would fail)
    assert "no audit log in it at all" in r.stderr and "audit checkpoint" not in r.stderr, \
        r.stderr


@pytest.mark.parametrize("tenant", [(), ("--tenant", T)], ids=["every tenant", "--tenant"])
def test_verify_without_a_key_on_a_store_with_no_log_says_so(
        log: dict[str, Any], tenant: tuple[str, ...]) -> None:
    _sql(log["db"], *WIPE)
    r = cli("audit", "verify", "--db", str(log["db"]), *tenant)
    assert r.code == 0, r.stderr
    assert "no audit log" in r.stdout and "--db" in r.stdout, r.stdout


def test_verify_with_a_pinned_key_fails_on_an_emptied_log(log: dict[str, Any]) -> None:
    _sql(log["db"], "DELETE FROM audit_log", "DELETE FROM audit_checkpoints",
         "UPDATE audit_head SET size=0")
    for tenant in ((), ("--tenant", T)):
        r = cli("audit", "verify", "--db", str(log["db"]), "--key", str(log["key"]), *tenant)
        _one_line(r, 1, f"no checkpoint signed by key {log['cp'].key_id}")


def test_verify_with_an_empty_checkpoint_file_is_refused(log: dict[str, Any],
                                                         tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = cli("audit", "verify", "--db", str(log["db"]), "--checkpoint", str(empty))
    _one_line(r, 2, "'" + str(empty) + "'", "holds no checkpoint")


def test_published_checkpoints_of_another_store_say_to_check_db(log: dict[str, Any],
                                                                tmp_path: Path) -> None:
    wrong = tmp_path / "other.db"  # acme's log there is another one
    r = cli("audit", "verify", "--db", str(wrong), "--checkpoint", str(log["published"]))
    _one_line(r, 1, "forked", "--db")
    nothing = tmp_path / "empty.db"
    _append(nothing, 0, 1, tenant="globex")
    r = cli("audit", "verify", "--db", str(nothing), "--checkpoint", str(log["published"]))
    _one_line(r, 1, "every entry was cut off", "--db")


# --- 3. messages ------------------------------------------------------------------------

def test_verify_with_a_file_that_is_no_key_does_not_offer_to_create_one(
        log: dict[str, Any], tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('hello')\n")
    r = cli("audit", "verify", "--db", str(log["db"]), "--key", str(app))
    _one_line(r, 2, "'" + str(app) + "'", "not an unencrypted PEM private key")
    assert "create" not in r.stderr, r.stderr


def test_a_proof_whose_entry_is_not_base64_names_the_field(log: dict[str, Any],
                                                           tmp_path: Path) -> None:
    proof = cli("audit", "prove", "3", "--db", str(log["db"]), "--tenant", T, "--key",
                str(log["key"]))
    doc = json.loads(proof.stdout)
    path = tmp_path / "t8.json"
    for field, value in (("entry", "not base64!"), ("proof", ["%%%"])):
        path.write_text(json.dumps({**doc, field: value}))
        r = cli("audit", "check", str(path))
        _one_line(r, 2, "not a Convoy inclusion proof", f"'{field}")


def test_checkpoint_of_a_wiped_log_signs_nothing(log: dict[str, Any]) -> None:
    """Entries and checkpoints deleted, the head row left at 0: signing it would make
    `verify --key` pass over the wiped log again."""
    _sql(log["db"], "DELETE FROM audit_log", "DELETE FROM audit_checkpoints",
         "UPDATE audit_head SET size = 0")
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["key"]))
    _one_line(r, 2, "the audit log of tenant 'acme' is empty: there is nothing to sign")
    assert _kept(log["db"]) == []
    r = cli("audit", "verify", "--db", str(log["db"]), "--key", str(log["key"]))
    assert r.code == 1, (r.code, r.stderr)  # (nothing that key signed: a wiped log)


# --- 4. a key rotation: pinning the old key and the new one -----------------------------

@pytest.fixture
def rotated(log: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """``log`` grown to 11 entries and signed by a new key (new.key, ``--new-key``): the
    checkpoint of size 8 by the old key, that of size 11 by the new one."""
    _append(log["db"], 8, 11)
    new = tmp_path / "new.key"
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key", str(new),
            "--new-key")
    assert r.code == 0, r.stderr
    cp = Checkpoint.from_json(r.stdout)
    return {**log, "new": new, "new_cp": cp, "old_public": log["cp"].public_key,
            "new_public": cp.public_key, "rotation_note": r.stderr}


def _proof(rotated: dict[str, Any], tmp_path: Path, *args: str) -> Path:
    r = cli("audit", *args, "--db", str(rotated["db"]), "--tenant", T)
    assert r.code == 0, r.stderr
    path = tmp_path / f"{args[0]}-{args[1]}.json"
    path.write_text(r.stdout)
    return path


def test_verify_says_when_the_signer_was_not_pinned(rotated: dict[str, Any],
                                                   tmp_path: Path) -> None:
    """Without --key, --public-key or --checkpoint, each checkpoint is checked against
    the key it names, which anyone who can write the store can make: verify says so, and
    names the keys (two here: a rotation, or a forger's; it said nothing, and a log
    rewritten and signed again by another key verified in silence)."""
    db = str(rotated["db"])
    bare = cli("audit", "verify", "--db", db, "--tenant", T)
    assert bare.code == 0, bare.stderr
    [note] = bare.stderr.strip().splitlines()
    assert note.startswith("note: the signer was not pinned") and "2 keys" in note and \
        "more than one" in note and rotated["new_cp"].key_id in note, note
    pinned = cli("audit", "verify", "--db", db, "--tenant", T,
                 "--public-key", rotated["old_public"], "--public-key", rotated["new_public"])
    assert pinned.code == 0 and pinned.stderr == "", pinned.stderr
    published = tmp_path / "published.jsonl"
    published.write_text(rotated["new_cp"].to_json() + "\n")
    anchored = cli("audit", "verify", "--db", db, "--tenant", T, "--checkpoint",
                   str(published))
    assert anchored.code == 0 and anchored.stderr == "", anchored.stderr
    # a checkpoint a pinned key did not sign: what to do, without inviting trust in it
    one = cli("audit", "verify", "--db", db, "--tenant", T,
              "--public-key", rotated["old_public"])
    _one_line(one, 1, "if your own records (not this store) say that key is the tenant's")


def test_a_consistency_proof_across_a_rotation_checks_pinned_with_both_keys(
        rotated: dict[str, Any], tmp_path: Path) -> None:
    proof = _proof(rotated, tmp_path, "consistency", "8")
    old, new = rotated["old_public"], rotated["new_public"]
    both = cli("audit", "check", str(proof), "--public-key", old, "--public-key", new)
    assert both.code == 0, both.stderr
    assert "with entries appended" in both.stdout and "not pinned" not in both.stderr
    # one key pinned: the other checkpoint's signer is named, with how to pin it too
    for pinned, other in ((old, new), (new, old)):
        r = cli("audit", "check", str(proof), "--public-key", pinned)
        _one_line(r, 1, "not by the expected key", f"--public-key {other}")


def test_an_inclusion_proof_checks_with_several_pinned_keys(rotated: dict[str, Any],
                                                            tmp_path: Path) -> None:
    proof = _proof(rotated, tmp_path, "prove", "3")  # the newest covering it: the new key's
    assert json.loads(proof.read_text())["tree_size"] == 11
    both = cli("audit", "check", str(proof), "--public-key", rotated["old_public"],
               "--public-key", rotated["new_public"])
    assert both.code == 0 and "entry 3 of tenant 'acme'" in both.stdout, both.stderr
    r = cli("audit", "check", str(proof), "--public-key", rotated["old_public"])
    _one_line(r, 1, "not by the expected key", f"--public-key {rotated['new_public']}")


def test_check_functions_take_one_key_or_several(rotated: dict[str, Any],
                                                 tmp_path: Path) -> None:
    from convoy import AuditProofError
    from convoy.audit import check_consistency, check_inclusion

    old, new = rotated["old_public"], rotated["new_public"]
    consistency = json.loads(_proof(rotated, tmp_path, "consistency", "8").read_text())
    inclusion = json.loads(_proof(rotated, tmp_path, "prove", "3").read_text())
    first, last = check_consistency(consistency, public_key=[old, new])
    assert (first.size, last.size) == (8, 11)
    assert check_consistency(consistency, public_key=(new, old))[1] == last
    assert check_inclusion(inclusion, public_key=[old, new]).target == "tool-003"
    assert check_inclusion(inclusion, public_key=new).target == "tool-003"  # (one key)
    for key in (old, [old]):
        with pytest.raises(AuditProofError, match="not by the expected key"):
            check_consistency(consistency, public_key=key)
        with pytest.raises(AuditProofError, match="not by the expected key"):
            check_inclusion(inclusion, public_key=key)
    with pytest.raises(AuditProofError, match="not by any of the expected keys"):
        check_inclusion(inclusion, public_key=[old, _public(rotated["other"])])


def _public(key: Path) -> str:
    from convoy.audit import load_or_create_key
    from convoy.audit._keys import public_key_text

    return public_key_text(load_or_create_key(key).public_key())


@pytest.mark.parametrize(("args", "name"), [
    (("checkpoint", "--key", "a.key", "--key", "b.key"), "--key"),
    (("prove", "3", "--key", "a.key", "--key", "b.key"), "--key"),
    (("verify", "--tenant", T, "--tenant", "globex"), "--tenant"),
    (("checkpoint", "--key", "a.key", "-t", T, "--tenant", "globex"), "--tenant"),
    (("list", "--limit", "1", "--limit", "2"), "--limit"),
    (("consistency", "8", "--db", "a.db", "--db", "b.db"), "--db"),
    (("seal", "--busy-timeout", "1", "--busy-timeout", "2"), "--busy-timeout"),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, tuple) else a)
def test_a_repeated_single_value_option_is_refused(args: tuple[str, ...], name: str) -> None:
    """Click would keep the last value silently (``--key A --key B`` pins or signs with B
    only): refused in one line, nothing done."""
    r = cli("audit", *args)
    _one_line(r, 2, f"'{name}'", "more than once")
    assert r.stdout == "" and not Path("a.key").exists() and not Path("b.key").exists()


def test_verify_pins_every_key_file_given(rotated: dict[str, Any]) -> None:
    db = str(rotated["db"])
    for pins in (("--key", str(rotated["key"]), "--key", str(rotated["new"])),
                 ("--key", str(rotated["new"]), "--public-key", rotated["old_public"])):
        r = cli("audit", "verify", "--db", db, *pins)
        assert r.code == 0 and "2 signed checkpoints matched" in r.stdout, r.stderr
    # the new key alone: the old key's checkpoint fails, and the line says how to pin both
    r = cli("audit", "verify", "--db", db, "--key", str(rotated["new"]))
    _one_line(r, 1, "checkpoint of size 8", "not by the expected key",
              f"--public-key {rotated['old_public']}")


def test_verify_pins_every_key_file_listed_in_the_environment(rotated: dict[str, Any]
                                                              ) -> None:
    """``$CONVOY_AUDIT_KEY`` lists several key files as ``$PATH`` does (``:``)."""
    both = f"{rotated['key']}:{rotated['new']}"
    for listed in (both, f":{both}:", f"{rotated['key']}::{rotated['new']}"):
        r = cli("audit", "verify", "--db", str(rotated["db"]),
                env={"CONVOY_AUDIT_KEY": listed})
        assert r.code == 0 and "2 signed checkpoints matched" in r.stdout, r.stderr
    r = cli("audit", "verify", "--db", str(rotated["db"]), env={"CONVOY_AUDIT_KEY": "::"})
    _one_line(r, 2, "CONVOY_AUDIT_KEY names no key file")
    # a key file the variable names is named as the variable's, not as an option's
    r = cli("audit", "verify", "--db", str(rotated["db"]),
            env={"CONVOY_AUDIT_KEY": f"{rotated['key']}:gone.key"})
    _one_line(r, 2, "$CONVOY_AUDIT_KEY 'gone.key' does not exist")
    assert "--key" not in r.stderr, r.stderr
    r = cli("audit", "checkpoint", "--db", str(rotated["db"]), "--tenant", T,
            env={"CONVOY_AUDIT_KEY": "typo.key"})
    _one_line(r, 2, "$CONVOY_AUDIT_KEY 'typo.key' does not exist, and the checkpoints")
    assert "--key 'typo.key'" not in r.stderr, r.stderr


def test_the_rotation_note_says_how_to_pin_both_keys(rotated: dict[str, Any]) -> None:
    note = rotated["rotation_note"]
    assert len(note.strip().splitlines()) == 1, note
    assert "pins it" not in note  # (the new key alone fails on the old checkpoints)
    start = note.index("'convoy audit verify")
    suggested = note[start + 1:note.index("'", start + 1)]
    assert f"--public-key {rotated['old_public']}" in suggested, note
    words = suggested.split()[1:]
    assert words[:2] == ["audit", "verify"]
    r = cli(*words)  # it runs as shown
    assert r.code == 0 and "2 signed checkpoints matched" in r.stdout, (suggested, r.stderr)


def test_a_rotation_to_an_existing_key_file_says_how_to_pin_both_keys(
        log: dict[str, Any]) -> None:
    _append(log["db"], 8, 11)
    r = cli("audit", "checkpoint", "--db", str(log["db"]), "--tenant", T, "--key",
            str(log["other"]), "--new-key")
    assert r.code == 0, r.stderr
    _one_line(r, 0, f"--public-key {log['cp'].public_key}", "'convoy audit verify")


def test_prove_with_the_old_key_proves_against_its_checkpoint(rotated: dict[str, Any],
                                                              tmp_path: Path) -> None:
    db = str(rotated["db"])
    old, new = rotated["old_public"], rotated["new_public"]
    for pin, size in ((("--key", str(rotated["key"])), 8), (("--public-key", old), 8),
                      (("--key", str(rotated["new"])), 11), (("--public-key", new), 11),
                      (("--public-key", old, "--public-key", new), 11), ((), 11)):
        r = cli("audit", "prove", "3", "--db", db, "--tenant", T, *pin)
        assert r.code == 0 and r.stderr == "", (pin, r.stderr)
        assert json.loads(r.stdout)["tree_size"] == size, pin
    r = cli("audit", "prove", "3", "--db", db, "--tenant", T, "--key", str(rotated["key"]))
    path = tmp_path / "p3.json"
    path.write_text(r.stdout)
    assert cli("audit", "check", str(path), "--public-key", old).code == 0


def test_prove_with_a_key_that_signed_no_checkpoint_covering_the_entry_says_so(
        rotated: dict[str, Any], tmp_path: Path) -> None:
    """Entry 9 is covered only by the new key's checkpoint: the proof is against it, and
    one line names its key and how to pin it."""
    db = str(rotated["db"])
    for pin in (("--key", str(rotated["key"])), ("--public-key", rotated["old_public"])):
        r = cli("audit", "prove", "9", "--db", db, "--tenant", T, *pin)
        _one_line(r, 0, f"key {rotated['new_cp'].key_id}", "checkpoint of size 11",
                  f"--public-key {rotated['new_public']}")
        assert json.loads(r.stdout)["tree_size"] == 11
    assert _kept(rotated["db"])[-1][0] == 11  # nothing signed


def test_prove_with_a_public_key_that_signed_nothing_here_is_refused(
        rotated: dict[str, Any]) -> None:
    r = cli("audit", "prove", "3", "--db", str(rotated["db"]), "--tenant", T,
            "--public-key", _public(rotated["other"]))
    _one_line(r, 2, "--public-key", "signed no checkpoint of tenant 'acme'")
    assert r.stdout == ""


def test_audit_log_prove_against_a_pinned_key(rotated: dict[str, Any]) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        store = SQLiteStore(rotated["db"], clock=FakeClock())
        await store.open()
        try:
            log = AuditLog(store, clock=FakeClock())
            return (await log.prove(T, 3, public_key=rotated["old_public"]),
                    await log.prove(T, 3))
        finally:
            await store.aclose()

    pinned, newest = asyncio.run(go())
    assert (pinned["tree_size"], newest["tree_size"]) == (8, 11)


def test_prove_with_the_old_key_of_an_entry_no_checkpoint_covers_names_the_new_key(
        rotated: dict[str, Any]) -> None:
    """Signing with the old key would be a rotation back: refused, naming the key that
    signs now."""
    _append(rotated["db"], 11, 12)
    r = cli("audit", "prove", "11", "--db", str(rotated["db"]), "--tenant", T, "--key",
            str(rotated["key"]))
    _one_line(r, 2, "before a key rotation", f"key {rotated['new_cp'].key_id} signs them now")
    assert "--new-key" not in r.stderr and _kept(rotated["db"])[-1][0] == 11


def test_checkpoint_and_prove_sign_with_the_newest_key_listed_in_the_environment(
        rotated: dict[str, Any]) -> None:
    """``$CONVOY_AUDIT_KEY`` set for ``verify`` (``old.key:new.key``) is one list for every
    audit command: ``checkpoint`` and ``prove`` sign with its last key, the newest, never
    with a file named after the whole list."""
    db = str(rotated["db"])
    both = f"{rotated['key']}:{rotated['new']}"
    _append(rotated["db"], 11, 13)
    for listed in (both, both + ":"):
        r = cli("audit", "checkpoint", "--db", db, "--tenant", T,
                env={"CONVOY_AUDIT_KEY": listed})
        assert r.code == 0, r.stderr
        assert Checkpoint.from_json(r.stdout).public_key == rotated["new_public"]
        r = cli("audit", "prove", "12", "--db", db, "--tenant", T,
                env={"CONVOY_AUDIT_KEY": listed})
        assert r.code == 0, r.stderr
    assert not Path(both).exists() and not Path(both + ":").exists()
    r = cli("audit", "verify", "--db", db, env={"CONVOY_AUDIT_KEY": both})
    assert r.code == 0 and "3 signed checkpoints matched" in r.stdout, r.stderr
    # --key names one file: a ':' in it is part of its name
    r = cli("audit", "checkpoint", "--db", db, "--tenant", T, "--key", both)
    assert r.code == 2 and f"--key {both!r} does not exist" in r.stderr, r.stderr
    # nothing but colons: one line, no key made
    r = cli("audit", "checkpoint", "--db", db, "--tenant", T, env={"CONVOY_AUDIT_KEY": "::"})
    assert r.code == 2 and "CONVOY_AUDIT_KEY" in r.stderr and "names no key file" in \
        r.stderr, r.stderr


def test_a_checkpoints_file_given_as_a_proof_and_a_proof_as_checkpoints_are_named(
        log: dict[str, Any], tmp_path: Path) -> None:
    """The two kinds of file one passes around (published checkpoints, one per line, and
    a proof) given to the wrong command: the line says which kind it is and which command
    reads it, not a JSON parser's complaint."""
    db, published = str(log["db"]), log["published"]
    _append(log["db"], 8, 9)
    second = cli("audit", "checkpoint", "--db", db, "--tenant", T, "--key", str(log["key"]))
    assert second.code == 0, second.stderr
    two = tmp_path / "two.jsonl"
    two.write_text(published.read_text() + second.stdout)
    for checkpoints in (published, two):
        _one_line(cli("audit", "check", str(checkpoints)), 2, "holds checkpoints",
                  "convoy audit verify --checkpoint")
    proof = tmp_path / "proof.json"
    proved = cli("audit", "prove", "3", "--db", db, "--tenant", T)
    assert proved.code == 0, proved.stderr
    proof.write_text(json.dumps(json.loads(proved.stdout), indent=2))
    _one_line(cli("audit", "verify", "--db", db, "--checkpoint", str(proof)), 2,
              "is a proof", "convoy audit check")
    spread = tmp_path / "spread.json"  # one checkpoint over several lines
    spread.write_text(json.dumps(log["cp"].to_dict(), indent=2))
    _one_line(cli("audit", "verify", "--db", db, "--checkpoint", str(spread)), 2,
              "over several lines", "one JSON checkpoint per line")
    _one_line(cli("audit", "check", str(spread)), 2, "over several lines",
              "put it on one line")
    binary = tmp_path / "proof.json.gz"  # not text at all
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    _one_line(cli("audit", "check", str(binary)), 2, "is not UTF-8 text")


def test_after_a_rotation_a_plain_checkpoint_says_nothing_of_it(rotated: dict[str, Any]
                                                                ) -> None:
    """The rotation's note is said once, at the rotation: a later checkpoint with the new
    key (the log grown again) is a plain one (it repeated the note at every checkpoint)."""
    _append(rotated["db"], 11, 13)
    r = cli("audit", "checkpoint", "--db", str(rotated["db"]), "--tenant", T, "--key",
            str(rotated["new"]))
    assert r.code == 0 and r.stderr == "", r.stderr
    assert Checkpoint.from_json(r.stdout).size == 13


@pytest.mark.parametrize("cut_to", [8, 10], ids=["to-the-old-keys-checkpoint", "between"])
def test_checkpoint_refuses_a_log_cut_back_below_a_kept_checkpoint(
        rotated: dict[str, Any], cut_to: int) -> None:
    """Entries cut off back to a kept checkpoint's size (or between two): nothing signed,
    exit 1, and the line says what (it printed the kept checkpoint with exit 0, or, at the
    old key's size, advised waiting for entries as after a rotation)."""
    db = rotated["db"]
    _sql(db, f"DELETE FROM audit_log WHERE tenant='acme' AND idx>={cut_to}",
         f"UPDATE audit_head SET size={cut_to} WHERE tenant='acme'")
    before = _kept(db)
    r = cli("audit", "checkpoint", "--db", str(db), "--tenant", T, "--key",
            str(rotated["new"]))
    _one_line(r, 1, f"the log has {cut_to} entries, fewer than its checkpoint of size 11 "
              "signed", "nothing is signed: run 'convoy audit verify")
    assert r.stdout == "" and _kept(db) == before


def test_a_deleted_count_of_entries_is_one_line_and_exit_1(rotated: dict[str, Any]) -> None:
    """The log's head (its count of entries) deleted: list, prove and checkpoint say so,
    exit 1 (list printed 'no audit entries', exit 0; prove said the tenant had no log;
    checkpoint that the log was empty, exit 2)."""
    db = rotated["db"]
    _sql(db, "DELETE FROM audit_head WHERE tenant='acme'")
    said = "the store holds entries or signed checkpoints of its audit log, but the log's " \
        "count of entries says it has none"
    for args in (("list",), ("prove", "2"), ("checkpoint", "--key", str(rotated["new"]))):
        r = cli("audit", *args, "--db", str(db), "--tenant", T)
        _one_line(r, 1, said, "run 'convoy audit verify")


def test_a_forged_kept_checkpoint_is_said_as_forged_not_as_a_cut(rotated: dict[str, Any]
                                                                  ) -> None:
    """A kept checkpoint of size 1000 with the size edited (its signature no longer holds):
    checkpoint says its signature is invalid, as prove and verify do (it said the log was
    cut, fewer than 1000 entries)."""
    db = rotated["db"]
    _sql(db, "INSERT INTO audit_checkpoints SELECT tenant, 1000, replace(body, "
             "'\"size\": 11', '\"size\": 1000') FROM audit_checkpoints WHERE size=11")
    for args in (("checkpoint", "--key", str(rotated["new"])), ("list",)):
        r = cli("audit", *args, "--db", str(db), "--tenant", T)
        _one_line(r, 1, "a kept checkpoint of size 1000", "invalid signature",
                  "run 'convoy audit verify")
        assert "fewer than" not in r.stderr, r.stderr


def test_prove_and_list_say_a_log_cut_below_a_kept_checkpoint(rotated: dict[str, Any]
                                                              ) -> None:
    """Cut back to 9 entries (a checkpoint of 11 kept): prove of entry 9 says the log was
    cut, exit 1 (it said there is no entry 9, exit 2), and list says so too (it listed the
    9 left, exit 0); entries deleted with the count left says they are missing."""
    db = rotated["db"]
    _sql(db, "DELETE FROM audit_log WHERE tenant='acme' AND idx>=9",
         "UPDATE audit_head SET size=9 WHERE tenant='acme'")
    for args in (("prove", "9"), ("list",)):
        r = cli("audit", *args, "--db", str(db), "--tenant", T)
        _one_line(r, 1, "the log has 9 entries, fewer than its checkpoint of size 11 signed")
    _sql(db, "DELETE FROM audit_log WHERE tenant='acme'",
         "DELETE FROM audit_checkpoints WHERE tenant='acme'")
    r = cli("audit", "list", "--db", str(db), "--tenant", T)
    _one_line(r, 1, "the log's count of entries says 9, but the store holds no entry 8")


def test_verify_says_a_lowered_count_of_entries_was_changed(rotated: dict[str, Any]) -> None:
    """The count of entries deleted (or lowered), every entry as its checkpoints signed it:
    the count was changed (it said the entries past it were inserted)."""
    db = rotated["db"]
    for sql in ("UPDATE audit_head SET size=8 WHERE tenant='acme'",
                "DELETE FROM audit_head WHERE tenant='acme'"):
        _sql(db, sql)
        r = cli("audit", "verify", "--db", str(db), "--tenant", T, "--key",
                str(rotated["new"]), "--public-key", rotated["old_public"])
        assert r.code == 1, (r.stdout, r.stderr)
        assert "but its signed checkpoint of size 11 covers 11 entries, which the log holds " \
            "as signed: the count was changed" in r.stderr, r.stderr
        assert "inserted" not in r.stderr, r.stderr


class _SignedMeanwhile(SQLiteStore):
    """A store where, as a signer reads the log's count of entries, another appends three
    entries and keeps a checkpoint of them, just after the count was read."""

    def __init__(self, path: Path, key: Path) -> None:
        super().__init__(path, clock=FakeClock())
        self.key, self.armed = key, True

    async def audit_size(self, tenant: str) -> int:
        size = await super().audit_size(tenant)
        if self.armed:
            self.armed = False
            other = AuditLog(self, key_path=self.key, clock=FakeClock())
            await other.append(tenant, [_event(i) for i in range(size, size + 3)])
            await other.checkpoint(tenant)
        return size


def test_a_checkpoint_kept_meanwhile_is_not_taken_for_a_cut(log: dict[str, Any]) -> None:
    """The kept checkpoints are read before the log's count: one another signer keeps in
    between (of a longer log) does not make this one refuse a healthy log as cut (a race
    the second review found in the first cut of the cut check)."""
    async def go() -> Checkpoint:
        store = _SignedMeanwhile(log["db"], log["key"])
        await store.open()
        try:
            return await AuditLog(store, key_path=log["key"], clock=FakeClock()
                                  ).checkpoint(T)
        finally:
            await store.aclose()

    cp = asyncio.run(go())
    assert cp.size == 8  # (the log as its count said: the kept one, printed again)
    assert [size for size, _ in _kept(log["db"])] == [8, 11]


def test_an_empty_list_of_pinned_keys_is_refused_not_taken_for_none(
        rotated: dict[str, Any], tmp_path: Path) -> None:
    """``public_key=[]`` pins no key: refused in one line, where it checked against
    whichever key signed the proof (an attacker's too)."""
    from convoy.audit import check_consistency, check_inclusion

    consistency = json.loads(_proof(rotated, tmp_path, "consistency", "8").read_text())
    inclusion = json.loads(_proof(rotated, tmp_path, "prove", "3").read_text())
    for check, proof in ((check_consistency, consistency), (check_inclusion, inclusion)):
        for empty in ([], (), ""):
            with pytest.raises(convoy.UserError, match="pins no key"):
                check(proof, public_key=empty)  # type: ignore[operator]
        with pytest.raises(convoy.UserError, match="public_key"):
            check(proof, public_key=5)  # type: ignore[operator]


@pytest.mark.parametrize("where", ["check", "checkpoint", "verify-key", "master-key"])
def test_a_path_that_is_a_fifo_or_a_device_is_one_line_not_a_hang(
        log: dict[str, Any], tmp_path: Path, where: str) -> None:
    """A FIFO with no writer (read, it waited for one forever: it reads as empty) or
    ``/dev/zero`` (endless) given where a proof, a file of checkpoints or a key belongs:
    one line, exit 2, at once."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        if where == "check":
            r = cli("audit", "check", path)
        elif where == "checkpoint":
            r = cli("audit", "verify", "--db", str(log["db"]), "--checkpoint", path)
        elif where == "verify-key":
            r = cli("audit", "verify", "--db", str(log["db"]), "--key", path)
        else:
            r = cli("erase", "nobody", "--db", str(log["db"]),
                    env={"CONVOY_MASTER_KEY_FILE": path, "CONVOY_MASTER_KEY": ""})
        _one_line(r, 2, *(["not a regular file or a pipe"] if path == "/dev/zero" else []))


def test_a_proof_or_checkpoints_read_from_a_pipe_are_checked(log: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """``convoy audit check <(cat proof.json)``, ``--checkpoint /dev/stdin``: a pipe with
    a writer is read as a file is."""
    import os

    proof = cli("audit", "prove", "3", "--db", str(log["db"]), "--tenant", T, "--key",
                str(log["key"]))
    assert proof.code == 0, proof.stderr

    def piped(text: str) -> str:
        r, w = os.pipe()
        os.write(w, text.encode())
        os.close(w)
        return f"/proc/self/fd/{r}"

    r = cli("audit", "check", piped(proof.stdout))
    assert r.code == 0, r.stderr
    r = cli("audit", "verify", "--db", str(log["db"]), "--checkpoint",
            piped(log["published"].read_text()))
    assert r.code == 0, r.stderr


@pytest.mark.parametrize("args", [
    ("audit", "checkpoint", "--tenant", T, "--key", "KEY"),
    ("audit", "prove", "9", "--tenant", T, "--key", "KEY"),
    ("alerts", "--redeliver"),
])
def test_a_writing_command_takes_the_busy_timeout_its_lock_error_names(
        log: dict[str, Any], args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """A store locked by another writer past the busy timeout: the error says to raise
    ``--busy-timeout``, which these commands refused as no such option (and they ignored
    ``$CONVOY_BUSY_TIMEOUT``, waiting 10 s)."""
    _append(log["db"], 8, 10)  # (grown since the checkpoint: it signs one, and so writes)
    argv = [a.replace("KEY", str(log["key"])) for a in args]
    other = sqlite3.connect(log["db"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        r = cli(*argv, "--db", str(log["db"]), "--busy-timeout", "0.1")
        _one_line(r, 1, "--busy-timeout")
        monkeypatch.setenv("CONVOY_BUSY_TIMEOUT", "0.1")
        r = cli(*argv, "--db", str(log["db"]))
        _one_line(r, 1, "--busy-timeout")
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_proof_or_checkpoints_from_standard_input_are_checked(log: dict[str, Any]) -> None:
    """``-`` is standard input (``... | convoy audit check -``), as ``export -o -`` is
    standard output; it said "'-': No such file or directory"."""
    from typer.testing import CliRunner

    from convoy.cli import app

    proof = cli("audit", "prove", "3", "--db", str(log["db"]), "--tenant", T, "--key",
                str(log["key"]))
    assert proof.code == 0, proof.stderr
    r = CliRunner().invoke(app, ["audit", "check", "-"], input=proof.stdout)
    assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(app, ["audit", "verify", "--db", str(log["db"]), "--checkpoint",
                                 "-"], input=log["published"].read_text())
    assert r.exit_code == 0, r.stderr



@pytest.mark.parametrize("body", [b"\xff\xfe not json", b'{"kind":"model_call","v":1}',
                                  b'["not", "an", "object"]'],
                         ids=["not-json", "fields-missing", "an-array"])
def test_checkpoint_refuses_an_entry_that_is_no_audit_event(log: dict[str, Any],
                                                            body: bytes) -> None:
    """An entry appended after the kept checkpoint whose leaf hash is right but whose body
    is no audit event (written into the store by hand): ``verify`` fails on it, so the
    signer refuses it too (it signed it with exit 0: a signed history holding an entry
    that verify rejects), naming the entry, and nothing is signed."""
    db = log["db"]
    _sql(db, f"INSERT INTO audit_log VALUES('acme', 8, x'{body.hex()}', "
             f"x'{entry_leaf(T, 8, body).hex()}')",
         "UPDATE audit_head SET size=9 WHERE tenant='acme'")
    before = _kept(db)
    r = cli("audit", "checkpoint", "--db", str(db), "--tenant", T, "--key", str(log["key"]))
    _one_line(r, 1, "entry 8", "not an audit event", "nothing is signed: run 'convoy audit "
              "verify")
    assert r.stdout == "" and _kept(db) == before
    proved = cli("audit", "prove", "8", "--db", str(db), "--tenant", T, "--key",
                 str(log["key"]))
    _one_line(proved, 1, "entry 8", "not an audit event")
    assert _kept(db) == before


def test_processes_that_sign_with_a_new_key_at_once_agree_on_one(tmp_path: Path) -> None:
    """New user's trial: six `convoy audit checkpoint` processes started together with a
    key path that does not exist yet. One creates the key (and says so); the others sign
    with it, or print the checkpoint it signed: all exit 0 and print one key's checkpoint.
    (Before: some read the key file as it was being written, or took the checkpoint its
    creator had just kept for another key's, and exited 2.)"""
    import subprocess
    import sys

    db = tmp_path / "fresh.db"
    _append(db, 0, 5)
    key = tmp_path / "keys" / "fresh.key"
    procs = [subprocess.Popen([sys.executable, "-m", "convoy", "audit", "checkpoint",
                               "--db", str(db), "--tenant", T, "--key", str(key)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    done = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in done] == [0] * 6, done
    assert sum("created a new audit key" in err for _, _, err in done) == 1, done
    ids = {json.loads(out)["key_id"] for _, out, _ in done}
    assert len(ids) == 1, done


def test_checkpoint_all_tenants_signs_every_log_verify_checks(tmp_path: Path) -> None:
    """New user's trial: `verify` checks every tenant's log by default, `checkpoint` signed
    one: run on a schedule as the docs said, the other tenants' logs stayed unsigned.
    `--all-tenants` signs each, one line each by name; again, it prints the kept ones."""
    db = tmp_path / "mt.db"
    _append(db, 0, 3, tenant="acme")
    _append(db, 0, 2, tenant="beta")
    key = str(tmp_path / "mt.key")
    r = cli("audit", "checkpoint", "--db", str(db), "--key", key, "--all-tenants")
    assert r.code == 0, r.stderr
    signed = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(cp["tenant"], cp["size"]) for cp in signed] == [("acme", 3), ("beta", 2)]
    again = cli("audit", "checkpoint", "--db", str(db), "--key", key, "--all-tenants")
    assert again.code == 0 and again.stdout == r.stdout, again
    v = cli("audit", "verify", "--db", str(db), "--key", key)
    assert v.code == 0 and v.stdout.count("1 signed checkpoint matched") == 2, v
    both = cli("audit", "checkpoint", "--db", str(db), "--key", key, "--all-tenants",
               "--tenant", "acme")
    assert both.code == 2 and "exclude each other" in both.stderr, both
    _append(db, 0, 0, tenant="aaa")  # (an empty log: nothing to sign, not an error)
    r = cli("audit", "checkpoint", "--db", str(db), "--key", key, "--all-tenants")
    assert r.code == 0 and r.stdout == again.stdout, r
    empty = tmp_path / "empty.db"
    _append(empty, 0, 0)
    none = cli("audit", "checkpoint", "--db", str(empty), "--key", key, "--all-tenants")
    assert none.code == 2 and "no tenant has an audit log with entries in this store" \
        in none.stderr, none


def test_verify_takes_all_tenants_as_checkpoint_does(tmp_path: Path) -> None:
    """A new user's trial: the scheduled pair `convoy audit checkpoint --all-tenants` then
    `convoy audit verify --all-tenants` failed on the second, `No such option:
    --all-tenants` (verify checks every tenant's log by default). It takes it: every
    tenant's log, as without it; with --tenant too, the two exclude each other."""
    db = tmp_path / "mt.db"
    _append(db, 0, 3, tenant="acme")
    _append(db, 0, 2, tenant="beta")
    key = str(tmp_path / "mt.key")
    assert cli("audit", "checkpoint", "--db", str(db), "--key", key, "--all-tenants").code == 0
    v = cli("audit", "verify", "--db", str(db), "--key", key, "--all-tenants")
    assert v.code == 0 and v.stdout.count("1 signed checkpoint matched") == 2, v
    both = cli("audit", "verify", "--db", str(db), "--all-tenants", "--tenant", "acme")
    assert both.code == 2 and "exclude each other" in both.stderr, both
