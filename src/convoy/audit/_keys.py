"""The Ed25519 key that signs checkpoints: one PEM file at a path the user configures,
generated on first use (readable by its owner only, ``0600``)."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import secrets
import socket
import time
from pathlib import Path

from convoy.audit._needs import MISSING_CRYPTOGRAPHY

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
except ImportError as e:  # the extra is not installed
    raise ImportError(MISSING_CRYPTOGRAPHY) from e

from convoy._errors import UserError
from convoy._files import KEY_FILE_LIMIT, dangling_link, home_expanded, read_small
from convoy._text import quoted
from convoy.engine._owners import owner_is_dead


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key in ``path`` (PEM, PKCS #8, unencrypted); a new one is written there
    with mode ``0600`` if the file does not exist."""
    p = home_expanded(path)
    _sweep_leftovers(p)
    try:
        return _read(p)
    except FileNotFoundError:
        if p.is_symlink():  # (a link to a file that is not there: not written through)
            raise UserError(f"the audit key {quoted(str(p), 200)} {dangling_link(p)}; "
                            "pass the key file itself, or a path where none exists to "
                            "create a new key") from None
        return _create(p)


def _read(p: Path) -> Ed25519PrivateKey:
    """The key in file ``p``; :class:`FileNotFoundError` if there is none."""
    try:
        data = read_small(p, KEY_FILE_LIMIT)
    except FileNotFoundError:
        raise
    except OSError as e:
        why = dangling_link(p) if e.errno == errno.ELOOP and p.is_symlink() else None
        if why is not None:
            raise UserError(f"the audit key {quoted(str(p), 200)} {why}; pass the key "
                            "file itself") from None
        raise UserError(f"cannot read the audit key {quoted(str(p), 200)}: "
                        f"{e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        # (cryptography's message is a paragraph with a link and an OpenSSL error stack:
        # only what says why is kept)
        why = "it is encrypted" if isinstance(e, TypeError) else \
            "it is not PEM, or is damaged"
        raise UserError(f"the audit key {str(p)!r} is not an unencrypted PEM private key "
                        f"({why}); pass the key file 'convoy audit checkpoint' created, or "
                        "a path that does not exist to create a new key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"the audit key {str(p)!r} is not an Ed25519 key")
    return key


def _create(p: Path) -> Ed25519PrivateKey:
    """A new key written to ``p``, which must not exist; if another process makes one
    there first, that one (a key file is only ever seen whole: it is written under a
    temporary name, then linked to ``p``, which fails if ``p`` exists)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        # Each missing directory readable by its owner only (``parents=True`` would give
        # them the umask's mode), as ``convoy keygen`` makes the master key's.
        for folder in reversed([p.parent, *p.parent.parents]):
            if not folder.exists():
                with contextlib.suppress(FileExistsError):  # (made meanwhile)
                    folder.mkdir(mode=0o700)
        tmp = p.with_name(f".{p.name}.{os.getpid()}@{socket.gethostname()}."
                          f"{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise UserError(f"cannot create the audit key {quoted(str(p), 200)}: "
                        f"{e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, p)
            _MADE.add(p)
        except FileExistsError:  # (another process's, made just now: whole)
            return _read(p)
        except OSError:  # a file system without hard links: created in place instead
            return _create_in_place(p, key, pem)
    except FileNotFoundError:
        raise UserError(f"cannot create the audit key {quoted(str(p), 200)}: it came and "
                        "went as it was made; try again") from None
    except OSError as e:
        raise UserError(f"cannot create the audit key {quoted(str(p), 200)}: "
                        f"{e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return key


def _sweep_leftovers(p: Path) -> None:
    """Remove what key creations at ``p`` that were killed before they linked their key
    left: their temporary files (``.NAME.PID@HOST.HEX.tmp``; ``.NAME.PID.HEX.tmp`` from
    earlier releases), each a private key never used. One is removed when its process, of
    this host, is gone, or when it is older than :data:`_ABANDONED_S` (a key is written
    and linked in milliseconds: whoever made it, on whatever host, is not coming back for
    it). A live process's, another host's recent one, a file of another name: left.
    Best effort: a directory that cannot be listed is left as it is."""
    prefix = f".{p.name}."
    try:
        names = [n for n in os.listdir(p.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    now = time.time()
    for name in names:
        path = p.parent / name
        owner = name[len(prefix):-4].rpartition(".")[0]
        pid, at, host = owner.partition("@")
        if not pid.isdigit():  # (not one of ours)
            continue
        try:
            if (at and owner_is_dead(f"{host}:{pid}")) or \
                    now - path.lstat().st_mtime > _ABANDONED_S:
                path.unlink()
        except OSError:
            continue


#: The age past which a key's temporary file is abandoned, whoever made it.
_ABANDONED_S = 3600.0


def _create_in_place(p: Path, key: Ed25519PrivateKey, pem: bytes) -> Ed25519PrivateKey:
    """:func:`_create` where a file cannot be linked: ``p`` made with ``O_EXCL`` (two
    processes cannot both write one), then written."""
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # (the other one's, made just now)
        return _read(p)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    _MADE.add(p)
    return key


#: The key files this process created (another process may make one at the same path
#: first: then this one read it, and did not create it).
_MADE: set[Path] = set()


def made_here(path: str | Path) -> bool:
    """Whether this process created the key file at ``path``."""
    return home_expanded(path) in _MADE


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64: what checkpoints carry and verifiers pin."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """The public key of :func:`public_key_text`; :class:`~convoy.UserError` if malformed."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as e:
        raise UserError(f"not a base64 Ed25519 public key: {text!r} ({e})") from None


def key_id(public: str) -> str:
    """A short name for a public key (the first 8 bytes of its SHA-256, hex)."""
    return hashlib.sha256(base64.b64decode(public)).hexdigest()[:16]
