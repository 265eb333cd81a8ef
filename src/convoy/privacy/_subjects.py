"""Rights of data subjects on a store: erasure, access (export) and retention by age.

Erasure destroys the subject's key and deletes every session that names the subject (with
its journal, signals, watches, kept spans, audit cursor and the shared-state versions it
wrote) in one transaction,
records the erasure (a keyed fingerprint of the subject, never its name), then compacts
the store so no deleted row survives in its files (see ``Store.compact``).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from convoy._errors import StoreError, SubjectErased, UnknownSubject, UserError
from convoy._text import plural, quoted
from convoy.privacy._keys import REFS_NAMESPACE, KeyRing
from convoy.privacy._seal import (
    session_aad,
    spans_aad,
    state_aad,
    step_aad,
)
from convoy.stores._protocol import (
    SPANS_NAMESPACE,
    Erasure,
    SessionFilter,
    SessionRow,
    Store,
)
from convoy.stores._subjects_sql import refuse_held


async def erase_subject(store: Store, keys: KeyRing, tenant: str, subject: str, *,
                        audit: Callable[[Erasure], bytes] | None = None) -> Erasure:
    """Erase ``tenant``'s data subject ``subject`` (see the module docstring): what
    :func:`erase_plan` finds, checked as it checks it. ``audit``: the audit entry of the
    erasure, appended in its transaction (see :meth:`~convoy.stores.Store.purge`)."""
    try:
        rows, _ = await erase_plan(store, keys, tenant, subject)
    except (UnknownSubject, SubjectErased):
        await _drop_labels(store, tenant, subject)  # of a key whose write never landed
        raise
    try:
        event = await store.purge(tenant, [r.id for r in rows], reason="erasure",
                                  subject=subject, subject_ref=keys.master.ref(tenant, subject),
                                  audit=audit)
    except StoreError as e:
        raise _stopped(e, "nothing was erased") from None
    keys.forget(tenant, subject)
    return event  # (not compacted yet: see :func:`compact_after`)


async def erase_plan(store: Store, keys: KeyRing, tenant: str,
                     subject: str) -> tuple[list[SessionRow], bool]:
    """What :func:`erase_subject` would delete, writing nothing: the sessions that name
    the subject, and whether its key is held. Raises as it does for a subject that is
    unknown (:class:`UnknownSubject`), erased already (:class:`SubjectErased`), or one of
    whose sessions another engine runs now (:class:`~convoy.SessionsHeld`: it would
    refuse)."""
    # The master key must be the store's: with another one, the erasure would be recorded
    # under a fingerprint that is not the subject's (and an erased subject would look
    # unknown). Its key need not open: one an earlier Convoy wrapped under another master
    # key is destroyed all the same.
    await keys.check()
    rows = await store.subject_sessions(tenant, subject)
    key = await store.subject_key_get(tenant, subject) is not None
    if not rows and not key:
        raise _unknown(store, tenant, subject, keys.master.ref(tenant, subject),
                       await store.erasures(tenant=tenant))
    refuse_held([(r.id, r.status, r.owner, r.lease_until) for r in rows], store.clock())
    return rows, key


def _stopped(e: StoreError, what: str) -> StoreError:
    """``e`` (a write of an erasure or purge that failed: the store locked, gone) as the
    command says it: ``what`` was done, and why, without the advice for a session's step."""
    why = str(e).partition(" (if it was a session's step")[0]
    why = why.partition(": this write was not made")[0]  # (said by ``what``)
    return StoreError(f"{what}: {why}; run the same command again", transient=e.transient)


async def compact_after(store: Store, done: str, also: Exception | None = None) -> None:
    """Compact ``store`` after a purge (``done``: what happened, as the error says it):
    a compaction another process keeps from running is one line that says the purge
    happened all the same, and what is left to do (and ``also``, an error the purge met
    besides, which the caller raises if this does not)."""
    try:
        await store.compact()
    except StoreError as e:
        more = "" if also is None else f"; and {also}"
        raise StoreError(f"{done}, but {e}{more}", transient=e.transient) from None


