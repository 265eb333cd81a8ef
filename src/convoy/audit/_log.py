"""A tenant's audit log on a store: append events, publish signed checkpoints, prove an
entry is in the log (:class:`AuditLog`)."""

from __future__ import annotations

import asyncio
import base64
import operator
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoy._command import command, word
from convoy._errors import AuditError, AuditProofError, UserError
from convoy._files import home_expanded
from convoy.audit._checkpoint import Checkpoint
from convoy.audit._checkpoint import pinned as pinned_keys
from convoy.audit._event import AuditEvent
from convoy.audit._keys import key_id, load_or_create_key, public_key_text
from convoy.audit._merkle import Frontier, entry_leaf, tree_root
from convoy.audit._proofs import (
    consistency_path,
    inclusion_path,
    verify_consistency,
    verify_inclusion,
)
from convoy.audit._tiles import Missing, tile_roots, with_subtrees
from convoy.stores._protocol import Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: The format of a published inclusion proof.
PROOF_FORMAT = "convoy-audit-inclusion/v1"
#: The format of a published consistency proof.
CONSISTENCY_FORMAT = "convoy-audit-consistency/v1"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class AuditLog:
    """The audit logs of every tenant of a store.

    Args:
        store: where the logs live (an open store).
        key_path: the Ed25519 signing key of checkpoints (PEM; created with mode ``0600`` on
            first use). Needed to sign checkpoints and to pin the key when verifying.
        clock: the wall clock of checkpoint timestamps (seconds since the epoch).
        before_read: awaited before the log is read to sign a checkpoint or prove an
            entry (the audit interceptor's: seal what this process's runs queued).
    """

    def __init__(self, store: Store, *, key_path: str | Path | None = None,
                 clock: Callable[[], float] = time.time,
                 before_read: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.before_read = before_read
        self.key_path = None if key_path is None else home_expanded(key_path)
        self.clock = clock
        self._key: Ed25519PrivateKey | None = None

    @property
    def key(self) -> Ed25519PrivateKey:
        """The signing key (loaded, or generated, on first use)."""
        if self._key is None:
            if self.key_path is None:
                raise UserError("signing an audit checkpoint needs a key file: pass "
                                "key_path= (or --key / CONVOY_AUDIT_KEY on the command line)")
            self._key = load_or_create_key(self.key_path)
        return self._key

    @property
    def public_key(self) -> str | None:
        """The signing key's public half (base64), if a key file is configured."""
        return None if self.key_path is None else public_key_text(self.key.public_key())

    def _suggest(self, what: str, tenant: str) -> str:
        """``'convoy audit WHAT'`` (``verify``, ``checkpoint``) for a message to suggest,
        with the ``--db`` and ``--tenant`` (and a checkpoint's ``--key``) of this log:
        pasted, it acts on the log the message is about."""
        key = "" if what != "checkpoint" else "--key KEY" if self.key_path is None else \
            f"--key {word(str(self.key_path))}"
        return command(f"audit {what}", options=key, db=self.store.url, tenant=tenant)

    def append(self, tenant: str, events: Sequence[AuditEvent], *,
               wait: bool = True) -> asyncio.Future[None]:
        """Append ``events`` to ``tenant``'s log with the store's group commit."""
        return self.store.audit_append(tenant, [e.encode() for e in events], wait=wait)

    async def sealed(self) -> None:
        """Wait until what this process's runs queued for the log is in it."""
        if self.before_read is not None:
            await self.before_read()

    async def checkpoint(self, tenant: str) -> Checkpoint:
        """Sign and keep a checkpoint of ``tenant``'s log as it is now."""
        await self.sealed()
        # The kept checkpoints before the size: one another signer keeps in between is of
        # a log at least as long, not a sign that this one was cut.
        before = sorted(await self.checkpoints(tenant), key=lambda cp: cp.size)
        size = await self.store.audit_size(tenant)
        if size == 0:  # (a checkpoint of nothing proves nothing, and hides a wiped log)
            self._not_cut(tenant, size, before)
            raise UserError(f"the audit log of tenant {tenant!r} is empty: there is nothing to "
                            "sign; sign once it has entries")
        leaves = await self.store.audit_leaves(tenant, size)
        if len(leaves) != size:
            raise AuditError(f"tenant {tenant!r}: the log has {len(leaves)} entries but "
                             f"{size} were appended; run {self._suggest('verify', tenant)}")
        root = tree_root(leaves)
        kept = await self._kept(tenant, size, root, before)
        if kept is not None:  # the log has not grown: its checkpoint stands as signed
            return kept
        await self._signable(tenant, leaves, before)
        cp = Checkpoint.sign(self.key, tenant=tenant, size=size, root=root,
                             timestamp=self.clock())
        await tile_roots(self.store, tenant, size, leaves=leaves)  # proofs read tiles
        if not await self.store.audit_put_checkpoint(tenant, size, cp.to_json()):
            # another signer kept one of this size first: that one stands
            kept = await self._kept(tenant, size, root)
            if kept is not None:
                return kept
            # No checkpoint of this size is kept, yet a row holds its place: one of
            # another size moved there (its size column edited). Nothing is kept, so the
            # checkpoint is not given out as kept.
            raise AuditError(f"tenant {tenant!r}: the store holds another checkpoint row at "
                             f"size {size}, which is no checkpoint of that size: the store "
                             f"was edited; run {self._suggest('verify', tenant)}")
        return cp

    async def _signable(self, tenant: str, leaves: Sequence[bytes],
                        kept: Sequence[Checkpoint]) -> None:
        """Refuse (:class:`~convoy.AuditError`, nothing signed) a log that contradicts what
        was signed of it, as a transparency log's signer never signs two views of one log:
        one shorter than a kept checkpoint (cut off, or restored from an older backup and
        written to since), one whose first entries no longer hash to a kept checkpoint's
        root (rewritten, hashes recomputed), and one whose entries since the last kept
        checkpoint do not match their leaf hashes (the tree would not hold them: earlier
        ones were checked when that checkpoint was signed, and its root covers their
        leaves) or are no audit events (written by hand: :meth:`verify` rejects them, so a
        signature would vouch for a history it fails). A kept checkpoint must be the
        tenant's and validly signed (by any key: a rotation's too)."""
        size = len(leaves)
        self._not_cut(tenant, size, kept, every=True)
        frontier = Frontier()
        for cp in kept:
            while frontier.size < cp.size:
                frontier.append(leaves[frontier.size])
            if frontier.root() != cp.root:
                raise AuditError(
                    f"tenant {tenant!r}: the log's first {cp.size} entries no longer hash "
                    f"to the root its checkpoint of size {cp.size} signed (rewritten); "
                    f"nothing is signed: run {self._suggest('verify', tenant)}")
        start = kept[-1].size if kept else 0
        while start < size:
            rows = await self.store.audit_entries(tenant, start, min(size - start, 4096))
            if not rows:
                break
            for row in rows:
                i = row.index
                if not start <= i < size or entry_leaf(tenant, i, row.body) != leaves[i]:
                    raise AuditError(
                        f"tenant {tenant!r}: entry {i} does not match its leaf hash; "
                        f"nothing is signed: run {self._suggest('verify', tenant)}", index=i)
                try:
                    AuditEvent.decode(row.body)
                except AuditError as e:
                    raise AuditError(f"tenant {tenant!r}: entry {i}: {e}; nothing is signed: "
                                     f"run {self._suggest('verify', tenant)}", index=i
                                     ) from None
            start = rows[-1].index + 1

    def _not_cut(self, tenant: str, size: int, kept: Sequence[Checkpoint], *,
                 signing: bool = True, every: bool = False) -> None:
        """Refuse (:class:`~convoy.AuditError`) a log of ``size`` entries shorter than a
        kept checkpoint (``kept``: read before ``size``, smallest tree first) signed, and
        first a kept checkpoint larger than the log that is not validly signed (by any
        key: a rotation's too; a forged one would otherwise be taken for a cut), or with
        ``every``, any kept checkpoint that is not."""
        then = f"{'; nothing is signed' if signing else ''}: run " \
            f"{self._suggest('verify', tenant)}"
        for cp in kept:
            if not every and cp.size <= size:
                continue
            try:
                cp.check()
            except AuditError as e:
                raise AuditError(f"a kept {e}{then}") from None
        if kept and kept[-1].size > size:
            raise AuditError(
                f"tenant {tenant!r}: the log has {size} entries, fewer than its checkpoint "
                f"of size {kept[-1].size} signed (entries cut off, or the store restored "
                f"from an older backup){then}")

    async def _kept(self, tenant: str, size: int, root: bytes,
                    before: Sequence[Checkpoint] = ()) -> Checkpoint | None:
        """The kept checkpoint of ``size``, if there is one; an :class:`AuditError` if its
        root is not the log's (the log was changed since it was signed), or if a larger
        one was kept before (``before``: the log was cut back to that size). A signed
        checkpoint is never replaced, by a new signature or another key's."""
        kept = await self.checkpoints(tenant)
        if any(cp.size == size for cp in kept):  # (printed again only if all is well)
            self._not_cut(tenant, size, before, every=True)
        for cp in kept:
            if cp.size == size:
                if cp.root != root:
                    raise AuditError(
                        f"tenant {tenant!r}: the log's first {size} entries no longer hash "
                        f"to the root its checkpoint of size {size} signed; run "
                        f"{self._suggest('verify', tenant)}")
                mine = public_key_text(self.key.public_key())
                if cp.public_key != mine:
                    raise UserError(
                        f"tenant {tenant!r}: its checkpoint of size {size} is signed by "
                        f"another key ({cp.key_id}); a signed checkpoint is never replaced: "
                        "sign with the new key once the log has grown")
                return cp
        return None

    async def checkpoints(self, tenant: str) -> list[Checkpoint]:
        """The kept checkpoints of ``tenant``, smallest tree first; :class:`~convoy.AuditError`
        if one is not a checkpoint (changed in the database)."""
        rows = await self.store.audit_checkpoints(tenant)
        try:
            kept = [Checkpoint.from_json(body) for _, body in rows]
        except UserError as e:
            raise AuditError(f"tenant {tenant!r}: a stored checkpoint is unreadable: {e}"
                             ) from None
        for (size, _), cp in zip(rows, kept, strict=True):
            # (what it signed names its tenant and size: a row moved, or whose size was
            # edited, is not its own; one kept under another size blocks the signing of a
            # checkpoint there)
            if cp.tenant != tenant:
                raise AuditError(f"tenant {cp.tenant!r}: its checkpoint of size {cp.size} "
                                 f"is kept under tenant {tenant!r}; run "
                                 f"{self._suggest('verify', tenant)}")
            if cp.size != size and _signed(cp):  # (a forged body: its signature says)
                raise AuditError(f"tenant {tenant!r}: its checkpoint of size {cp.size} is "
                                 f"kept under size {size} (the store was edited): the row "
                                 f"of size {size} is a copy or a moved checkpoint; run "
                                 f"{self._suggest('verify', tenant)}")
        return kept

    async def prove(self, tenant: str, index: int, *,
                    public_key: str | Sequence[str] | None = None) -> dict[str, Any]:
        """An inclusion proof of entry ``index`` against the newest checkpoint that covers
        it (a new one is signed if none does), as a JSON-ready dict that a third party
        checks with :func:`check_inclusion` and the signer's public key.

        ``public_key`` (base64; several: a rotation's old and new keys): against the
        newest that covers it signed by one of those keys, the key a verifier pins; a
        :class:`~convoy.UserError` if they signed none that covers it (nor would sign the
        new one)."""
        checked = _integer(index)  # (numpy's int64 too)
        if checked is None or checked < 0:
            # (-1 was reported as a deleted entry, after signing a checkpoint)
            raise UserError(f"an audit entry's index is an integer from 0, got {index!r}")
        index = checked
        await self.sealed()
        keys = pinned_keys(public_key)
        kept = [cp for cp in await self.checkpoints(tenant) if cp.size > index]
        pinned = [cp for cp in kept if cp.public_key in keys] if keys else kept
        if keys and not pinned and (kept or self.key_path is None
                                    or self.public_key not in keys):
            newest = f": the newest that does is signed by key {kept[-1].key_id}" if kept \
                else ""
            raise UserError(f"no checkpoint of tenant {tenant!r} signed by key "
                            f"{' or '.join(key_id(k) for k in keys)} covers entry "
                            f"{index}{newest}")
        cp = self._signed(pinned[-1], tenant) if pinned else await self.checkpoint(tenant)
        size = await self.store.audit_size(tenant)
        if cp.size > size:
            raise AuditError(
                f"tenant {tenant!r}: the log has {size} entries, fewer than its checkpoint "
                f"of size {cp.size} signed (entries cut off, or the store restored from an "
                f"older backup): run {self._suggest('verify', tenant)}")
        if index >= cp.size:
            raise UserError(f"tenant {tenant!r} has no audit entry {index}")
        row = await self.store.audit_entry(tenant, index)
        if row is None:  # (signed, so appended: deleted since, or moved)
            raise self._missing(tenant, index)
        leaf = entry_leaf(tenant, index, row.body)
        proof = await self._proven(
            tenant, cp.size, lambda sub: inclusion_path(sub, index, cp.size),
            lambda hashes: verify_inclusion(leaf, index, cp.size, hashes, cp.root))
        if proof is None:  # (which entry changed: the stored leaf hashes tell only its own)
            what = (f"entry {index} was changed: it no longer matches its leaf hash, so it "
                    f"is not in the log its checkpoint of size {cp.size} signed"
                    if row.leaf != leaf else
                    f"the log's first {cp.size} entries no longer hash to the root their "
                    f"checkpoint signed, so entry {index} cannot be proven: it or another "
                    f"of them was changed since (entry {index} matches its stored leaf "
                    "hash)")
            raise AuditError(f"tenant {tenant!r}: {what}; run "
                             f"{self._suggest('verify', tenant)} to find the first bad one",
                             index=index)
        return {"format": PROOF_FORMAT, "tenant": tenant, "index": index,
                "entry": _b64(row.body), "leaf_hash": _b64(leaf), "tree_size": cp.size,
                "proof": [_b64(h) for h in proof], "checkpoint": cp.to_dict()}

    async def prove_consistency(self, tenant: str, size1: int) -> dict[str, Any]:
        """A consistency proof from ``tenant``'s kept checkpoint of ``size1`` entries to its
        newest: that the log of the newest is the log of the older with entries appended,
        nothing changed. A JSON-ready dict with both checkpoints, which a third party who
        holds the older one (published) checks with :func:`check_consistency` and the
        signer's public key. It is hashed from the kept tile roots and the tiles it cuts,
        not from every entry (:func:`verify_log` reads them): an :class:`AuditError` if
        those no longer link the two roots, or an entry of a tile it reads is missing."""
        size = _integer(size1)  # ('3' said "no checkpoint of size 3 (kept sizes: 3, 4)")
        if size is None:
            raise UserError(f"a checkpoint's size is an integer, got {size1!r}")
        size1 = size
        await self.sealed()
        kept = await self.checkpoints(tenant)
        old = next((cp for cp in kept if cp.size == size1), None)
        if old is None:
            sizes = ", ".join(str(cp.size) for cp in kept) or "none"
            raise UserError(f"tenant {tenant!r} has no checkpoint of size {size1}: a "
                            f"consistency proof starts from a signed one (kept sizes: {sizes})")
        new = kept[-1]
        self._signed(old, tenant)
        self._signed(new, tenant)
        if new.size <= size1:
            raise UserError(f"the newest checkpoint of tenant {tenant!r} is of size {size1}: "
                            "there is nothing to prove until a larger one is signed "
                            f"({self._suggest('checkpoint', tenant)})")
        size = await self.store.audit_size(tenant)
        if new.size > size:
            raise AuditError(f"tenant {tenant!r}: the log has {size} entries, fewer than its "
                             f"checkpoint of size {new.size} signed: run "
                             f"{self._suggest('verify', tenant)}")
        proof = await self._proven(
            tenant, new.size, lambda sub: consistency_path(sub, size1, new.size),
            lambda hashes: verify_consistency(size1, new.size, hashes, old.root, new.root))
        if proof is None:
            raise AuditError(f"tenant {tenant!r}: the log no longer holds both its checkpoint "
                             f"of size {size1} and its checkpoint of size {new.size}: run "
                             f"{self._suggest('verify', tenant)}")
        return {"format": CONSISTENCY_FORMAT, "tenant": tenant, "size1": size1,
                "size2": new.size, "proof": [_b64(h) for h in proof],
                "checkpoint1": old.to_dict(), "checkpoint2": new.to_dict()}

    async def _proven(self, tenant: str, size: int,
                      build: Callable[[Callable[[int, int], bytes]], list[bytes]],
                      check: Callable[[list[bytes]], None]) -> list[bytes] | None:
        """A proof over the tenant's tree of ``size`` leaves that ``check`` accepts, built
        from the kept tile roots, then (if they fail) from rebuilt ones; ``None`` if
        neither holds (the log changed under its checkpoint); an :class:`AuditError` naming
        the entry if one it is hashed from is not stored."""
        def holds(proof: list[bytes]) -> bool:
            try:
                check(proof)
            except AuditError:
                return False
            return True

        for rebuild in (False, True):
            try:
                proof = await with_subtrees(self.store, tenant, size, build, check=holds,
                                            rebuild=rebuild)
            except Missing as e:
                raise self._missing(tenant, e.index) from None
            if proof is not None:
                return proof
        return None

    def _signed(self, cp: Checkpoint, tenant: str) -> Checkpoint:
        """``cp``, a kept checkpoint a proof is made against, if its signature holds (by
        its own key: a pinned one was chosen by it); else an :class:`AuditError`: a proof
        against it would not check."""
        try:
            cp.check()
        except AuditError as e:
            raise AuditError(f"{e} (changed in the store): no proof is made; run "
                             f"{self._suggest('verify', tenant)}") from None
        return cp

    def _missing(self, tenant: str, index: int) -> AuditError:
        """Entry ``index`` of the log is not stored: no proof can be made from it."""
        return AuditError(f"tenant {tenant!r}: audit entry {index} is missing (deleted, or "
                          "the entries after it renumbered): no proof is made; run "
                          f"{self._suggest('verify', tenant)}", index=index)

    async def consistency(self, tenant: str, size1: int, size2: int) -> list[bytes]:
        """A consistency proof between two sizes of ``tenant``'s log."""
        await self.sealed()
        try:
            proof = await with_subtrees(self.store, tenant, size2,
                                        lambda sub: consistency_path(sub, size1, size2))
        except Missing as e:
            raise self._missing(tenant, e.index) from None
        assert proof is not None  # (no check: always one)
        return proof


def _integer(value: object) -> int | None:
    """``value`` as an ``int`` if it is an integer of any type (``__index__``: numpy's),
    not a bool (``True`` is no index); ``None`` if not."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _signed(cp: Checkpoint) -> bool:
    """Whether ``cp`` is signed by the key it names (a forged one is left to the check of
    its signature, which says so more precisely than where its row is)."""
    try:
        cp.check()
    except (AuditProofError, UserError):
        return False
    return True

