"""Subject keys: one random AES-256 key per data subject, kept in the store wrapped (AES-GCM)
under a master key the operator configures, so erasing a subject destroys its key.

The master key is 32 random bytes, base64-encoded: in ``$CONVOY_MASTER_KEY``, or in the file
``$CONVOY_MASTER_KEY_FILE`` names (``convoy keygen FILE`` writes one). Lose it and every
subject's data is unreadable; keep it out of the database's backups.

A sealed value names the key it is sealed under by the key's label (a digest of the key as
stored, wrapped: a new key, for a subject id used again after an erasure, has a new one),
not by the subject's id: the store maps labels back to subjects in its interceptors' values
(:data:`REFS_NAMESPACE`), written before the key itself and deleted with it when the
subject is erased, so the values other sessions keep sealed under an erased subject's key
no longer say whose they were.

A store is bound to one master key: the first subject key made on it also keeps a check of
the master key in the store (:data:`CHECK_NAMESPACE`: an HMAC of a constant under it, which
tells nothing of the key), and a key ring refuses another master key before it makes or
opens a subject key (once per key ring: the check is cached). A store an earlier Convoy
wrote has no check: one of its subject keys, opened, is the check, and is then written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoy._errors import JournalError, UserError
from convoy._files import KEY_FILE_LIMIT, home_expanded, read_small
from convoy._text import quoted
from convoy.stores._protocol import SUBJECT_REFS
from convoy.stores._rows import DamagedRow, damaged

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from convoy.stores._protocol import Store

MASTER_KEY_ENV = "CONVOY_MASTER_KEY"
MASTER_KEY_FILE_ENV = "CONVOY_MASTER_KEY_FILE"
log = logging.getLogger("convoy.privacy")
#: The namespace (``+ tenant``) of the store's values that map a key's label, as sealed
#: values name it, to the subject's id (deleted with the key when the subject is erased).
REFS_NAMESPACE = SUBJECT_REFS
#: The store's value (namespace, key) that checks the master key its subject keys are
#: wrapped under (:meth:`MasterKey.check`).
CHECK_NAMESPACE = "convoy.master-key"
CHECK_KEY = "check"
#: What :meth:`MasterKey.check` gives (an HMAC-SHA256, in hex).
_CHECK = re.compile(r"[0-9a-f]{64}")


def key_label(wrapped: str) -> str:
    """The label of a subject key, from the key as the store keeps it (wrapped)."""
    return hashlib.sha256(b"convoy/subject-key-label/v1\0" + wrapped.encode()).hexdigest()[:32]


class SubjectKey:
    """A subject's key (``aead``), the label sealed values name it by (``label``:
    :func:`key_label`), the key its audit hashes are keyed with (``mac``) and the key the
    content ids of its sessions are keyed with (``ids``: ``convoy run --subject``); both
    derived from the subject's key, so destroyed with it; ``wrapped``: the key as the
    store keeps it (a session sealed under it is created only while the store holds it)."""

    __slots__ = ("aead", "ids", "label", "mac", "wrapped")

    def __init__(self, aead: AESGCM, label: str, mac: bytes, ids: bytes,
                 wrapped: str = "") -> None:
        self.aead = aead
        self.label = label
        self.mac = mac
        self.ids = ids
        self.wrapped = wrapped


def _aesgcm(key: bytes) -> AESGCM:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - the extra is part of dev installs
        raise UserError("data subjects need the 'cryptography' package: "
                        "pip install 'convoy[privacy]'") from None
    return AESGCM(key)


#: The master key files (and their modes) a warning said are readable by others.
_WARNED: set[tuple[Path, int]] = set()


class MasterKey:
    """The key that wraps every subject key (32 bytes). Build it with :meth:`from_env`,
    :meth:`from_text` or :meth:`generate`."""

    __slots__ = ("_aead", "_key", "origin")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise UserError(f"a master key is 32 bytes (base64-encoded), got {len(key)}")
        self._key = key
        self._aead = _aesgcm(key)
        #: Where it was configured, for errors (``from_env`` sets it).
        self.origin = ""

    @classmethod
    def generate(cls) -> str:
        """A new master key, as the base64 text to keep in a file or variable."""
        return base64.b64encode(secrets.token_bytes(32)).decode()

    @classmethod
    def from_text(cls, text: str, *, source: str = "the master key") -> MasterKey:
        """The key ``text`` holds (base64 of 32 bytes); ``source`` names it in errors."""
        if not isinstance(text, str):
            raise UserError(f"{source} must be base64 text, not "
                            f"{type(text).__name__} (make one with 'convoy keygen FILE')")
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"{source} is not base64 text (make one with "
                            "'convoy keygen FILE')") from None
        if len(raw) != 32:
            raise UserError(f"{source} decodes to {len(raw)} bytes, not 32 (make one with "
                            "'convoy keygen FILE')")
        return cls(raw)

    @classmethod
    def from_env(cls, env: Any = None) -> MasterKey | None:
        """The key ``$CONVOY_MASTER_KEY`` holds, or the one in the file
        ``$CONVOY_MASTER_KEY_FILE`` names; ``None`` if neither is set."""
        env = os.environ if env is None else env
        text = env.get(MASTER_KEY_ENV)
        if text:
            key = cls.from_text(text, source=f"${MASTER_KEY_ENV}")
            key.origin = f"${MASTER_KEY_ENV}"
            return key
        path = env.get(MASTER_KEY_FILE_ENV)
        if not path:
            return None
        file = home_expanded(path)  # (a unit file or a .env file expands no ``~``)
        try:
            content = read_small(file, KEY_FILE_LIMIT).decode("utf-8")
            mode = file.stat().st_mode & 0o777
        except OSError as e:
            raise UserError(f"cannot read the master key file {path!r} "
                            f"(${MASTER_KEY_FILE_ENV}): {e.strerror or e}") from None
        except UnicodeDecodeError:  # raw key bytes, say, where the base64 text belongs
            raise UserError(f"the master key file {path!r} is not a Convoy master key: it "
                            "holds binary data, not base64 text (make one with 'convoy "
                            "keygen FILE')") from None
        key = cls.from_text(content, source=f"the master key file {path!r}")
        key.origin = f"the file {path!r}"
        if mode & 0o077 and (file.absolute(), mode) not in _WARNED:
            _WARNED.add((file.absolute(), mode))  # (once a process: a command reads it twice)
            log.warning("the master key file %r is readable by others (mode %04o): chmod 600 "
                        "%s (whoever reads it can open every data subject's data)", path,
                        mode, shlex.quote(str(file)))
        return key

    def wrap(self, key: bytes, aad: bytes) -> str:
        """``key`` encrypted under this key (AES-GCM, bound to ``aad``), as base64."""
        nonce = secrets.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, key, aad)).decode()

    def opens(self, wrapped: str, aad: bytes) -> bytes | None:
        """The key :meth:`wrap` wrapped; ``None`` if this master key (or ``aad``) is not
        the one it was wrapped with, or ``wrapped`` was altered (not base64, cut short)."""
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.b64decode(wrapped, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], aad)
        except (InvalidTag, ValueError, TypeError):  # (altered: not base64, cut short)
            return None

    def unwrap(self, wrapped: str, aad: bytes) -> bytes:
        """The key :meth:`wrap` wrapped; :class:`~convoy.UserError` if this master key (or
        ``aad``) is not the one it was wrapped with."""
        raw = self.opens(wrapped, aad)
        if raw is None:
            raise UserError("the master key does not open the subject keys of this store "
                            "(wrong key?): configure the key they were made with")
        return raw

    def check(self) -> str:
        """What a store keeps to tell this key from another (an HMAC of a constant under
        it: nothing of the key can be learned from it)."""
        return hmac.new(self._key, b"convoy/master-key-check/v1", hashlib.sha256).hexdigest()

    def not_the_stores(self) -> UserError:
        """The error for a master key that is not the one a store's subjects are sealed
        with."""
        where = f" ({self.origin})" if self.origin else ""
        return UserError(f"the configured master key{where} is not the one this store's data "
                         f"subjects are sealed with: set ${MASTER_KEY_FILE_ENV} (or "
                         f"${MASTER_KEY_ENV}, which wins over it) to the store's master key")

    def ref(self, tenant: str, subject: str) -> str:
        """A keyed fingerprint of a subject: what an erasure record keeps instead of its
        name (nobody without the master key can test a guess against it)."""
        return hmac.new(self._key, f"convoy-subject\0{tenant}\0{subject}".encode(),
                        hashlib.sha256).hexdigest()


#: How long a wrapped subject key is, decoded: a nonce, the key, the tag (AES-GCM).
_WRAPPED_BYTES = 12 + 32 + 16


def _wrapped_shape(wrapped: str) -> bool:
    """Whether ``wrapped`` reads as :meth:`MasterKey.wrap` writes a key (base64 of its
    length): one that does not open was wrapped under another key, or altered since; one
    that does not read so was altered."""
    try:
        return len(base64.b64decode(wrapped, validate=True)) == _WRAPPED_BYTES
    except (binascii.Error, ValueError):
        return False


def _key_aad(tenant: str, subject: str) -> bytes:
    return f"convoy/subject-key/v1\0{tenant}\0{subject}".encode()


class KeyRing:
    """Subject keys of one store, unwrapped on first use and kept in memory."""

    __slots__ = ("_checked", "_keys", "_refs", "master", "store")

    def __init__(self, store: Store, master: MasterKey) -> None:
        self.store = store
        self.master = master
        self._keys: dict[tuple[str, str], SubjectKey] = {}
        self._refs: dict[tuple[str, str], str] = {}  # (tenant, label) -> subject
        self._checked = False  # the master key is the store's (see :meth:`check`)

    async def check(self, *, create: bool = False) -> None:
        """Refuse (:class:`~convoy.UserError`) a master key that is not the one the store's
        subject keys are wrapped under, before anything is made or opened with it. The
        store's check, else (a store of an earlier Convoy) its oldest subject key, decides;
        a store with neither is bound to this key when ``create`` (its first subject key
        is about to be made). Once passed, never read again by this key ring."""
        if self._checked:
            return
        mine = self.master.check()
        try:
            held = await self.store.kv_get(CHECK_NAMESPACE, CHECK_KEY)
            if held is not None and not _CHECK.fullmatch(held):
                # (every key would be refused as "not the store's": say what is wrong)
                raise damaged("the store's master key check",
                              f"its stored value {quoted(held)} is not a check Convoy "
                              "writes (64 hexadecimal digits)")
        except DamagedRow as e:
            # Not one session's row: every sealed value needs the check. A plain store
            # error, so nothing takes it for one session's damage (escalated, the others
            # run): the command stops.
            raise JournalError(str(e)) from None
        if held is None:
            oldest = await self.store.subject_key_oldest()
            if oldest is None and not create:
                return  # nothing is sealed yet: nothing to tell the key by
            if oldest is not None:
                tenant, subject, wrapped = oldest
                if self.master.opens(wrapped, _key_aad(tenant, subject)) is None:
                    raise self.master.not_the_stores()
            if not getattr(self.store, "read_only", False):
                held = await self.store.kv_setdefault(CHECK_NAMESPACE, CHECK_KEY, mine)
        if held is not None and not hmac.compare_digest(held, mine):
            raise self.master.not_the_stores()
        self._checked = True

    def peek(self, tenant: str, subject: str) -> SubjectKey | None:
        """A key :meth:`load` loaded before, or ``None``."""
        return self._keys.get((tenant, subject))

    def cached(self, tenant: str, subject: str) -> SubjectKey:
        """A key :meth:`load` loaded before (the sync write paths need it ready)."""
        key = self._keys.get((tenant, subject))
        if key is None:
            raise UserError(f"the key of subject {quoted(subject)} (tenant {quoted(tenant)}) is "
                            "not loaded")
        return key

    async def load(self, tenant: str, subject: str, *, create: bool,
                   fresh: bool = False) -> SubjectKey | None:
        """The subject's key (made and stored if ``create`` and it has none), or ``None``.
        What maps its label back to the subject is stored before a new key is (a crash in
        between leaves a label of no key, which erasure deletes too), and again when a
        writable store loads a key whose label it lacks (made by an earlier Convoy).

        ``fresh``: the key held in memory is used only if the store still holds it (one
        read): another process may have erased the subject since, and its new data must
        not be sealed under a destroyed key (a session's start asks so)."""
        key = self._keys.get((tenant, subject))
        if key is not None:
            if not fresh:
                return key
            held = await self.store.subject_key_get(tenant, subject)
            if held is not None and key_label(held) == key.label:
                return key
            self.forget(tenant, subject)  # erased elsewhere (and perhaps made again)
        await self.check(create=create)
        aad = _key_aad(tenant, subject)
        ns = REFS_NAMESPACE + tenant
        mapped: str | None = None  # the label this call mapped, if it made the key
        wrapped = await self.store.subject_key_get(tenant, subject)
        if wrapped is None:
            if not create:
                return None
            mine = self.master.wrap(secrets.token_bytes(32), aad)
            mapped = key_label(mine)
            await self.store.kv_put(ns, mapped, subject)
            wrapped = await self.store.subject_key_put(tenant, subject, mine)  # or a rival's
        raw = self.master.opens(wrapped, aad)
        if raw is None:  # the master key is the store's (checked): this key is not its
            # (one subject's damage, not the command's misuse: its sessions are escalated
            # as unreadable, the others run)
            what = f"the key of subject {quoted(subject)} (tenant {quoted(tenant)})"
            if not _wrapped_shape(wrapped):
                raise damaged(what, "it does not open with this store's master key (its "
                              f"stored value is not a wrapped key, base64 of {_WRAPPED_BYTES} "
                              "bytes); erasing the subject still works")
            problem = ("it does not open with this store's master key: an earlier Convoy "
                       "wrapped it under another master key (with that key configured, the "
                       "subject's sessions read again), or it was altered (the store was "
                       "edited or damaged); erasing the subject still works")
            raise DamagedRow(f"{what}: {problem}", what=what, problem=problem)
        label = key_label(wrapped)
        if label != mapped and not getattr(self.store, "read_only", False) and \
                await self.store.kv_get(ns, label) != subject:
            await self.store.kv_put(ns, label, subject)
        self._refs[(tenant, label)] = subject
        mac = hmac.new(raw, b"convoy/audit-hashes/v1", hashlib.sha256).digest()
        ids = hmac.new(raw, b"convoy/session-ids/v1", hashlib.sha256).digest()
        key = self._keys[(tenant, subject)] = SubjectKey(_aesgcm(raw), label, mac, ids,
                                                         wrapped)
        return key

    async def subject_of(self, tenant: str, label: str, version: int) -> str | None:
        """The subject a sealed value's label names (format 1 named the subject itself);
        ``None``: nobody the store knows (the subject was erased)."""
        if version == 1:
            return label
        subject = self._refs.get((tenant, label))
        if subject is None:
            subject = await self.store.kv_get(REFS_NAMESPACE + tenant, label)
        return subject

    async def outer(self, tenant: str, text: str, where: str = ""
                    ) -> tuple[str, SubjectKey | None]:
        """Whose key a sealed value's outermost layer is sealed under: the subject (its
        label if it is unknown: erased) and the key (``None``: destroyed). ``where``: the
        value's associated data, for the error a damaged one gives."""
        from convoy.privacy._seal import sealed_label

        label, version = sealed_label(text, where)
        subject = await self.subject_of(tenant, label, version)
        if subject is None:
            return label, None
        return subject, await self.load(tenant, subject, create=False)

    async def peel(self, tenant: str, aad: str, text: str | None
                   ) -> tuple[list[tuple[str, SubjectKey | None]], str | None]:
        """``text`` opened layer by layer, outermost first, each with the key of the
        subject it names: the layers' ``(subject, key)`` and the text as far as it opened
        (still sealed from a layer whose key is gone: that layer's key is ``None``, and
        its subject the label it was named by, if the store no longer knows whose)."""
        from convoy.privacy._seal import envelope_of, is_sealed, unseal

        layers: list[tuple[str, SubjectKey | None]] = []
        while text is not None and is_sealed(text):
            if layers and envelope_of(text) is None:
                break  # (opened: a value of the subject's that looks like a sealed one)
            subject, key = await self.outer(tenant, text, aad)
            layers.append((subject, key))
            if key is None:
                break
            text = unseal(key, aad, text)
        return layers, text

    def forget(self, tenant: str, subject: str) -> None:
        key = self._keys.pop((tenant, subject), None)
        if key is not None:
            self._refs.pop((tenant, key.label), None)


__all__ = ["CHECK_KEY", "CHECK_NAMESPACE", "MASTER_KEY_ENV", "MASTER_KEY_FILE_ENV",
           "REFS_NAMESPACE", "KeyRing", "MasterKey", "SubjectKey", "key_label"]