async def export_subject(store: Store, keys: KeyRing, tenant: str,
                         subject: str) -> dict[str, Any]:
    """Everything ``store`` holds about ``tenant``'s subject ``subject``, as JSON data:
    its sessions (input, output, error, headers, every journaled step, the spans of the
    embedded trace store), the shared-state
    versions they wrote, and ``copies``: what other sessions of the tenant hold of its data
    (they read it, and what they wrote from it is sealed under its key too).

    A value is opened only when every sealed layer of it is the subject's: one that holds
    another subject's data too (a session that read both) is ``{"sealed": true,
    "withheld": ...}``, since a copy for one person must not disclose another's data; one
    whose key is gone (an erased subject) is ``{"sealed": true}``."""
    raw = getattr(store, "inner", store)  # values as stored: opened here, layer by layer
    await keys.check()  # a wrong master key, not "unknown subject"
    rows = await raw.subject_sessions(tenant, subject)
    if not rows and await raw.subject_key_get(tenant, subject) is None:
        raise _unknown(store, tenant, subject, keys.master.ref(tenant, subject),
                       await raw.erasures(tenant=tenant))
    await keys.load(tenant, subject, create=False)  # its key opens (else: one line, why)
    opener = _Opener(keys, tenant, subject)
    sessions = [await _session(raw, opener, r, always=True) for r in rows]
    state = await _state(raw, opener, [r.id for r in rows], always=True)
    copies: list[dict[str, Any]] = []
    copied_state: list[dict[str, Any]] = []
    own = {r.id for r in rows}
    after: tuple[float, str] | None = None
    while True:  # the tenant's other sessions: a scan, as an access request's is
        page = await raw.list_sessions(SessionFilter(tenant=tenant, limit=500, after=after))
        if not page:
            break
        after = (page[-1].created, page[-1].id)
        others = [r for r in page if r.id not in own]
        for r in others:
            found = await _session(raw, opener, r, always=False)
            if found["steps"] or found["spans"] or any(p in found for p in _PARTS):
                copies.append(found)
        copied_state += await _state(raw, opener, [r.id for r in others], always=False)
    return {"format": EXPORT_FORMAT, "tenant": tenant, "subject": subject,
            "sessions": sessions, "state": state,
            "copies": {"sessions": copies, "state": copied_state}}


#: The format of an export. 2: a state step's result is a state version as ``state``
#: holds one (:func:`_version`), not the journal's record of it (its value JSON text, its
#: writer's fields named otherwise); each state version names its writer's agent.
EXPORT_FORMAT = "convoy-subject-export/2"
_PARTS = ("input", "output", "error")
_NOT_HELD = object()
_WITHHELD = {"sealed": True, "withheld": "it holds another data subject's data too"}
_ERASED = {"sealed": True, "withheld": "it holds an erased data subject's data too"}


class _Opener:
    """Opens the values of one subject's export (see :func:`export_subject`)."""

    def __init__(self, keys: KeyRing, tenant: str, subject: str) -> None:
        self.keys, self.tenant, self.subject = keys, tenant, subject

    async def open(self, aad: str, text: str | None, *, always: bool) -> Any:
        """The value to export; ``_NOT_HELD`` for one with no sealed layer of the subject,
        unless ``always`` (a value of the subject's own session: plain ones are its too)."""
        peeled, text = await self.keys.peel(self.tenant, aad, text)
        layers = [name for name, _ in peeled]
        gone = bool(peeled) and peeled[-1][1] is None
        if self.subject not in layers and not (always and not layers):
            return dict(_ERASED if gone else _WITHHELD) if always else _NOT_HELD
        if any(name != self.subject for name in layers):
            return dict(_WITHHELD)
        return dict(_ERASED) if gone else _json(text)


async def _session(raw: Store, opener: _Opener, r: SessionRow, *,
                   always: bool) -> dict[str, Any]:
    """One session's part of the export: all of it (``always``: the subject's own), or
    only the values that hold the subject's data (another session's copies)."""
    t, sid = opener.tenant, r.id
    out: dict[str, Any] = {"id": sid, "workflow": r.workflow, "version": r.version,
                           "status": r.status, "created": r.created, "finished": r.finished}
    for part, text in (("input", r.input), ("output", r.output), ("error", r.error)):
        value = await opener.open(session_aad(t, sid, part), text, always=always)
        if value is not _NOT_HELD:
            out[part] = value
    if always:
        out["headers"] = r.header_map
    steps = []
    for st in await raw.journal(sid, tenant=t):
        value = await opener.open(step_aad(t, sid, st.key), st.result, always=always)
        if value is not _NOT_HELD:
            steps.append({"key": st.key, "kind": st.kind, "target": st.target,
                          "status": st.status, "agent": st.taken_by, "at": st.at,
                          "result": _state_result(value) if st.kind == "state" else value})
    out["steps"] = steps
    out["spans"] = await _spans(raw, opener, sid, always=always)
    return out


