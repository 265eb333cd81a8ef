"""Rights of data subjects on a store: erasure, access (export) and retention by age.

Erasure destroys the subject's key and deletes every session that names the subject (with
its journal, signals, watches and the shared-state versions it wrote) in one transaction,
records the erasure (a keyed fingerprint of the subject, never its name), then compacts
the store so no deleted row survives in its files (see ``Store.compact``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from convoy._errors import UserError
from convoy.privacy._keys import KeyRing
from convoy.privacy._seal import (
    is_sealed,
    sealed_subject,
    session_aad,
    state_aad,
    step_aad,
    unseal,
)
from convoy.stores._protocol import Erasure, SessionFilter, Store


async def erase_subject(store: Store, keys: KeyRing, tenant: str, subject: str) -> Erasure:
    """Erase ``tenant``'s data subject ``subject`` (see the module docstring)."""
    ref = keys.master.ref(tenant, subject)
    rows = await store.subject_sessions(tenant, subject)
    if not rows and await store.subject_key_get(tenant, subject) is None:
        raise _unknown(store, tenant, subject, ref, await store.erasures(tenant=tenant))
    await _drop_session_kv(store, [r.id for r in rows])
    event = await store.purge(tenant, [r.id for r in rows], reason="erasure",
                              subject=subject, subject_ref=ref)
    keys.forget(tenant, subject)
    await store.compact()
    return event


async def export_subject(store: Store, keys: KeyRing, tenant: str,
                         subject: str) -> dict[str, Any]:
    """Everything ``store`` holds about ``tenant``'s subject ``subject``, as JSON data:
    its sessions (input, output, error, headers, every journaled step), the shared-state
    versions they wrote, and ``copies``: what other sessions of the tenant hold of its data
    (they read it, and what they wrote from it is sealed under its key too), opened.
    ``store`` must open sealed values (a sealing store)."""
    rows = await store.subject_sessions(tenant, subject)
    if not rows and await store.subject_key_get(tenant, subject) is None:
        raise _unknown(store, tenant, subject, keys.master.ref(tenant, subject),
                       await store.erasures(tenant=tenant))
    sessions = []
    for r in rows:
        journal = await store.journal(r.id, tenant=tenant)
        sessions.append({
            "id": r.id, "workflow": r.workflow, "version": r.version, "status": r.status,
            "created": r.created, "finished": r.finished, "input": _json(r.input),
            "output": _json(r.output), "error": _json(r.error), "headers": r.header_map,
            "steps": [{"key": s.key, "kind": s.kind, "target": s.target, "status": s.status,
                       "agent": s.agent, "at": s.at, "result": _json(s.result)}
                      for s in journal]})
    state = [{"namespace": e.namespace, "key": e.key, "version": e.version,
              "value": _json(e.value), "session": e.session_id, "step": e.step_key,
              "at": e.at}
             for e in await store.state_written_by(tenant, [r.id for r in rows])]
    copies = await _copies(getattr(store, "inner", store), keys, tenant, subject,
                           {r.id for r in rows})
    return {"format": "convoy-subject-export/1", "tenant": tenant, "subject": subject,
            "sessions": sessions, "state": state, "copies": copies}


