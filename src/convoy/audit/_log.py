"""A tenant's audit log on a store: append events, publish signed checkpoints, prove an
entry is in the log (:class:`AuditLog`)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoy._errors import AuditError, UserError
from convoy.audit._checkpoint import Checkpoint
from convoy.audit._event import AuditEvent
from convoy.audit._keys import load_or_create_key, public_key_text
from convoy.audit._merkle import entry_leaf, tree_root
from convoy.audit._proofs import consistency_path, inclusion_path, verify_inclusion
from convoy.audit._tiles import tile_roots, with_subtrees
from convoy.stores._protocol import Store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: The format of a published inclusion proof.
PROOF_FORMAT = "convoy-audit-inclusion/v1"


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
        self.key_path = None if key_path is None else Path(key_path).expanduser()
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
        size = await self.store.audit_size(tenant)
        if size == 0:  # (a checkpoint of nothing proves nothing, and hides a wiped log)
            raise UserError(f"tenant {tenant!r}'s audit log is empty: there is nothing to "
                            "sign; sign once it has entries")
        leaves = await self.store.audit_leaves(tenant, size)
        if len(leaves) != size:
            raise AuditError(f"tenant {tenant!r}: the log has {len(leaves)} entries but "
                             f"{size} were appended; run 'convoy audit verify'")
        root = tree_root(leaves)
        kept = await self._kept(tenant, size, root)
        if kept is not None:  # the log has not grown: its checkpoint stands as signed
            return kept
        cp = Checkpoint.sign(self.key, tenant=tenant, size=size, root=root,
                             timestamp=self.clock())
        await tile_roots(self.store, tenant, size, leaves=leaves)  # proofs read tiles
        if not await self.store.audit_put_checkpoint(tenant, size, cp.to_json()):
            # another signer kept one of this size first: that one stands
            kept = await self._kept(tenant, size, root)
            if kept is not None:
                return kept
        return cp

    async def _kept(self, tenant: str, size: int, root: bytes) -> Checkpoint | None:
        """The kept checkpoint of ``size``, if there is one; an :class:`AuditError` if its
        root is not the log's (the log was changed since it was signed). A signed
        checkpoint is never replaced, by a new signature or another key's."""
        for cp in await self.checkpoints(tenant):
            if cp.size == size:
                if cp.root != root:
                    raise AuditError(
                        f"tenant {tenant!r}: the log's first {size} entries no longer hash "
                        f"to the root its checkpoint of size {size} signed; run 'convoy "
                        "audit verify'")
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
        try:
            return [Checkpoint.from_json(t)
                    for t in await self.store.audit_checkpoints(tenant)]
        except UserError as e:
            raise AuditError(f"tenant {tenant!r}: a stored checkpoint is unreadable: {e}"
                             ) from None

    async def prove(self, tenant: str, index: int) -> dict[str, Any]:
        """An inclusion proof of entry ``index`` against the newest checkpoint that covers
        it (a new one is signed if none does), as a JSON-ready dict that a third party
        checks with :func:`check_inclusion` and the signer's public key."""
        await self.sealed()
        kept = [cp for cp in await self.checkpoints(tenant) if cp.size > index]
        cp = kept[-1] if kept else await self.checkpoint(tenant)
        row = await self.store.audit_entry(tenant, index)
        if row is None or index >= cp.size:
            raise UserError(f"tenant {tenant!r} has no audit entry {index}")
        leaf = entry_leaf(tenant, index, row.body)
        proof: list[bytes] = []
        for rebuild in (False, True):  # kept tile roots, then (if they fail) rebuilt ones
            proof = await with_subtrees(self.store, tenant, cp.size,
                                        lambda sub: inclusion_path(sub, index, cp.size),
                                        rebuild=rebuild)
            try:
                verify_inclusion(leaf, index, cp.size, proof, cp.root)
                break
            except AuditError:
                continue
        else:
            raise AuditError(f"tenant {tenant!r}: entry {index} is not in the log its "
                             f"checkpoint of size {cp.size} signed; run 'convoy audit verify'",
                             index=index)
        return {"format": PROOF_FORMAT, "tenant": tenant, "index": index,
                "entry": _b64(row.body), "leaf_hash": _b64(leaf), "tree_size": cp.size,
                "proof": [_b64(h) for h in proof], "checkpoint": cp.to_dict()}

    async def consistency(self, tenant: str, size1: int, size2: int) -> list[bytes]:
        """A consistency proof between two sizes of ``tenant``'s log."""
        await self.sealed()
        return await with_subtrees(self.store, tenant, size2,
                                   lambda sub: consistency_path(sub, size1, size2))
