"""``convoy state get|set|history|list``: a tenant's versioned shared state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.table import Table

from convoy import JournalError, UserError
from convoy._text import check_name, plural, quoted, short
from convoy.cli._common import (
    DEFAULT_DB,
    RUN_FAILURE,
    DbOption,
    Scope,
    TenantOption,
    WriteBusyTimeoutOption,
    check_db_path,
    count_option,
    err,
    fail,
    json_value,
    label,
    one_tenant,
    open_store,
    out,
    require_store,
    run_async,
    sealed_by_erased,
    sealed_note,
)
from convoy.cli._json import json_text
from convoy.cli._left_out import warn_left_out
from convoy.cli._render import fmt_time
from convoy.hitl._task import INBOX, RESERVED, check_namespace
from convoy.privacy._seal import is_sealed
from convoy.state._access import refuse_clear_write
from convoy.stores import StateEntry, StateWrite, StateWriteResult
from convoy.stores._rows import DamagedRow, LeftOut

state_app = typer.Typer(
    name="state", no_args_is_help=True, rich_markup_mode="markdown",
    help="Read and write a tenant's versioned shared state (what `ctx.state(...)` shares "
         "between sessions).\n\nExample: `convoy state get customer:42 account`")

NamespaceArg = Annotated[str, typer.Argument(
    metavar="NAMESPACE", help="The namespace, e.g. customer:42 or session:<id>.")]
KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="The key in the namespace.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead.")]


def _decode(text: str) -> Any:
    return json.loads(text)


def _writer(e: StateEntry) -> str:
    """``session s1 (agent billing, step 0/3)``, ``session s1 (outside its run)`` for a
    write on its behalf (the answer to its escalation), or ``-`` for a write from
    outside."""
    if e.session_id is None:
        return "-"
    if e.step_key is None:
        return f"session {e.session_id} (outside its run)"
    agent = f"agent {e.agent}, " if e.agent else ""
    return f"session {e.session_id} ({agent}step {e.step_key})"


def _entry_json(e: StateEntry) -> dict[str, Any]:
    return {"namespace": e.namespace, "key": e.key, "version": e.version,
            "value": _decode(e.value), "session_id": e.session_id, "agent": e.agent,
            "step_key": e.step_key, "at": e.at}


def _where(namespace: str, key: str, tenant: str) -> str:
    return f"{short(f'{namespace}/{key}', 120)} (tenant {quoted(tenant)})"


def _suggest(tenant: str, args: str, db: str, does: str, to: str,
             operands: Sequence[str] = ()) -> str:
    """How a message suggests ``convoy ARGS OPERANDS`` (the operands as they are: quoted
    here, after ``--`` if one begins with ``-``): ``'convoy ...' DOES``, in the message's
    single quotes; or, when the command holds a single quote of its own (a value only the
    shell's quotes carry), ``TO, run: convoy ...``, which the caller puts at the end of
    the line: no quote of the message's is then taken for one of the command's."""
    cmd = Scope(tenant).command(args, db, operands=operands, quote=False)
    return f"'{cmd}' {does}" if "'" not in cmd else f"{to}, run: {cmd}"


def _other_tenants(tenant: str | None) -> str:
    """What a message of nothing found adds when no tenant was named (``--tenant``,
    ``$CONVOY_TENANT``): shared state is each tenant's own, so it may be another's."""
    return "" if tenant is not None else " (for other tenants: --tenant NAME)"


def _keys_of(tenant: str, namespace: str, db: str) -> str:
    """What lists the keys of ``namespace``, or, for one a message cannot show as it is
    (a control character, which no stored namespace holds; a name so long it would be
    cut short), the tenant's namespaces."""
    try:
        check_name(namespace, "state namespace")
    except UserError:
        namespace = ""
    if not namespace or len(namespace) > 200:
        return _suggest(tenant, "state list", db, "shows its namespaces",
                        "to see its namespaces")
    return _suggest(tenant, "state list", db, "shows its keys", "to see its keys",
                    [namespace])


@state_app.command("get")
def get(namespace: NamespaceArg, key: KeyArg, tenant: TenantOption = None,
        db: DbOption = DEFAULT_DB, as_json: JsonOption = False) -> None:
    """Show the current value of a key, its version and who wrote it.

    Example: `convoy state get customer:42 account --tenant acme`
    """
    other = _other_tenants(tenant)
    tenant = one_tenant(tenant)
    require_store(db)
    entry, erased = run_async(_get(db, tenant, namespace, key))
    if entry is None:
        fail(f"no state {_where(namespace, key, tenant)} in {label(db)!r}{other}; "
             f"{_keys_of(tenant, namespace, db)}")
    if as_json:
        typer.echo(json_text(_entry_json(entry), indent=2))
        return
    if is_sealed(entry.value):
        out.print(sealed_note(erased), markup=False, soft_wrap=True)
    else:
        out.print_json(entry.value)
    by = "outside any session" if entry.session_id is None else f"by {_writer(entry)}"
    out.print(f"version {entry.version}, written {by} at {fmt_time(entry.at)}", markup=False)


async def _get(db: str, tenant: str, namespace: str, key: str
               ) -> tuple[StateEntry | None, bool]:
    """The key's current version, and whether it is sealed under the key of a subject
    who was erased (:func:`sealed_by_erased`)."""
    async with open_store(db, unseal=True) as store:
        entry = await store.state_get(tenant, namespace, key)
        return entry, entry is not None and is_sealed(entry.value) and \
            await sealed_by_erased(store, tenant, entry.value)


@state_app.command("set")
def set_(namespace: NamespaceArg, key: KeyArg,
         value: Annotated[str, typer.Argument(metavar="JSON", help="The new value, as JSON.")],
         expected_version: Annotated[int | None, count_option(
             "--expected-version", "-e",
             help="Write only if the key is still at version N (0: only if it does not "
                  "exist). Default: the version it has when the command reads it.")] = None,
         tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
         busy_timeout: WriteBusyTimeoutOption = 10.0) -> None:
    """Write a key, compare-and-set: against --expected-version, or the version the command
    reads just before. A write that finds another version fails and writes nothing.
    Sessions waiting for the key to change wake ('convoy worker' runs them); one whose
    type the value does not fit goes on waiting (its workflow's code has the type: the
    command cannot check it) and warns, naming the version.

    Example: `convoy state set customer:42 account '{"credit": 10}' --expected-version 3`
    """
    tenant = one_tenant(tenant)
    for name, given in (("namespace", namespace), ("key", key)):
        if not given:
            fail(f"the {name} is empty: name one (e.g. 'convoy state set customer:42 "
                 "account 1')")
    try:
        check_namespace(namespace)
        check_name(key, "state key")
    except UserError as e:
        fail(str(e))
    json_value(value, "the value")
    check_db_path(db, create=True)
    expected, res = run_async(_set(db, busy_timeout, StateWrite(
        tenant=tenant, namespace=namespace, key=key, value=value,
        expected_version=expected_version)))
    if not res.written or res.entry is None:
        now = (f"it is at version {res.entry.version}" if res.entry is not None
               else "it does not exist")
        see = _suggest(tenant, "state get", db, "shows it", "to see it", [namespace, key])
        fail(f"state {_where(namespace, key, tenant)} changed: the write expected version "
             f"{expected} but {now}; nothing was written"
             + (f" ({see})" if see.startswith("'") else f"; {see}"), RUN_FAILURE)
    woke = f"; woke {plural(res.woken, 'waiting session')}" if res.woken else ""
    out.print(f"{namespace}/{key} is at version {res.entry.version}{woke}", markup=False)


async def _set(db: str, busy_timeout: float, write: StateWrite
               ) -> tuple[int, StateWriteResult]:
    """The version the write expected, and what it did. A key whose current version is a
    data subject's gets its new version sealed under the same subject's key (the master
    key, from the environment, opens it); without the master key the write is refused."""
    async with open_store(db, write=True, unseal=True, busy_timeout=busy_timeout) as store:
        checked, current = await refuse_clear_write(store, write)
        expected = write.expected_version
        if expected is None:
            if not checked:  # (a sealing store: the key read here)
                try:
                    current = await store.state_get(write.tenant, write.namespace,
                                                    write.key)
                except DamagedRow as e:  # what an operator replaces it with: written against it
                    cmd = Scope(write.tenant).command(
                        "state set", db, operands=[write.namespace, write.key, "JSON"],
                        options="--expected-version VERSION", quote=False)
                    cmd = cmd if "'" in cmd else f"'{cmd}'"  # (as _suggest: the line ends with it)
                    raise JournalError(f"{e}; to replace it, write against the version "
                                       f"named: {cmd}") from None
            # (against the version checked: a data subject's version landing after the
            # check is a conflict, not written over in the clear)
            expected = current.version if current is not None else 0
            write = replace(write, expected_version=expected)
        elif checked and expected != (current.version if current is not None else 0):
            return expected, StateWriteResult(written=False, entry=current)
        return expected, await store.state_put(write)


@state_app.command("history")
def history(namespace: NamespaceArg, key: KeyArg, tenant: TenantOption = None,
            limit: Annotated[int | None, count_option(
                "--limit", "-n", least=1, help="Only the newest N versions.")] = None,
            db: DbOption = DEFAULT_DB, as_json: JsonOption = False) -> None:
    """Every version of a key, oldest first: value, writer (session, agent, step), time.

    Example: `convoy state history customer:42 account --limit 20`
    """
    other = _other_tenants(tenant)
    tenant = one_tenant(tenant)
    require_store(db)
    left_out: list[LeftOut] = []
    entries = run_async(_history(db, tenant, namespace, key, limit, left_out))
    if not entries and not left_out:
        fail(f"no state {_where(namespace, key, tenant)} in {label(db)!r}{other}; "
             f"{_keys_of(tenant, namespace, db)}")
    try:
        _print_history(namespace, key, entries, as_json)
    finally:
        warn_left_out(left_out, "state")


def _print_history(namespace: str, key: str, entries: list[StateEntry],
                   as_json: bool) -> None:
    if as_json:
        typer.echo(json_text([_entry_json(e) for e in entries], indent=2))
        return
    t = Table(title=f"{namespace}/{key}")
    for col in ("version", "value", "session", "agent", "step", "written"):
        t.add_column(col, justify="right" if col == "version" else "left",
                     overflow="fold" if col == "value" else "ellipsis")
    for e in entries:
        t.add_row(str(e.version), _value(e), e.session_id or "-", e.agent or "-",
                  e.step_key or "-", fmt_time(e.at))
    out.print(t)
    _sealed_values(entries)


async def _history(db: str, tenant: str, namespace: str, key: str, limit: int | None,
                   left_out: list[LeftOut]) -> list[StateEntry]:
    async with open_store(db, unseal=True) as store:
        return await store.state_history(tenant, namespace, key, limit=limit,
                                         left_out=left_out)


@state_app.command("list")
def list_(namespace: Annotated[str | None, typer.Argument(
              metavar="[NAMESPACE]", help="List this namespace's keys (default: list the "
                                         "tenant's namespaces).")] = None,
          tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
          as_json: JsonOption = False) -> None:
    """The tenant's namespaces with their key counts (Convoy's own, where human tasks are
    kept, left out), or one namespace's keys with their current version and value.

    Example: `convoy state list customer:42`
    """
    other = _other_tenants(tenant)
    tenant = one_tenant(tenant)
    require_store(db)
    left_out: list[LeftOut] = []
    spaces, entries = run_async(_list(db, tenant, namespace, left_out))
    try:
        _print_list(tenant, db, namespace, spaces, entries, as_json, other)
    finally:
        warn_left_out(left_out, "state")


def _print_list(tenant: str, db: str, namespace: str | None, spaces: dict[str, int],
                entries: list[StateEntry], as_json: bool, other: str) -> None:
    if namespace is None:
        # Convoy's own namespaces (human tasks) are not the application's state: left out,
        # and where tasks are is said.
        tasks = spaces.get(INBOX, 0)
        spaces = {name: n for name, n in spaces.items() if not name.startswith(RESERVED)}
        if tasks:
            see = _suggest(tenant, "inbox list", db, f"shows {'it' if tasks == 1 else 'them'}",
                           f"to see {'it' if tasks == 1 else 'them'}")
            err.print(f"{plural(tasks, 'human task')} {'is' if tasks == 1 else 'are'} kept in "
                      f"{INBOX!r}" + (f" ({see})" if see.startswith("'") else f"; {see}"),
                      markup=False, soft_wrap=True)
    if as_json:
        typer.echo(json_text(spaces if namespace is None else
                              [_entry_json(e) for e in entries], indent=2))
        return
    if namespace is None:
        if not spaces:
            out.print(f"no shared state for tenant {tenant!r} in {label(db)}{other}",
                      markup=False, soft_wrap=True)
            return
        out.print(f"shared state of tenant {tenant!r}", markup=False, soft_wrap=True)
        t = Table()
        t.add_column("namespace")
        t.add_column("keys", justify="right")
        for name, n in spaces.items():
            t.add_row(name, f"{n:,}")
        out.print(t)
        return
    if not entries:
        out.print(f"no keys in namespace {quoted(namespace)} of tenant {quoted(tenant)} in "
                  f"{label(db)}{other}", markup=False, soft_wrap=True)
        return
    t = Table(title=namespace)
    for col in ("key", "version", "value", "written by", "written"):
        t.add_column(col, justify="right" if col == "version" else "left",
                     overflow="fold" if col == "value" else "ellipsis")
    for e in entries:
        t.add_row(e.key, str(e.version), _value(e), _writer(e), fmt_time(e.at))
    out.print(t)
    _sealed_values(entries)


def _value(e: StateEntry) -> str:
    """A value as a table shows it: ``(sealed)`` for a data subject's still sealed."""
    return "(sealed)" if is_sealed(e.value) else short(e.value)


def _sealed_values(entries: list[StateEntry]) -> None:
    """A note on stderr when values shown are still sealed, saying why and how to read
    them."""
    n = sum(is_sealed(e.value) for e in entries)
    if n:
        err.print(f"note: {plural(n, 'value')} {'is' if n == 1 else 'are'} shown as "
                  f"(sealed) {sealed_note()}", markup=False, soft_wrap=True)


async def _list(db: str, tenant: str, namespace: str | None, left_out: list[LeftOut]
                ) -> tuple[dict[str, int], list[StateEntry]]:
    async with open_store(db, unseal=True) as store:
        if namespace is None:
            return await store.state_namespaces(tenant), []
        return {}, await store.state_list(tenant, namespace, left_out=left_out)
