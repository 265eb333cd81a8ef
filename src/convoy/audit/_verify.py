"""``convoy audit verify``: re-derive a tenant's log from its stored entries and compare it
with what was committed to.

One pass over the entries, by index:

- every index from 0 on is present (a gap: an entry was deleted, or the ones after it
  renumbered);
- every entry hashes to its stored leaf, and the leaf commits to the entry's index and
  tenant (a flipped byte, an entry moved, swapped or inserted from elsewhere);
- every entry decodes as an :class:`~convoy.audit.AuditEvent`;
- the tree of the first ``n`` entries has the root of every signed checkpoint of size ``n``
  (kept in the store, or published and handed in): a rewrite that recomputed every hash is
  a fork from the checkpoint, localised between the last checkpoint that still matches and
  the first that does not; and every checkpoint's signature holds (by the pinned key);
- the log is as long as the number of entries appended, and as every checkpoint (an entry
  cut off the end, or one added past it).

The first problem raises :class:`~convoy.AuditError` naming the first bad index. An entry
that does not match its leaf is named once the next checkpoint has been checked with the
leaves as stored: a rewrite before it, its hashes recomputed, shows there as a fork from
an earlier index, and both are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from convoy._errors import AuditError
from convoy.audit._checkpoint import Checkpoint, pinned
from convoy.audit._event import AuditEvent
from convoy.audit._log import AuditLog
from convoy.audit._merkle import Frontier, entry_leaf
from convoy.stores._protocol import AuditRow, Store

_CHUNK = 10_000


@dataclass(slots=True, frozen=True, kw_only=True)
class VerifyReport:
    """A tenant's log that verified: its size, root, how many checkpoints it matched, and
    how many of its first entries the largest of them covers (``covered < size``: the
    entries after it are signed by no checkpoint yet, so cutting them off together with
    the count of entries appended would not be seen)."""

    tenant: str
    size: int
    root: bytes
    checkpoints: int
    covered: int = 0
    #: The ids of the keys that signed the checkpoints it matched (:attr:`Checkpoint.key_id`).
    signers: tuple[str, ...] = ()


async def _entries(store: Store, tenant: str, start: int
                   ) -> tuple[list[AuditRow], AuditError | None]:
    """The next chunk of stored entries from ``start``, and the error of the first row in
    it the store cannot even read as an entry (a column of another type), which fails the
    whole chunk: the rows before that one (found by halving the chunk: a few reads, however
    far its index) are returned, to be checked first (a bad entry before it is the first
    one to name)."""
    try:
        return list(await store.audit_entries(tenant, start, _CHUNK)), None
    except AuditError as e:
        if e.index is None or e.index <= start:
            raise  # (an index that is not a number: said as that, wherever it sorts)
        first, rows = e, []
        lo, hi = 0, _CHUNK  # rows that read, rows that do not (from ``start``, by count)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                rows, lo = list(await store.audit_entries(tenant, start, mid)), mid
            except AuditError as err:
                first, hi = err, mid
        return rows[:lo], first


async def verify_log(log: AuditLog, tenant: str, *, published: Sequence[Checkpoint] = (),
                     public_key: str | Sequence[str] | None = None) -> VerifyReport:
    """Verify ``tenant``'s log (see the module docstring); ``published``: checkpoints kept
    outside the store; ``public_key`` (base64): the key every checkpoint must be signed by,
    or the keys one of which must have signed each (a rotation's old and new keys; default:
    the log's key file, if it has one)."""
    await log.sealed()
    store = log.store
    if public_key is None:
        public_key = log.public_key
    keys = pinned(public_key)
    appended = await store.audit_size(tenant)
    kept = await log.checkpoints(tenant)
    every = [*kept, *(cp for cp in published if cp.tenant == tenant)]
    for cp in every:  # each signature, a kept one beside its published copy too
        cp.check(keys or None)
    # (a published checkpoint that is also kept in the store counts once)
    unique = {cp.to_json(): cp for cp in every}
    cps = sorted(unique.values(), key=lambda cp: cp.size)
    pending = [cp for cp in cps if cp.size > 0]
    outside = {cp.to_json() for cp in published if cp.tenant == tenant}
    frontier = Frontier()
    good = 0  # the size of the last checkpoint the entries still match
    # ... of those published (kept outside the store): the store's own may have been
    # signed over a fork (a copy of the store, written to and signed by the real key)
    good_outside = 0

    def reached(n: int, known: int | None = None) -> bool:
        """Check the checkpoints of size ``n`` (whether there were any). ``known``: an
        entry found bad already (the first bad one is not after it)."""
        nonlocal good, good_outside
        sized: list[Checkpoint] = []  # every checkpoint of this size, before any counts
        while pending and pending[0].size == n:
            sized.append(pending.pop(0))
        if not sized:
            return False
        root = frontier.root()
        bad = [cp for cp in sized if cp.root != root]
        if bad:
            # (one that matches beside it was signed again over a rewritten log)
            again = "" if len(bad) == len(sized) else (
                f" (another checkpoint of size {n}, signed too, has the log's root: the "
                "log was rewritten and signed again)")
            # (the first leaf unlike the signed ones is between the last checkpoint that
            # still matches and this one, and not after an entry found bad)
            last = n - 1 if known is None else max(good, min(known, n - 1))
            raise AuditError(
                f"tenant {tenant!r}: the log forked from its signed checkpoint of size "
                f"{n}: " + (f"entry {good} no longer hashes to the signed root; the bad "
                            f"entry is at index {good}" if good == n - 1 else
                            f"entries {good} to {n - 1} no longer hash to the signed root; "
                            + (f"the first bad entry is at index {good}" if last == good
                               else f"the first bad entry is at index {good} to {last}"))
                + again, index=good)
        good = n
        if any(cp.to_json() in outside for cp in sized):
            good_outside = n
        return True

    below = await store.audit_entries(tenant, -(2**63), 1)  # (the lowest index stored)
    if below and below[0].index < 0:
        raise AuditError(f"tenant {tenant!r}: an audit entry is stored at index "
                         f"{below[0].index}, before the log's first (inserted)")
    n = 0
    # An entry that does not match its leaf: named once the next checkpoint says whether
    # the leaves stored before it still hash to its root (a rewrite before the entry, its
    # hashes recomputed, is a fork from an earlier index: the first bad one).
    unmatched: AuditError | None = None
    # From the first unmatched entry on: the tree of the leaves the entries hash to, where
    # ``frontier`` has the stored ones. If it has a signed root where ``frontier`` does
    # not, the entries are as signed and a stored leaf hash was changed.
    hashed: Frontier | None = None
    while True:
        rows, unreadable = await _entries(store, tenant, n)
        for row in rows:
            if row.index != n:
                raise unmatched or AuditError(
                    f"tenant {tenant!r}: audit entry {n} is missing (deleted, or the entries "
                    "after it renumbered; or one inserted at a later index: the next one "
                    f"stored is {row.index})", index=n)
            leaf = entry_leaf(tenant, n, row.body)
            if unmatched is None and row.leaf != leaf:
                unmatched = AuditError(f"tenant {tenant!r}: audit entry {n} does not match "
                                       "its leaf hash (changed, moved or inserted)", index=n)
                hashed = frontier.copy()
            if hashed is not None:
                hashed.append(leaf)
            if unmatched is None:
                try:
                    AuditEvent.decode(row.body)
                except AuditError as e:
                    raise AuditError(f"tenant {tenant!r}: audit entry {n}: {e}",
                                     index=n) from None
            frontier.append(row.leaf)
            n += 1
            if hashed is not None and pending and pending[0].size == n and \
                    frontier.root() != pending[0].root and all(
                        cp.root == hashed.root() for cp in pending if cp.size == n):
                assert unmatched is not None and unmatched.index is not None
                u = unmatched.index
                raise AuditError(f"tenant {tenant!r}: audit entry {u} does not match its "
                                 "leaf hash: the stored leaf hash was changed (the entry "
                                 "itself still hashes to the root its checkpoint of size "
                                 f"{n} signed)", index=u)
            try:
                checked = reached(n, None if unmatched is None else unmatched.index)
            except AuditError as fork:
                if unmatched is None:
                    raise
                raise AuditError(f"{unmatched}; and {str(fork).partition(': ')[2]}",
                                 index=min(fork.index or 0, unmatched.index or 0)) from None
            if unmatched is not None and (checked or not pending):
                raise unmatched  # (the leaves before it still hash to the signed root)
        if unreadable is not None:
            if unmatched is not None:
                raise unmatched
            at = unreadable.index
            if at is not None and n < at and n < appended:  # (rows missing before it)
                raise AuditError(f"tenant {tenant!r}: audit entry {n} is missing (deleted, or "
                                 "the entries after it renumbered; or one inserted at a "
                                 f"later index: the next one stored is {at})", index=n)
            raise unreadable
        if len(rows) < _CHUNK:
            break
    if unmatched is not None:
        raise unmatched
    if n < appended or pending:
        expected = max(appended, pending[-1].size if pending else 0)
        if n == 0:
            raise AuditError(f"tenant {tenant!r}: the log has no entries but had {expected}: "
                             "every entry was cut off (deleted)", index=0)
        if pending and good < n and appended <= n:
            # (a checkpoint of more entries than are left, and a count of entries appended
            # moved back with them, cannot tell a cut from a rewrite of the entries since
            # the last checkpoint that still matches: a middle entry deleted, the rest
            # renumbered and hashed again; a store restored from a backup)
            raise AuditError(
                f"tenant {tenant!r}: the log ends at entry {n - 1} but had {expected} "
                f"entries: entries from {n} on were cut off (truncated), or entries from "
                f"{good} on were rewritten with the cut (no checkpoint signed them as they "
                f"are): the first bad entry is at index {good} or after", index=good)
        past = [cp.size for cp in pending if cp.to_json() in outside]
        if good_outside < good and past:
            # (a published checkpoint past the log's end, and one only the store keeps
            # matched beyond the last published one: a cut, or a fork the store signed)
            raise AuditError(
                f"tenant {tenant!r}: the log ends at entry {n - 1} but a published "
                f"checkpoint signed {past[-1]} entries: entries from {n} on were cut off "
                "(truncated), or "
                + (f"the log forked after the published checkpoint of size {good_outside} "
                   f"(its checkpoint of size {good}, kept in the store only, signed the "
                   f"fork): the first bad entry is at index {good_outside} to {n}"
                   if good_outside else
                   f"the log was rewritten and signed again in the store (its checkpoints "
                   f"up to size {good} are kept in the store only, and no published one "
                   f"still matches it to tell which): the first bad entry is at index 0 to "
                   f"{n}; a published checkpoint of size {n} or less would narrow it"),
                index=good_outside)
        raise AuditError(f"tenant {tenant!r}: the log ends at entry {n - 1} but had "
                         f"{expected} entries: entries from {n} on were cut off (truncated)"
                         + ("" if pending and pending[-1].size > n else
                            ", or the count was raised (the store was edited; no signed "
                            "checkpoint covers them to tell which)"), index=n)
    if n > appended:
        # (the count read first: entries an engine appended since are counted now, and
        # were verified as the others; an entry stored past the count no append moved was
        # inserted)
        appended = max(appended, await store.audit_size(tenant))
    if n > appended and good > appended:  # (entries a checkpoint signed, as it signed them)
        raise AuditError(f"tenant {tenant!r}: the log's count of entries says {appended}, "
                         f"but its signed checkpoint of size {good} covers {good} entries, "
                         "which the log holds as signed: the count was changed (the store "
                         "was edited or damaged)", index=appended)
    if n > appended:
        raise AuditError(f"tenant {tenant!r}: the log has {n} entries but {appended} were "
                         f"appended: entries from {appended} on were inserted, or the count "
                         "was lowered (the store was edited; no signed checkpoint covers "
                         "them to tell which)", index=appended)
    return VerifyReport(tenant=tenant, size=n, root=frontier.root(), checkpoints=len(cps),
                        covered=good, signers=tuple(sorted({cp.key_id for cp in cps})))