async def _spans(raw: Store, opener: _Opener, sid: str, *, always: bool) -> list[Any]:
    """The spans the embedded trace store keeps for a session (sealed as its data is),
    each as ``convoy trace --json`` prints it; a chunk that cannot be opened for this
    subject is one ``{"sealed": true, ...}`` item."""
    from convoy.observability._spans import load_chunks

    out: list[Any] = []
    t = opener.tenant
    for key, text in sorted((await raw.kv_all(SPANS_NAMESPACE + sid)).items()):
        value = await opener.open(spans_aad(t, sid, key), text, always=always)
        if value is _NOT_HELD:
            continue
        if isinstance(value, dict) and "sealed" not in value:
            try:
                out += load_chunks([json.dumps(value)])
                continue
            except ValueError:
                pass
        out.append(value)
    return out


async def _state(raw: Store, opener: _Opener, session_ids: list[str], *,
                 always: bool) -> list[dict[str, Any]]:
    """The shared-state versions these sessions wrote; with ``always`` (the subject's own
    sessions) also every version of the keys they created (:meth:`~convoy.stores.Store.
    state_created`), whoever wrote it (a person's answer to the subject's question;
    erasure deletes them whole), and of the other keys they wrote, the versions written
    outside any session that hold the subject's data (a person's, in the inbox, to a key
    whose current version was the subject's: sealed under its key); else only those that
    hold the subject's data."""
    out = []
    entries = [(e, always) for e in await raw.state_written_by(opener.tenant, session_ids)]
    if always:
        ids = set(session_ids)
        created = set(await raw.state_created(opener.tenant, session_ids))
        for ns, key in sorted({(e.namespace, e.key) for e, _ in entries}):
            whole = (ns, key) in created
            entries += [(e, whole) for e in await raw.state_history(opener.tenant, ns, key)
                        if e.session_id not in ids and (whole or e.session_id is None)]
    for e, own in entries:
        value = await opener.open(state_aad(e.tenant, e.namespace, e.key, e.session_id,
                                            e.step_key), e.value, always=own)
        if value is not _NOT_HELD:
            out.append(_version(e.namespace, e.key, e.version, value, e.session_id,
                                e.agent, e.step_key, e.at))
    return out


def _version(namespace: str, key: str, version: int, value: Any, session: str | None,
             agent: str | None, step: str | None, at: float) -> dict[str, Any]:
    """One version of shared state as the export holds it, wherever it does (``state``,
    ``copies.state``, a state step's result): ``value`` the JSON value itself."""
    return {"namespace": namespace, "key": key, "version": version, "value": value,
            "session": session, "agent": agent, "step": step, "at": at}


#: The fields of a state version as the journal records a state step's result.
_ENTRY_FIELDS = frozenset(("namespace", "key", "version", "value", "session_id", "agent",
                           "step_key", "at"))


def _state_result(result: Any) -> Any:
    """A state step's result (a ``get`` or ``set``: one version or none; a ``history`` or
    ``keys``: a list; a ``watch``: a flag) with each version as :func:`_version` makes
    it; a withheld result as it is."""
    if isinstance(result, list):
        return [_state_result(r) for r in result]
    if isinstance(result, dict) and result.keys() >= _ENTRY_FIELDS and \
            isinstance(result["value"], str):
        return _version(result["namespace"], result["key"], result["version"],
                        _json(result["value"]), result["session_id"], result["agent"],
                        result["step_key"], result["at"])
    return result


