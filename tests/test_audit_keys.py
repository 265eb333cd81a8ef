"""The checkpoint signing key: created on first use with mode 0600, loaded after, refused
in one line when it is not an Ed25519 PEM key; checkpoints sign and verify with it."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from convoy import AuditProofError, UserError
from convoy.audit import Checkpoint, load_or_create_key
from convoy.audit._keys import public_key_text


def test_the_key_is_created_0600_on_first_use_and_loaded_after(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_key(path)
    assert public_key_text(again.public_key()) == public_key_text(key.public_key())


def test_the_directories_made_for_a_new_key_are_its_owners_only(tmp_path: Path) -> None:
    """New user's trial: `convoy audit checkpoint --key keys/sub/audit.key` made `keys/`
    and `keys/sub/` world-listable (0755), where `convoy keygen` makes the master key's
    0700."""
    load_or_create_key(tmp_path / "keys" / "sub" / "audit.key")
    for folder in (tmp_path / "keys", tmp_path / "keys" / "sub"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_key_another_process_makes_first_is_read_whole_and_not_called_ours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes that sign with a new key path at once: the one that links its file
    second reads the other's key (whole: a key file is written under another name, then
    linked), signs with it, and does not say it created it."""
    import os

    from convoy.audit import _keys

    path = tmp_path / "audit.key"
    theirs = tmp_path / "theirs.key"
    other = load_or_create_key(theirs)
    real_link = os.link

    def first_theirs(src: str | Path, dst: str | Path) -> None:
        real_link(theirs, dst)  # (the other process linked its file first)
        real_link(src, dst)  # FileExistsError

    monkeypatch.setattr(_keys.os, "link", first_theirs)
    key = load_or_create_key(path)
    assert public_key_text(key.public_key()) == public_key_text(other.public_key())
    assert not _keys.made_here(path) and _keys.made_here(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.key", "theirs.key"]


def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    path.write_text("not a key")
    with pytest.raises(UserError, match="not an unencrypted PEM private key") as caught:
        load_or_create_key(path)
    # one short line: what is wrong and what to pass, not cryptography's paragraph
    said = str(caught.value)
    assert "\n" not in said and "http" not in said and "MalformedFraming" not in said, said
    assert "is not PEM, or is damaged" in said and "'convoy audit checkpoint'" in said
    from cryptography.hazmat.primitives import serialization

    encrypted = load_or_create_key(tmp_path / "plain.key").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    path.write_bytes(encrypted)
    with pytest.raises(UserError, match=r"\(it is encrypted\)"):
        load_or_create_key(path)


def test_a_checkpoint_verifies_and_any_change_breaks_it(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    cp = Checkpoint.sign(key, tenant="acme", size=3, root=b"\1" * 32, timestamp=1000.5)
    back = Checkpoint.from_json(cp.to_json())
    back.check(public_key_text(key.public_key()))
    for change in ({"size": 4}, {"root": b"\2" * 32}, {"timestamp": 1000.6},
                   {"tenant": "globex"}):
        forged = Checkpoint(**{**{f: getattr(cp, f) for f in (
            "tenant", "size", "root", "timestamp", "public_key", "signature")}, **change})
        with pytest.raises(AuditProofError, match="invalid signature"):
            forged.check()
    other = load_or_create_key(tmp_path / "other")
    with pytest.raises(AuditProofError, match="not by the expected key"):
        cp.check(public_key_text(other.public_key()))


def test_a_key_path_that_is_a_dangling_link_is_one_line(tmp_path: Path) -> None:
    """A symbolic link to a file that is gone (a secret mount's link, its target not
    there yet) is neither read nor written through: one line, where it looped forever."""
    link = tmp_path / "audit.key"
    link.symlink_to(tmp_path / "missing.key")
    with pytest.raises(UserError, match=r"is a symbolic link to .*missing\.key.*, which does "
                                        "not exist") as caught:
        load_or_create_key(link)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "missing.key").exists()
    loop = tmp_path / "loop.key"  # (a loop was said to be a link to a missing file)
    loop.symlink_to(loop)
    with pytest.raises(UserError, match=r"is a symbolic link that leads back to itself "):
        load_or_create_key(loop)


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_key_path_that_is_no_key_file_is_refused_without_reading_it_all(
        tmp_path: Path, kind: str) -> None:
    """A FIFO with no writer (which would wait for one forever: it reads as empty), a
    device (``/dev/zero``: endless) or a file far larger than a key is refused in one
    line, read no further than a key's bound."""
    import os

    path = tmp_path / "audit.key"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        with path.open("wb") as f:
            f.truncate(1 << 30)  # (sparse: a gigabyte that takes no disk)
    said = {"fifo": "not an unencrypted PEM private key",  # (no writer: read as empty)
            "device": "not a regular file or a pipe", "huge": "larger than"}[kind]
    with pytest.raises(UserError, match=said):
        load_or_create_key(path)


def test_a_key_creation_killed_before_its_link_leaves_no_private_key_behind(
        tmp_path: Path) -> None:
    """A process killed between writing a new key's temporary file and linking it left
    that file, a private key, for good: the next creation at that path removes those of
    processes of this host that are gone, and leaves a live one's and another host's."""
    host = socket.gethostname()
    dead_pid = 2 ** 22 + 4321  # (above this host's pid_max: no such process)
    dead = tmp_path / f".audit.key.{dead_pid}@{host}.0a1b2c3d.tmp"
    live = tmp_path / f".audit.key.{os.getpid()}@{host}.0a1b2c3e.tmp"
    remote = tmp_path / f".audit.key.{dead_pid}@another-host.example.0a1b2c3f.tmp"
    unrelated = tmp_path / ".other.key.1@x.0a1b2c40.tmp"
    # (an earlier release's name, without the host: removed once it is an hour old, as
    # another host's is; whoever made it, a key is linked in milliseconds)
    legacy = tmp_path / f".audit.key.{dead_pid}.0a1b2c41.tmp"
    old_remote = tmp_path / f".audit.key.{dead_pid}@another-host.example.0a1b2c42.tmp"
    for f in (dead, live, remote, unrelated, legacy, old_remote):
        f.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    hours_ago = time.time() - 7200
    os.utime(old_remote, (hours_ago, hours_ago))
    load_or_create_key(tmp_path / "audit.key")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["audit.key", live.name, remote.name, unrelated.name, legacy.name])
    # a later load sweeps too (a review: a leftover beside a key another process made
    # stayed for good)
    os.utime(legacy, (hours_ago, hours_ago))
    dead.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    load_or_create_key(tmp_path / "audit.key")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["audit.key", live.name, remote.name, unrelated.name])