async def _copies(raw: Store, keys: KeyRing, tenant: str, subject: str,
                  own: set[str]) -> dict[str, Any]:
    """The values of the tenant's other sessions (their input, output, error, journaled
    steps, and the state versions they wrote) sealed under ``subject``'s key, opened as far
    as the keys of their layers go. A scan of the tenant's sessions and journals: its cost
    grows with the tenant, as an access request's does."""
    sessions: list[dict[str, Any]] = []
    state: list[dict[str, Any]] = []
    offset = 0
    while True:
        rows = await raw.list_sessions(SessionFilter(tenant=tenant, limit=500, offset=offset))
        if not rows:
            break
        offset += len(rows)
        others = [r for r in rows if r.id not in own]
        for r in others:
            found: dict[str, Any] = {}
            for part, text in (("input", r.input), ("output", r.output), ("error", r.error)):
                held, value = await _held(keys, tenant, subject,
                                          session_aad(tenant, r.id, part), text)
                if held:
                    found[part] = value
            steps = []
            for st in await raw.journal(r.id, tenant=tenant):
                held, value = await _held(keys, tenant, subject,
                                          step_aad(tenant, r.id, st.key), st.result)
                if held:
                    steps.append({"key": st.key, "kind": st.kind, "target": st.target,
                                  "status": st.status, "at": st.at, "result": value})
            if found or steps:
                sessions.append({"id": r.id, "workflow": r.workflow, "status": r.status,
                                 "created": r.created, **found, "steps": steps})
        for e in await raw.state_written_by(tenant, [r.id for r in others]):
            held, value = await _held(keys, tenant, subject, state_aad(
                e.tenant, e.namespace, e.key, e.session_id, e.step_key), e.value)
            if held:
                state.append({"namespace": e.namespace, "key": e.key, "version": e.version,
                              "value": value, "session": e.session_id, "step": e.step_key,
                              "at": e.at})
    return {"sessions": sessions, "state": state}


async def _held(keys: KeyRing, tenant: str, subject: str, aad: str,
                text: str | None) -> tuple[bool, Any]:
    """Whether ``text`` has a sealed layer of ``subject``, and its value opened layer by
    layer (``{"sealed": true}`` from a layer whose key is gone)."""
    held = False
    while text is not None and is_sealed(text):
        name = sealed_subject(text)
        held = held or name == subject
        key = await keys.load(tenant, name, create=False)
        if key is None:
            return held, {"sealed": True}
        text = unseal(key, aad, text)
    return held, _json(text) if held else None


async def purge_older_than(store: Store, seconds: float, now: float, *,
                           tenant: str | None = None) -> list[Erasure]:
    """Delete every finished session (of ``tenant``) that finished more than ``seconds``
    before ``now``, as erasure does (subject keys stay: their subjects may come back)."""
    if seconds <= 0:
        raise UserError(f"a retention age must be > 0 seconds, got {seconds}")
    events: list[Erasure] = []
    while True:
        ids = await store.finished_before(now - seconds, tenant=tenant, limit=1000)
        if not ids:
            break
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for row in (await store.get_sessions(ids)).values():
            by_tenant[row.tenant].append(row.id)
        for t, group in sorted(by_tenant.items()):
            await _drop_session_kv(store, group)
            events.append(await store.purge(t, group, reason="retention"))
    if events:
        await store.compact()
    return events


async def _drop_session_kv(store: Store, session_ids: list[str]) -> None:
    """Delete what interceptors keep per session (the spans of the embedded trace store)."""
    from convoy.observability._tracing import SPANS_NAMESPACE

    for sid in session_ids:
        ns = SPANS_NAMESPACE + sid
        for key in await store.kv_all(ns):
            store.kv_put(ns, key, None)


def _unknown(store: Store, tenant: str, subject: str, ref: str,
             erasures: list[Erasure]) -> UserError:
    done = [e for e in erasures if e.subject_ref == ref]
    if done:
        return UserError(f"subject {subject!r} of tenant {tenant!r} was erased already "
                         f"(erasure #{done[-1].seq}); nothing of it is left")
    return UserError(f"unknown subject {subject!r} in tenant {tenant!r}: no session names it "
                     "and it has no key")


def _json(text: str | None) -> Any:
    if text is None:
        return None
    if is_sealed(text):
        return {"sealed": True}  # its key is gone: nothing readable is left
    try:
        return json.loads(text)
    except ValueError:
        return text


PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` in seconds."""
    t = text.strip().lower()
    unit = PERIODS.get(t[-1:]) if t else None
    try:
        value = float(t[:-1]) if unit else float("nan")
    except ValueError:
        value = float("nan")
    if unit is None or not value > 0:
        raise UserError(f"age {text!r} is not a positive number with a unit s, m, h, d or w "
                        "(e.g. '30d')")
    return value * unit


__all__ = ["erase_subject", "export_subject", "parse_age", "purge_older_than"]