def retention_age(seconds: float) -> float:
    """``seconds`` as a retention age (a finite number of seconds > 0), or the
    :class:`~convoy.UserError` that says what is wrong with it."""
    if isinstance(seconds, str):  # (the command line's '30d')
        raise UserError(f"a retention age is a number of seconds, got the text {seconds!r}: "
                        f"pass convoy.privacy.parse_age({seconds!r}), or 30 * 86400")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or \
            not 0 < seconds < math.inf:  # (NaN purged nothing, True one second's worth)
        raise UserError(f"a retention age must be a finite number of seconds > 0, got "
                        f"{seconds!r}")
    return float(seconds)  # (any real type: a Fraction, numpy's)


async def purge_older_than(
        store: Store, seconds: float, now: float, *, tenant: str | None = None,
        audit: Callable[[str], Awaitable[Callable[[Erasure], bytes] | None]] | None = None,
) -> list[Erasure]:
    """Delete every finished session (of ``tenant``) that finished more than ``seconds``
    before ``now``, as erasure does (subject keys stay: their subjects may come back).
    ``audit(tenant)``: what makes the audit entry of a purge of the tenant's sessions,
    appended in its transaction (``None``: none is)."""
    seconds = retention_age(seconds)
    events: list[Erasure] = []
    cutoff = now - seconds
    while True:
        ids = await store.finished_before(cutoff, tenant=tenant, limit=1000)
        if not ids:
            break
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for row in (await store.get_sessions(ids)).values():
            by_tenant[row.tenant].append(row.id)
        for t, group in sorted(by_tenant.items()):
            try:
                # (what is still finished before the cutoff as it commits: not one an
                # answer to its escalation reopened since it was listed)
                events.append(await store.purge(
                    t, group, reason="retention", finished_before=cutoff,
                    audit=None if audit is None else await audit(t)))
            except StoreError as e:
                done = sum(ev.sessions for ev in events)
                raise _stopped(e, f"the purge stopped after {plural(done, 'session')} "
                               "(those stay purged)" if done else "nothing was purged"
                               ) from None
    return events  # (not compacted yet: see :func:`compact_after`)


async def _drop_labels(store: Store, tenant: str, subject: str) -> None:
    """Delete what maps a label to ``subject`` (a purge that destroys its key does too)."""
    raw = getattr(store, "inner", store)
    ns = REFS_NAMESPACE + tenant
    for label, value in (await raw.kv_all(ns)).items():
        if value == subject:
            await raw.kv_put(ns, label, None)


def _unknown(store: Store, tenant: str, subject: str, ref: str,
             erasures: list[Erasure]) -> UserError:
    done = [e for e in erasures if e.subject_ref == ref]
    if done:
        return SubjectErased(f"subject {quoted(subject)} of tenant {quoted(tenant)} was erased "
                             "already "
                             f"(erasure #{done[-1].seq}); nothing of it is left",
                             subject=subject, tenant=tenant, seq=done[-1].seq,
                             at=done[-1].at)
    return UnknownSubject(f"unknown subject {quoted(subject)} in tenant {quoted(tenant)}: no "
                          "session names it and it has no key")


def _json(text: str | None) -> Any:
    """An opened value (peeled to the end: a value of the subject's that looks like a
    sealed one is its own, not a layer)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_DECIMAL_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?")


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` in seconds (a unit in either
    case, but ``M``: read as a month, it is refused rather than taken for minutes)."""
    if text.strip().endswith("M"):
        raise UserError(f"age {quoted(text, 40)}: M could mean months or minutes: write 'm' "
                        "for minutes, or the age in days (e.g. '30d')")
    t = text.strip().lower()
    unit = PERIODS.get(t[-1:]) if t else None
    # (digits, a decimal point, an exponent: not what else float() reads, 30_0 as 300)
    value = float(t[:-1]) if unit and _DECIMAL_NUMBER.fullmatch(t[:-1].strip()) else \
        float("nan")
    if unit is not None and 0 < value < math.inf and value * unit == math.inf:
        raise UserError(f"age {quoted(text, 40)} is too large: give an age in seconds that a "
                        "number can hold (e.g. '30d')")
    if unit is None or not 0 < value * unit < math.inf:  # (inf, nan, 1e400)
        raise UserError(f"age {quoted(text, 40)} is not a positive number with a unit s, m, h, "
                        "d or w (e.g. '30d')")
    return value * unit


__all__ = ["EXPORT_FORMAT", "compact_after", "erase_plan", "erase_subject", "export_subject",
           "parse_age", "purge_older_than"]
