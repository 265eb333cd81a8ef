"""``convoy audit list|verify|seal|prove|checkpoint|check``: the tamper-evident audit log."""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import os
import time
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_args

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from convoy import AuditError, UserError
from convoy._command import command, word
from convoy._files import home_expanded, read_input
from convoy._text import escaped, plural, printable, quoted
from convoy.cli._common import (
    DEFAULT_DB,
    RUN_FAILURE,
    TENANT_ENV,
    USAGE_ERROR,
    DbOption,
    TenantOption,
    WriteBusyTimeoutOption,
    convoy_errors,
    count_option,
    err,
    fail,
    label,
    one_tenant,
    open_store,
    option_source,
    out,
    require_convoy_store,
    require_store,
    run_async,
    say,
    tenant_option,
    tenant_scope,
)
from convoy.cli._json import json_text
from convoy.cli._output import keep_on_lost_output
from convoy.cli._render import fmt_time
from convoy.cli._stop import not_kept, read_or_stop

if TYPE_CHECKING:
    from convoy.audit import AuditEvent, AuditLog, Checkpoint, VerifyReport
    from convoy.stores import Store

audit_app = typer.Typer(
    name="audit", no_args_is_help=True, rich_markup_mode="markdown",
    help="Check and prove the tamper-evident audit log (a Merkle tree per tenant, with "
         "Ed25519-signed checkpoints). An application starts a tenant's log by running its "
         "engine with convoy.audit.AuditInterceptor (docs/how-to/audit.md); the command "
         "line appends to the logs a store holds and starts none.\n\nExample: `convoy "
         "audit verify --key audit.key`")

KEY_ENV = "CONVOY_AUDIT_KEY"
#: Whether this command's key files came from ``$CONVOY_AUDIT_KEY`` (set by the option's
#: callback, which click runs for every command that has it, given or not).
_KEY_FROM_ENV: ContextVar[bool] = ContextVar("convoy_audit_key_from_env", default=False)


def _one_key(ctx: typer.Context, param: typer.CallbackParam, value: Path | None
             ) -> Path | None:
    """The key that signs: ``--key`` as given, or the last of the paths
    ``$CONVOY_AUDIT_KEY`` lists (``old.key:new.key``, as ``verify`` takes it: the newest
    key, the one that signs after a rotation)."""
    _KEY_FROM_ENV.set(option_source(ctx, param, KEY_ENV) == KEY_ENV)
    if value is None or not _KEY_FROM_ENV.get():
        return value
    listed = [p for p in str(os.environ.get(KEY_ENV, value)).split(os.pathsep) if p.strip()]
    if not listed:
        fail(f"${KEY_ENV} names no key file: set it to the key's path (after a rotation, "
             "old.key:new.key; the last one signs)")
    return Path(listed[-1])


def _key_given() -> str:
    """Where the key files came from, as a message names it: ``--key``, or the variable
    when they came from ``$CONVOY_AUDIT_KEY``."""
    return f"${KEY_ENV}" if _KEY_FROM_ENV.get() else "--key"


def _key_named(key: Path) -> str:
    """A key file as a message names it: where it was given, and its path."""
    return f"{_key_given()} {str(key)!r}"


def _key_path(text: str) -> Path:
    """A ``--key`` path as given: an empty one (a shell variable that was not set) is said
    to be empty, not read as the directory '.' it names. (An empty variable is no value
    at all: its callback says it names no key.)"""
    if not text:
        fail("--key '' is empty: pass the path of the audit key file (PEM), such as "
             "--key audit.key")
    return Path(text)


KeyOption = Annotated[Path | None, typer.Option(
    "--key", envvar=KEY_ENV, show_envvar=True, metavar="PATH", callback=_one_key,
    parser=_key_path,
    help="The Ed25519 key file that signs checkpoints (PEM; `checkpoint` and `prove` "
         "create it, mode 0600, if it does not exist and the tenant has no checkpoint yet; "
         "after that, only `checkpoint --new-key`). In CONVOY_AUDIT_KEY, a list of "
         "paths separated by ':' (as `verify` pins them) signs with its last one.")]
def _keys(ctx: typer.Context, param: typer.CallbackParam, value: list[Path] | None
          ) -> list[Path] | None:
    """The key files pinned: ``--key`` as given, or the paths ``$CONVOY_AUDIT_KEY`` lists
    without its empty entries (``new.key:``, ``::``)."""
    _KEY_FROM_ENV.set(option_source(ctx, param, KEY_ENV) == KEY_ENV)
    if not value or not _KEY_FROM_ENV.get():
        return value
    listed = [p for p in str(os.environ.get(KEY_ENV, "")).split(os.pathsep) if p.strip()]
    if not listed:
        fail(f"${KEY_ENV} names no key file: set it to the key's path (after a rotation, "
             "old.key:new.key)")
    return [Path(p) for p in listed]


KeysOption = Annotated[list[Path] | None, typer.Option(
    "--key", envvar="CONVOY_AUDIT_KEY", show_envvar=True, metavar="PATH", callback=_keys,
    parser=_key_path,
    help="A key file that signs checkpoints (PEM): its public key is pinned. Repeatable: "
         "after a key rotation, pin the old key and the new one (each checkpoint must be "
         "signed by one of the keys pinned, with --public-key too). In CONVOY_AUDIT_KEY, "
         "separate the paths with ':'.")]
VerifyTenantOption = Annotated[str | None, typer.Option(
    "--tenant", "-t", envvar=TENANT_ENV, show_envvar=True, metavar="NAME",
    callback=tenant_option, show_default=False,
    help="Verify this tenant's log only (default: every tenant's).")]
PublicKeysOption = Annotated[list[str] | None, typer.Option(
    "--public-key", metavar="BASE64",
    help="The signer's public key every checkpoint must be signed by (as checkpoints "
         "print it). Repeatable: after a key rotation, pin the old key and the new one "
         "(each checkpoint must be signed by one of them).")]


def _audit() -> Any:
    """``convoy.audit``, imported on first use: it needs the ``audit`` extra."""
    try:
        import convoy.audit
    except ImportError as e:
        fail(str(e))
    return convoy.audit


def _log(store: Any, key: Path | None) -> AuditLog:
    log: AuditLog = _audit().AuditLog(store, key_path=key)
    return log


#: What a file of published checkpoints (one line, about 600 bytes, each) and a proof
#: (a few kilobytes at a billion entries) are read up to: far more than either holds.
PUBLISHED_LIMIT, PROOF_LIMIT = 256 << 20, 16 << 20


def _published(files: list[Path] | None) -> list[Checkpoint]:
    """Checkpoints from files: one JSON checkpoint per line."""
    checkpoint = _audit().Checkpoint
    found: list[Checkpoint] = []
    for f in files or ():
        try:
            # (a stop while it reads, a pipe whose writer keeps it open, ends it at once)
            lines = read_or_stop(partial(read_input, f, PUBLISHED_LIMIT), (
                "interrupted before the log was verified: nothing was done" + not_kept(
                    f, "checkpoints", many=True, redo="verify it")), say
            ).decode("utf-8-sig").splitlines()  # (a leading BOM: as Windows tools save text)
        except OSError as e:
            fail(f"--checkpoint {str(f)!r}: {_unreadable(e, _CHECKPOINTS_FILE)}")
        except UnicodeDecodeError as e:
            fail(f"--checkpoint {str(f)!r} is not UTF-8 text (one JSON checkpoint per line): "
                 f"{e.reason} at byte {e.start + 1}")
        if not any(line.strip() for line in lines):
            fail(f"--checkpoint {str(f)!r} holds no checkpoint (it is empty): pass the file "
                 "the output of 'convoy audit checkpoint' was appended to (one JSON "
                 "checkpoint per line)")
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    found.append(checkpoint.from_json(line))
                except UserError as e:
                    _not_a_proof(f, "\n".join(lines))
                    fail(f"--checkpoint {str(f)!r} line {n}: {e}")
    return found


def _not_a_proof(f: Path, text: str) -> None:
    """Refuse, in one line, a proof given as checkpoints, or a checkpoint spread over
    several lines."""
    from convoy.audit._log import CONSISTENCY_FORMAT, PROOF_FORMAT

    kind = _format_of(text)
    if kind in (PROOF_FORMAT, CONSISTENCY_FORMAT):
        fail(f"--checkpoint {str(f)!r} is a proof, not checkpoints: check it with "
             f"'convoy audit check {word(str(f))}'")
    if kind == _checkpoint_format() and len([x for x in text.splitlines() if x.strip()]) > 1:
        fail(f"--checkpoint {str(f)!r} holds a checkpoint written over several lines: "
             "the file holds one JSON checkpoint per line, as 'convoy audit checkpoint' "
             "prints them")


def _check_public_keys(texts: list[str] | None) -> None:
    """A malformed --public-key is a usage error (exit 2), said in one line."""
    if not texts:
        return
    _audit()  # the extra is installed
    from convoy.audit._keys import public_key_from_text

    for text in texts:
        try:
            public_key_from_text(text)
        except UserError as e:
            fail(f"--public-key: {e}")


#: Entries read per query while looking for the ones that match (newest first).
_PAGE = 1000


#: Kinds only logs of earlier builds hold (``--kind`` still takes them, to find those).
_LEGACY_KINDS = {"agent_decision"}


@audit_app.command("list")
def list_entries(
        tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
        session: Annotated[str | None, typer.Option(
            "--session", "-s", metavar="ID",
            help="Only this session's entries (its steps and the decisions on its tasks).")
        ] = None,
        kind: Annotated[list[str] | None, typer.Option(
            "--kind", "-k", metavar="KIND",
            help="Only entries of this kind (repeatable): model_call, tool_call, "
                 "policy_refusal, approval, human_decision, handoff, state_write, "
                 "state_read, effect, signal, session, config_change, erasure "
                 "(agent_decision: in logs of earlier builds only).")] = None,
        limit: Annotated[int, count_option(
            "--limit", "-n", least=1, help="The newest N entries that match.")] = 50,
        as_json: Annotated[bool, typer.Option(
            "--json", help="One JSON object per line (the entry with its index).")] = False,
) -> None:
    """The newest entries of the tenant's audit log, oldest first: when, what (kind,
    status), which session and step, who (actor) and what it acted on (target). Entries
    hold hashes and references only. The index is what `convoy audit prove` takes. With
    --session or --kind the log is read from its end until --limit entries match (on a
    long log, that is a read of all of it).

    Example: `convoy audit list --tenant acme --session s-42`
    """
    require_store(db)
    known = set(get_args(_audit().AuditKind))
    wrong = sorted(set(kind or ()) - known)
    if wrong:  # (one line, as --status and --by are refused: no usage panel)
        fail(f"--kind {', '.join(map(repr, wrong))} "
             f"{'is not an audit entry kind' if len(wrong) == 1 else 'are not audit entry kinds'}"
             f"; use one of {', '.join(sorted(known - _LEGACY_KINDS))} (or "
             f"{', '.join(sorted(_LEGACY_KINDS))}, in logs of earlier builds only)")
    name = one_tenant(tenant)
    rows = run_async(_entries(db, name, session, set(kind or ()), limit))
    verify = command("audit verify", db=db, tenant=name)  # (what names an unreadable one)
    if as_json:
        for index, event in rows:
            typer.echo(json_text({"index": index, **_event_json(event, verify)},
                                  ensure_ascii=False))
        return
    if not rows:
        out.print(f"no audit entries of tenant {quoted(name)}"
                  + (f" for session {quoted(session)}" if session else "")
                  + (f" of kind {', '.join(kind or ())}" if kind else ""), markup=False,
                  soft_wrap=True)
        return
    out.print(_entries_table(rows, f"convoy audit list · {label(db)} · tenant {name!r}",
                             verify, width=out.width))


async def _entries(db: str, tenant: str, session: str | None, kinds: set[str],
                   limit: int) -> list[tuple[int, AuditEvent | None]]:
    """The newest ``limit`` entries of ``tenant`` that match, oldest first (an entry that
    does not decode: ``None``, shown as such, for ``verify`` to explain)."""
    async with open_store(db) as store:
        known = await store.audit_tenants()
        if tenant not in known:
            _no_log(tenant, known)
        found: list[tuple[int, AuditEvent | None]] = []
        log = _log(store, None)
        kept = await log.checkpoints(tenant)  # (before the count: see ``_not_cut``)
        end = await _count(store, tenant, db)
        _not_cut(log, tenant, end, kept, signing=False)
        if end and not await store.audit_entries(tenant, end - 1, 1):
            fail(f"tenant {tenant!r}: the log's count of entries says {end}, but the store "
                 f"holds no entry {end - 1} (entries cut off); run "
                 f"{command('audit verify', db=db, tenant=tenant)}", RUN_FAILURE)
        logged = False  # (an entry of the session, of any kind: it exists, or existed)
        while end > 0 and len(found) < limit:
            start = max(0, end - (_PAGE if session or kinds else limit))
            page = await _page(store, tenant, start, end - start)
            for index, event in reversed(page):
                logged = logged or (event is not None and event.session_id == session)
                if _matches(event, session, kinds):
                    found.append((index, event))
                    if len(found) == limit:
                        break
            end = start
        if session is not None and not found and not logged and \
                await store.get_session(session, tenant=tenant) is None:
            # (a mistyped or cut id would read as a session that did nothing audited; a
            # purged session's entries stay in the log, and are found above)
            fail(f"no audit entries of tenant {quoted(tenant)} for session {quoted(session)}, "
                 "and the store has no such session of the tenant: "
                 f"{command('sessions list', db=db, tenant=tenant)} and "
                 f"{command('audit list --json', db=db, tenant=tenant)} show whole session ids")
        return found[::-1]


async def _page(store: Store, tenant: str, start: int,
                count: int) -> list[tuple[int, AuditEvent | None]]:
    decode = _audit().AuditEvent.decode
    page: list[tuple[int, AuditEvent | None]] = []
    for row in await store.audit_entries(tenant, start, count):
        try:
            page.append((row.index, decode(row.body)))
        except AuditError:
            page.append((row.index, None))
    return page


def _matches(event: AuditEvent | None, session: str | None, kinds: set[str]) -> bool:
    if event is None:  # unreadable: shown whatever the filters (verify names it)
        return True
    return (session is None or event.session_id == session) and \
        (not kinds or event.kind in kinds)


def _event_json(event: AuditEvent | None, verify: str) -> dict[str, Any]:
    if event is None:
        return {"kind": None, "error": f"not an audit event: run {verify}"}
    return dataclasses.asdict(event)


def _entries_table(rows: list[tuple[int, AuditEvent | None]], title: str,
                   verify: str, width: int | None = None) -> Table:
    """The entries as a table. The session id keeps its whole width on one line (it is
    what ``--session`` takes, copied from here), and the target (what was acted on: what
    the entry is about) at least :data:`_TARGET_CELLS` cells: on a terminal narrower than
    the table (``width``), the columns that say least go first (the time, then the actor,
    then the step), then the status joins the target (``refund (status ToolError)``; an
    ``ok`` is not repeated), and what still does not fit wraps; a terminal too narrow even
    then folds the session id too."""
    cells: dict[str, list[str]] = {name: [] for name in _COLUMNS}
    for index, e in rows:
        values = [str(index), "-", "?", f"not an audit event: run {verify}", "", "", "",
                  ""] if e is None else \
            [str(index), fmt_time(e.at), e.kind, e.status, e.session_id or "-",
             e.step_key or "-", e.actor or "-", e.target or _erased(e) or "-"]
        for name, value in zip(_COLUMNS, values, strict=True):
            # (as the console shows a string: what a terminal would obey, ESC or a bidi
            # override, as an escape; a Text is shown as it is)
            cells[name].append(printable(value))

    def natural(name: str) -> int:
        return max(cell_len(name), *map(cell_len, cells[name])) + 3

    def least_target() -> int:  # (its borders and padding included)
        return min(natural("target"), _TARGET_CELLS + 3)

    def needed(names: list[str]) -> int:  # (every column whole but the target)
        return sum(natural(n) for n in names if n != "target") + least_target() + 1

    names = list(_COLUMNS)
    for droppable in ("at", "actor", "step", "status"):
        if width is None or needed(names) <= width:
            break
        names.remove(droppable)
        if droppable == "status":  # (said in the target's cell, where it is not "ok")
            cells["target"] = [
                status if not target else
                target if status == "ok" else f"{target} (status {status})"
                for target, status in zip(cells["target"], cells["status"], strict=True)]
    whole = ("index", "kind", "session")  # (never wrapped)
    fits = width is None or needed(names) <= width
    # (what the session id and the target share when the id folds, their borders included)
    rest = 0 if width is None else width - 1 - natural("index") - natural("kind")
    target_kept = fits or rest >= least_target() + 3 + _FOLDED_SESSION_CELLS
    t = Table(title=title, title_justify="left")
    for name in names:
        kept = name in ("index", "kind") or (name != "target" and fits)
        least = natural(name) - 3 if kept else \
            least_target() - 3 if name == "target" and target_kept else None
        # (a folded session id gets what the target leaves: Rich shares the cut between
        # the columns that wrap, then gives a column its least again, past the terminal)
        most = rest - least_target() - 3 if name == "session" and not fits and \
            target_kept else None
        t.add_column(name, justify="right" if name == "index" else "left",
                     no_wrap=kept and name in whole, overflow="fold", min_width=least,
                     max_width=most)
    for i in range(len(rows)):  # (as Text: a '[bold]' in an id is shown, not obeyed)
        t.add_row(*(Text(cells[name][i]) for name in names))
    return t


#: The columns of ``convoy audit list``'s table.
_COLUMNS = ("index", "at", "kind", "status", "session", "step", "actor", "target")
#: The fewest cells a wrapped column of it is given.
_NARROWEST_CELL = 2
#: The fewest cells the target is given (where the terminal has them).
_TARGET_CELLS = 16
#: The fewest cells a folded session id is given beside the target's fewest (on a terminal
#: narrower still, the two share what there is).
_FOLDED_SESSION_CELLS = 8


def _erased(e: AuditEvent) -> str | None:
    """What an erasure entry (no target of its own) erased, from its references: the
    subject's keyed fingerprint (never its name), or the retention rule, and the counts."""
    if e.kind != "erasure":
        return None
    refs = e.refs
    what = f"subject {refs['subject_ref'][:12]}…" if refs.get("subject_ref") else \
        refs.get("reason", "erasure")
    counts = [plural(int(n), noun) for n, noun in ((refs.get("sessions"), "session"),
                                                   (refs.get("state_versions"),
                                                    "state version"))
              # (a count as the engine writes it; anything else, edited: left out)
              if isinstance(n, str) and n.isascii() and n.isdigit() and len(n) < 19
              and int(n)]
    return what + (f": {', '.join(counts)}" if counts else "")


@audit_app.command("verify")
def verify(tenant: VerifyTenantOption = None, db: DbOption = DEFAULT_DB,
           key: KeysOption = None, public_key: PublicKeysOption = None,
           checkpoint: Annotated[list[Path] | None, typer.Option(
               "--checkpoint", metavar="FILE",
               help="Checkpoints published earlier (one JSON per line, as `convoy audit "
                    "checkpoint` prints them; '-': standard input): the log must still "
                    "extend each. Repeatable.")] = None,
           all_tenants: Annotated[bool, typer.Option(
               "--all-tenants", help="Every tenant's log: what verify checks without "
               "--tenant (taken, as 'convoy audit checkpoint --all-tenants' takes it).")
           ] = False) -> None:
    """Re-derive every tenant's audit log (or --tenant's) and check it against its signed
    checkpoints. Names, one line for each tenant whose log is bad, the first bad entry of a
    changed, deleted, inserted, reordered or truncated log, or of a fork from a checkpoint,
    or a checkpoint whose signature does not verify; exits 1 if one is found, or if the
    keys pinned (--key, --public-key; each repeatable: after a key rotation, pin the old
    key and the new one) signed no checkpoint here (a wiped log, or --db naming another
    store). A --checkpoint line that is not a checkpoint (a field missing, of the wrong
    JSON type or out of range), or a file that holds none, exits 2, naming the line and
    field.

    Example: `convoy audit verify --tenant acme --key audit.key --checkpoint published.jsonl`
    """
    if all_tenants:
        tenant_scope(tenant, all_tenants)  # (with --tenant too: they exclude each other)
    require_store(db)
    _check_public_keys(public_key)
    for k in key or ():
        if not home_expanded(k).exists():
            fail(f"{_key_named(k)} does not exist: verify pins the key that signed the "
                 "checkpoints, it does not create one")
    pins = [*(public_key or ()), *(_pinned(k) for k in key or ())]
    published = _published(checkpoint)
    signer = _one(key)
    reports, known, dead, failed = run_async(_verify(db, tenant, pins, published, signer))
    if dead:
        typer.echo(f"note: {_processes(len(dead), 'engine')} that audited this store stopped "
                   f"before sealing what {'its' if len(dead) == 1 else 'their'} runs queued: "
                   "those entries are not in the log "
                   "yet (the log verified below does not hold them); "
                   f"{command('audit seal', db=db)} seals them from the journal now, as the "
                   "next engine that opens the store with the audit interceptor does",
                   err=True)
    if failed:  # the tenants whose logs verified, then a line for each bad one
        _print_reports(reports, db, signer)
        for message in failed[:-1]:
            err.print(f"error: {message}", markup=False, soft_wrap=True)
        fail(failed[-1], RUN_FAILURE)
    if pins and not any(r.checkpoints for r in reports):
        how = ", ".join([*(["--public-key"] if public_key else []),
                         *(_key_named(k) for k in key or ())])
        _nothing_signed(db, tenant, pins, how, bool(published), known, signer)
    if not reports:
        typer.echo(f"no audit log in {label(db)!r}" + ("" if tenant is None else
                                                       f" (tenant {tenant!r})")
                   + ": nothing to verify (if one was expected, check that --db points at "
                   "the store that holds it)")
        return
    _print_reports(reports, db, signer)
    verified = {r.tenant for r in reports}
    if published and not any(cp.tenant in verified for cp in published):
        _published_elsewhere(published, verified)
    if not pins and not any(cp.tenant in verified for cp in published):
        _unpinned_verify(reports)


def _published_elsewhere(published: list[Checkpoint], verified: set[str]) -> None:
    """A note on stderr when none of the --checkpoint lines is of a tenant verified (a
    --tenant whose checkpoints were published to another file): none was checked."""
    theirs = sorted({cp.tenant for cp in published})
    mine = ", ".join(repr(t) for t in sorted(verified))
    err.print(f"note: --checkpoint: no published checkpoint is of tenant {mine} (the "
              f"{len(published):,} given {'is' if len(published) == 1 else 'are'} of "
              f"{'tenant' if len(theirs) == 1 else 'tenants'} "
              f"{', '.join(repr(t) for t in theirs)}), so none was checked: pass the "
              f"checkpoints published for tenant {mine}", markup=False, soft_wrap=True)


def _unpinned_verify(reports: list[VerifyReport]) -> None:
    """A note on stderr when checkpoints were checked against the keys they name: anyone
    who can write the store can sign a rewritten log with a key of their own."""
    signers = sorted({k for r in reports for k in r.signers})
    if not signers:
        return
    err.print(f"note: the signer was not pinned: each checkpoint was checked against the key "
              f"it names ({plural(len(signers), 'key')}: {', '.join(signers)}"
              + ("; more than one: a key rotation, or checkpoints signed by someone else"
                 if len(signers) > 1 else "")
              + "), which proves only that someone signed it; pass --key FILE or "
              "--public-key (the key you trust), or --checkpoint with the checkpoints you "
              "published, to check who signed them", markup=False, soft_wrap=True)


def _processes(n: int, what: str) -> str:
    """``1 engine process``, ``2 engine processes``."""
    return plural(n, f"{what} process", many=f"{what} processes")


def _one(keys: list[Path] | None) -> Path | None:
    """The key file given, if exactly one was: the one a suggested command signs with."""
    return keys[0] if keys and len(keys) == 1 else None


def _key_option(key: Path | None) -> str:
    """``--key FILE`` for a suggested command that signs (``--key KEY`` without one)."""
    return "--key KEY" if key is None else f"--key {word(str(key))}"


def _print_reports(reports: list[VerifyReport], db: str, key: Path | None) -> None:
    """A line for each tenant whose log verified."""
    for r in reports:
        root = base64.b64encode(r.root).decode()
        sign = command("audit checkpoint", options=_key_option(key), db=db, tenant=r.tenant)
        one = r.covered == r.size - 1
        uncovered = "" if r.covered >= r.size else (
            (f"; entry {r.covered} is" if one else
             f"; entries {r.covered} to {r.size - 1} are") + " signed by no checkpoint yet "
            f"(a cut-off of {'it' if one else 'them'} would not show: {sign} signs one)")
        typer.echo(f"tenant {r.tenant!r}: {r.size} entries verified, root {root}, "
                   f"{plural(r.checkpoints, 'signed checkpoint')} matched{uncovered}")


@audit_app.command("seal")
def seal(db: DbOption = DEFAULT_DB, busy_timeout: WriteBusyTimeoutOption = 10.0) -> None:
    """Seal now, from the journal, the audit entries of the runs that engine processes
    which stopped (killed, crashed, their machine gone) had queued and not sealed; `convoy
    audit verify` says when there are some. An engine with the audit interceptor does the
    same when it opens the store. A process on another machine counts as stopped once it
    has not beaten for 60 s. Sessions of data subjects need the master key the engine had
    ($CONVOY_MASTER_KEY_FILE): without it they are left for later and this exits 1.

    Example: `convoy audit seal --db convoy.db`
    """
    require_store(db)
    require_convoy_store(db, nothing="seal")
    recovered, keyless, refused, alive = run_async(_seal(db, busy_timeout))
    sealed = sum(n for _, n in recovered)
    if sealed:
        typer.echo(f"sealed from the journal the records of {plural(sealed, 'session')} that "
                   f"{_processes(len(recovered), 'stopped engine')} had not sealed")
    elif recovered and not keyless and not refused:  # (not "sealed ... of 0 sessions")
        n = len(recovered)
        typer.echo(f"nothing to seal: {_processes(n, 'stopped engine')} had left no run "
                   f"unsealed ({'its' if n == 1 else 'their'} record of sealing is cleared)")
    elif not recovered:
        typer.echo("nothing to seal: no engine process that audited this store stopped "
                   "before sealing its runs")
    if alive:
        typer.echo(f"{_processes(alive, 'engine')} audit{'s' if alive == 1 else ''} this store "
                   "now: each seals its own "
                   "runs", err=True)
    left = ([f"the store did not take the seal of the records of "
             f"{plural(refused, 'session')} (said above); they stay to be sealed: run "
             f"{command('audit seal', db=db)} again once the store answers, and if it fails "
             f"the same way, {command('audit verify', db=db)} (the log may be damaged)"]
            if refused else []) + \
        ([f"{plural(keyless, 'data subject session')} "
          f"{'was' if keyless == 1 else 'were'} left unsealed: "
          f"{'its' if keyless == 1 else 'their'} records are "
          "sealed under the master key; set $CONVOY_MASTER_KEY_FILE (or "
          f"$CONVOY_MASTER_KEY) and run {command('audit seal', db=db)} again"]
         if keyless else [])
    if left:  # (both in one line: each has its own fix)
        fail("; and ".join(left), RUN_FAILURE)


async def _seal(db: str, busy_timeout: float
                ) -> tuple[list[tuple[str, int]], int, int, int]:
    """What the sealer of an engine opened on ``db`` recovered: ``(dead sealer, sessions
    sealed)`` each, the data subjects' sessions it could not seal, those whose seal the
    store refused, the sealers alive."""
    from convoy import Engine
    from convoy.audit import AuditInterceptor
    from convoy.audit._sealer import SEALERS, dead_sealers
    from convoy.stores import store_from_url

    audit = AuditInterceptor()
    with convoy_errors():
        engine = Engine(store_from_url(db, busy_timeout=busy_timeout), interceptors=[audit])
        async with engine:
            sealer = audit._sealer
            assert sealer is not None
            dead = {s for s, _ in await dead_sealers(engine.store, engine.clock())}
            alive = set(await engine.store.kv_all(SEALERS)) - dead - {sealer.id}
            return sealer.recovered, sealer.keyless, sealer.refused, len(alive)


def _pinned(key: Path) -> str:
    """The public key of the key file ``key`` (which exists) that verify pins; a file that
    is no key is said in one line that does not offer to create one."""
    from convoy.audit._keys import load_or_create_key, public_key_text

    try:
        return public_key_text(load_or_create_key(key).public_key())
    except UserError as e:  # (the library's advice is the signer's: cut off)
        fail(f"{str(e).split('; pass ', 1)[0]}: pass the key file that signed the "
             "checkpoints ('convoy audit checkpoint --key' signs with it), or its public key "
             "with --public-key")


def _nothing_signed(db: str, tenant: str | None, pins: list[str], how: str, published: bool,
                    known: list[str], key: Path | None) -> NoReturn:
    """A pinned key (the user says it signed the log) that signed no checkpoint here: a
    wiped log, or the wrong store, not a log that "verified"."""
    from convoy.audit._keys import key_id

    where = f"in {label(db)!r}" + (" or the --checkpoint files" if published else "") + \
        ("" if tenant is None else f" for tenant {tenant!r}")
    if not known:  # (no log to sign: a checkpoint command would fail)
        fail(f"no checkpoint signed by key {' or '.join(key_id(p) for p in pins)} ({how}) "
             f"{where}: there is no audit log in it at all (deleted, or never written); "
             "check that --db points at the store the key signs", RUN_FAILURE)
    others = sorted(set(known) - {tenant}) if tenant is not None else []
    sign = command("audit checkpoint", options=_key_option(key), db=db, tenant=tenant)
    fail(f"no checkpoint signed by key {' or '.join(key_id(p) for p in pins)} ({how}) "
         f"{where}: nothing here is a log that key signed (deleted, or never signed); check "
         "that --db points at the store it signs"
         + (" and --tenant names its tenant (other tenants with an audit log here: "
            f"{', '.join(others)})" if others else "")
         + f" (a log never signed: {sign} signs it)", RUN_FAILURE)


def _not_cut(log: AuditLog, tenant: str, size: int, kept: list[Checkpoint], *,
             signing: bool = True, every: bool = False) -> None:
    """One line and exit 1 if the log of ``size`` entries is shorter than a checkpoint of
    ``kept`` (read before ``size``: one kept since is of a longer log), or one that
    matters is not validly signed (see ``AuditLog._not_cut``)."""
    try:
        log._not_cut(tenant, size, kept, signing=signing, every=every)
    except AuditError as e:
        fail(str(e), RUN_FAILURE)


async def _count(store: Store, tenant: str, db: str) -> int:
    """The count of ``tenant``'s entries; one line and exit 1 if it says none while the
    store holds entries or checkpoints of the log (its count deleted)."""
    size = await store.audit_size(tenant)
    if size == 0 and (await store.audit_entries(tenant, 0, 1) or
                      await store.audit_checkpoints(tenant)):
        fail(f"tenant {tenant!r}: the store holds entries or signed checkpoints of its audit "
             "log, but the log's count of entries says it has none (the store was edited "
             f"or damaged); run {command('audit verify', db=db, tenant=tenant)}",
             RUN_FAILURE)
    return size


def _no_log(tenant: str, known: list[str]) -> NoReturn:
    fail(f"tenant {quoted(tenant)} has no audit log"
         + (f" (tenants with one: {', '.join(sorted(known))})" if known else
            " (no tenant has one in this store: check that --db is the store of the engine "
            "that runs the AuditInterceptor; 'convoy audit verify' lists the logs a store "
            "holds)"))


async def _verify(db: str, tenant: str | None, pins: list[str],
                  published: list[Checkpoint], key: Path | None,
                  ) -> tuple[list[VerifyReport], list[str], list[tuple[str, float]], list[str]]:
    """The reports of the tenants whose logs verified, the tenants with a log in the
    store, the sealers that died before sealing their runs' entries, and a line for each
    tenant whose log did not verify."""
    async with open_store(db) as store:
        log = _log(store, None)  # (the keys it pins are ``pins``)
        verify_log = _audit().verify_log
        from convoy.audit._sealer import dead_sealers

        dead = await dead_sealers(store, getattr(store, "clock", time.time)())
        known = await store.audit_tenants()
        if tenant is not None and tenant not in known and \
                not any(cp.tenant == tenant for cp in published) and \
                not await store.audit_checkpoints(tenant):  # (a deleted log is verified)
            if known and not pins:
                _no_log(tenant, known)  # a mistyped --tenant (pinned: nothing it signed)
            return [], known, dead, []  # (no log in the store at all: as without --tenant)
        tenants = [tenant] if tenant is not None else \
            sorted({*known, *(cp.tenant for cp in published)})
        reports = []
        failed: list[str] = []  # (every tenant is verified: one line for each bad one)
        for t in tenants:
            try:
                reports.append(await verify_log(log, t, published=published,
                                                public_key=pins or None))
            except AuditError as e:
                failed.append(str(e)
                              + await _other_store(store, db, t, published, e))
        return reports, known, dead, failed


async def _other_store(store: Store, db: str, tenant: str, published: list[Checkpoint],
                       e: AuditError) -> str:
    """A hint for entries that do not match published checkpoints none of which this store
    keeps: --db may name another store than the one they were published from."""
    mine = [cp.signature for cp in published if cp.tenant == tenant]
    if e.index is None or not mine:
        return ""
    kept = await store.audit_checkpoints(tenant)
    if any(sig in text for sig in mine for _, text in kept):
        return ""
    return (f"; if --db {label(db)!r} is not the store the --checkpoint files were "
            "published from, check --db")


@audit_app.command("checkpoint")
def checkpoint(tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
               busy_timeout: WriteBusyTimeoutOption = 10.0, key: KeyOption = None,
               new_key: Annotated[bool, typer.Option(
                   "--new-key", help="Sign with --key (created if it does not exist) "
                   "even though the tenant's checkpoints were signed by another key (a key "
                   "rotation: verifiers must then pin the new key and the old one; a note "
                   "says how). The log must have grown "
                   "since its last checkpoint: a kept one is never replaced.")] = False,
               all_tenants: Annotated[bool, typer.Option(
                   "--all-tenants", help="Sign a checkpoint of every tenant's log (the "
                   "logs 'convoy audit verify' checks), one line each, in the order of "
                   "their names. A log refused as damaged is said (exit 1, at the end) "
                   "and the others are signed all the same.")] = False,
) -> None:
    """Sign a checkpoint of the tenant's log as it is now (tree size, root hash, time),
    keep it in the store and print it as one line of JSON: publish it (append it to a file
    or send it somewhere the operators of this store cannot rewrite). A log that has not
    grown since its last checkpoint is not signed again: that checkpoint is printed.

    Example: `convoy audit checkpoint --all-tenants --key audit.key >> published.jsonl`
    """
    require_store(db)
    scope = tenant_scope(tenant, all_tenants)
    if key is None:
        fail("--key PATH (or CONVOY_AUDIT_KEY) is needed to sign a checkpoint; the file is "
             "created (mode 0600) if it does not exist")
    require_convoy_store(db, nothing="sign")  # (never a store made in another file)
    tenants = [scope.tenant] if scope.tenant is not None else run_async(_logged(db))
    damaged = 0  # (tenants whose log was refused: the others are signed all the same)
    for n, name in enumerate(tenants):
        created = not home_expanded(key).exists()
        try:
            cp = run_async(_checkpoint(db, name, key, new_key, created, busy_timeout))
        except typer.Exit as e:
            # (one tenant's damaged log, said in its line, does not leave every later
            # tenant's unsigned; what is not its log's own, a key or the store, stops)
            if scope.tenant is not None or e.exit_code != RUN_FAILURE:
                raise
            damaged += 1
            continue
        if n - damaged == 0:  # (said once, if standard output fails)
            keep_on_lost_output("the checkpoint was signed and kept in the store: run the "
                                "same command again to print it")
        typer.echo(cp.to_json())
    if damaged:
        raise typer.Exit(RUN_FAILURE)


async def _logged(db: str) -> list[str]:
    """The tenants whose logs the store holds with entries, by name (an empty one has
    nothing to sign; none: the line that says so)."""
    async with open_store(db) as store:
        known = [t for t in sorted(await store.audit_tenants())
                 if await store.audit_size(t) or await store.audit_entry(t, 0) is not None]
    if not known:
        fail("no tenant has an audit log with entries in this store: check that --db is "
             "the store of the engine that runs the AuditInterceptor")
    return known


async def _checkpoint(db: str, tenant: str, key: Path, new_key: bool,
                      created: bool, busy_timeout: float = 10.0) -> Checkpoint:
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:
        known = await store.audit_tenants()
        if tenant not in known and not await store.audit_checkpoints(tenant):
            _no_log(tenant, known)  # a mistyped --tenant: signing nothing proves nothing
        log = _log(store, key)
        kept = await log.checkpoints(tenant)  # (one unreadable: AuditError, exit 1)
        size = await _count(store, tenant, db)
        _not_cut(log, tenant, size, kept, every=True)  # (first: what was signed of it)
        created = created and not home_expanded(key).exists()  # (not made meanwhile)
        signer = None if created else _key_id_of(key)
        if kept and not new_key and signer != kept[-1].key_id:
            _second_signer(key, signer, tenant, kept[-1],
                           "--new-key to start signing with a new one")
        same = [cp for cp in kept if cp.size == size]
        if same:  # a signed checkpoint is never replaced (the store keeps one per size)
            return await _kept_again(store, db, tenant, key, same, signer)
        try:
            cp: Checkpoint = await log.checkpoint(tenant)
        except AuditError as e:
            fail(str(e), RUN_FAILURE)
        olds = list(dict.fromkeys(k.public_key for k in kept if k.public_key != cp.public_key))
        if olds and kept[-1].public_key != cp.public_key:  # a rotation, now: this key
            # signed the new one, and the newest kept was another's
            _rotated(db, tenant, key, cp, olds, created and made_here(key))
        elif created and made_here(key):
            _created(key, cp.key_id)
        return cp


async def _kept_again(store: Store, db: str, tenant: str, key: Path,
                      same: list[Checkpoint], signer: str | None) -> Checkpoint:
    """The log has not grown since its checkpoint of this size: print the kept one (if
    this key signed it and the log still has its root), never a new signature over it."""
    size = same[-1].size
    mine = [cp for cp in same if cp.key_id == signer]
    if not mine:  # a rotation: the new key signs the next size
        fail(f"the log of tenant {tenant!r} has not grown since its checkpoint of size {size} "
             f"(signed by key {same[-1].key_id}), which is kept: a signed checkpoint is "
             "never replaced, so the new key signs the next one; run this again once "
             "entries are appended")
    cp = mine[-1]
    try:
        leaves = await store.audit_leaves(tenant, size)
    except AuditError as e:
        fail(str(e), RUN_FAILURE)
    from convoy.audit._merkle import tree_root

    if len(leaves) != size or tree_root(leaves) != cp.root:  # (the evidence is kept)
        fail(f"tenant {tenant!r}: the log no longer has the root its kept checkpoint of "
             f"size {size} signed, so it is not signed again; run "
             f"{command('audit verify', db=db, tenant=tenant)}", RUN_FAILURE)
    err.print(f"note: the log of tenant {tenant!r} has not grown since its checkpoint of size "
              f"{size}: printed the kept one (a signed checkpoint is never replaced)",
              markup=False, soft_wrap=True)
    return cp


def made_here(key: Path) -> bool:
    """Whether this command created the key file ``key`` (another process that signs with
    the same new path at once may have made it first: this one then signed with that)."""
    from convoy.audit._keys import made_here as made

    return made(key)


def _key_id_of(key: Path) -> str:
    """The id of the key in the file ``key`` (which exists: never created here)."""
    from convoy.audit._keys import key_id, load_or_create_key, public_key_text

    return key_id(public_key_text(load_or_create_key(key).public_key()))


def _second_signer(key: Path, signer: str | None, tenant: str, newest: Checkpoint,
                   instead: str) -> NoReturn:
    """Refuse to sign with a key file that is not the key that signed ``tenant``'s
    checkpoints (the ``newest`` kept): a file that does not exist (``signer`` None: a
    mistyped path would start a second key that no verifier pins) or another key's."""
    which = "does not exist, and" if signer is None else f"is key {signer}, but"
    fail(f"{_key_named(key)} {which} the checkpoints of tenant {tenant!r} are signed by key "
         f"{newest.key_id}: pass the key file that signed them (or {instead})")


def _rotated(db: str, tenant: str, key: Path, cp: Checkpoint, olds: list[str],
             created: bool) -> None:
    """The note of a rotation: the new key alone fails on the old keys' checkpoints, so
    the verify it suggests pins them too (their public keys: the files may be gone)."""
    from convoy.audit._keys import key_id

    pins = " ".join([f"--key {word(str(key))}", *(f"--public-key {p}" for p in olds)])
    signs = f"created a new audit key {str(key)!r} (mode 0600, key {cp.key_id}); keep it: it " \
        if created else f"note: key {cp.key_id} ({str(key)!r}) "
    err.print(f"{signs}signs the checkpoints of tenant {tenant!r} from now on, and key "
              f"{' and '.join(key_id(p) for p in olds)} signed the earlier ones: verifiers "
              f"pin both, {command('audit verify', options=pins, db=db, tenant=tenant)}",
              markup=False, soft_wrap=True)


def _created(key: Path, key_id: str) -> None:
    err.print(f"created a new audit key {str(key)!r} (mode 0600, key {key_id}); keep it: "
              "'convoy audit verify --key' pins it", markup=False, soft_wrap=True)


@audit_app.command("prove")
def prove(entry: Annotated[int, typer.Argument(metavar="ENTRY", min=0,
                                               help="The entry's index in the log.")],
          tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
          busy_timeout: WriteBusyTimeoutOption = 10.0,
          key: KeyOption = None, public_key: Annotated[list[str] | None, typer.Option(
              "--public-key", metavar="BASE64",
              help="Prove against a checkpoint signed by this key (as checkpoints print "
                   "it), as by --key's: after a key rotation, the key a verifier pins. "
                   "Repeatable (signed by one of them).")] = None) -> None:
    """Print an inclusion proof of one entry (JSON) against the newest signed checkpoint
    that covers it (one is signed if none does): anyone can check it with `convoy audit
    check` and the signer's public key, without the store. With --key or --public-key,
    against the newest that covers it signed by that key (after a rotation, the old key
    signed the older checkpoints); if that key signed none that covers it, a note names
    the key that signed the one used and how to pin it.

    Example: `convoy audit prove 41 --tenant acme --key audit.key > proof.json`
    """
    require_store(db)
    _check_public_keys(public_key)
    require_convoy_store(db, nothing="prove")  # (never a store made in another file)
    created = key is not None and not home_expanded(key).exists()
    typer.echo(json_text(run_async(_prove(db, one_tenant(tenant), entry, key, created,
                                           public_key or [], busy_timeout)), indent=2))


async def _prove(db: str, tenant: str, entry: int, key: Path | None, created: bool,
                 public_keys: list[str], busy_timeout: float = 10.0) -> dict[str, Any]:
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:  # (it may
        # sign a checkpoint)
        log = _log(store, key)
        before = await log.checkpoints(tenant)  # (before the count: see ``_not_cut``)
        size = await _count(store, tenant, db)
        if size == 0:
            _no_log(tenant, await store.audit_tenants())
        if size <= entry:
            _not_cut(log, tenant, size, before)  # (an entry cut off is not one never made)
            fail(f"tenant {tenant!r} has no audit entry {entry} (the log has {size} entries)")
        kept = await log.checkpoints(tenant) if key is not None or public_keys else []
        created = created and key is not None and not home_expanded(key).exists()
        if kept and key is not None:
            signer = None if created else _key_id_of(key)  # (a file that is no key: refused)
            if all(cp.size <= entry for cp in kept):  # a checkpoint is signed for it
                if signer != kept[-1].key_id and signer in {cp.key_id for cp in kept}:
                    fail(f"{_key_named(key)} is key {signer}, which signed the checkpoints "
                         f"of tenant {tenant!r} before a key rotation; none covers entry "
                         f"{entry} yet, and key {kept[-1].key_id} signs them now: pass its "
                         "key file to sign one (verifiers pin both keys)")
                if signer != kept[-1].key_id:
                    _second_signer(key, signer, tenant, kept[-1], "sign one with it first: "
                                   "'convoy audit checkpoint --new-key'")
            elif signer not in {cp.key_id for cp in kept}:  # a typo, another store's key
                _second_signer(key, signer, tenant, kept[-1], f"leave {_key_given()} out: a kept "
                               f"checkpoint covers entry {entry}")
        if kept and public_keys and not {cp.public_key for cp in kept} & set(public_keys):
            _signed_nothing(tenant, public_keys, kept)
        mine = log.public_key if key is not None and not created else None
        pins = [*public_keys, *([] if mine is None else [mine])]
        covering = [cp for cp in kept if cp.size > entry]
        other = bool(pins and covering) and not any(cp.public_key in pins for cp in covering)
        try:  # (another key's, said below, or the newest one a pinned key signed)
            proof = await log.prove(tenant, entry, public_key=None if other else pins or None)
        except AuditError as e:
            fail(str(e), RUN_FAILURE)
        except UserError:
            if key is not None:
                raise
            fail(f"no signed checkpoint covers entry {entry} yet, and signing one needs the "
                 "key: pass --key PATH (or set CONVOY_AUDIT_KEY)")
        if other:
            _proved_by_another(tenant, entry, pins, proof["checkpoint"])
        if created and key is not None and not kept and made_here(key):  # a new key signed
            _created(key, proof["checkpoint"]["key_id"])
        signed = proof["checkpoint"]
        if all(cp.signature != signed["signature"] for cp in before):  # signed just now
            newest = command("audit checkpoint", db=db, tenant=tenant, options=_key_option(key))
            err.print(f"note: no checkpoint covered entry {entry}: signed one of size "
                      f"{signed['size']} (key {signed['key_id']}) and kept it in the store; "
                      "publish it as you publish the others (it is the proof's "
                      f"'checkpoint'; {newest} "
                      "prints the newest)", markup=False, soft_wrap=True)
        return proof


def _signed_nothing(tenant: str, public_keys: list[str], kept: list[Checkpoint]) -> NoReturn:
    from convoy.audit._keys import key_id

    signers = list(dict.fromkeys(cp.key_id for cp in kept))
    fail(f"--public-key: key {' or '.join(key_id(p) for p in public_keys)} signed no "
         f"checkpoint of tenant {tenant!r} here (they are signed by key "
         f"{' and '.join(signers)}): pass a key that signed them, or check --db and --tenant")


def _proved_by_another(tenant: str, entry: int, pins: list[str],
                       cp: dict[str, Any]) -> None:
    """The key pinned signed no checkpoint that covers ``entry`` (the old key of a
    rotation, for an entry appended since): the proof is against another key's."""
    from convoy.audit._keys import key_id

    err.print(f"note: no checkpoint signed by key {' or '.join(key_id(p) for p in pins)} "
              f"covers entry {entry} of tenant {tenant!r}: the proof is against the "
              f"checkpoint of size {cp['size']}, signed by key {cp['key_id']}; pin that key "
              f"to check it ('convoy audit check PROOF --public-key {cp['public_key']}')",
              markup=False, soft_wrap=True)


@audit_app.command("consistency")
def consistency(size: Annotated[int, typer.Argument(
                    metavar="SIZE", min=1,
                    help="The size of a signed checkpoint (one you published).")],
                tenant: TenantOption = None, db: DbOption = DEFAULT_DB,
                busy_timeout: WriteBusyTimeoutOption = 10.0) -> None:
    """Print a consistency proof (JSON) from the tenant's checkpoint of SIZE entries to its
    newest: that the newest signed log is the older one with entries appended, nothing
    changed or removed. Whoever holds the older checkpoint checks it with `convoy audit
    check`, without the store. Sign the newer one first (`convoy audit checkpoint`). It is
    hashed from the kept tile roots, not from every entry: `convoy audit verify` checks
    the entries themselves.

    Example: `convoy audit consistency 4096 --tenant acme > consistency.json`
    """
    require_store(db)
    require_convoy_store(db, nothing="prove")
    typer.echo(json_text(run_async(_consistency(db, one_tenant(tenant), size, busy_timeout)),
                          indent=2))


async def _consistency(db: str, tenant: str, size: int, busy_timeout: float = 10.0
                       ) -> dict[str, Any]:
    async with open_store(db, write=True, busy_timeout=busy_timeout) as store:  # (it may
        # keep the tiles it hashed)
        log = _log(store, None)
        if await _count(store, tenant, db) == 0:
            _no_log(tenant, await store.audit_tenants())
        try:
            return await log.prove_consistency(tenant, size)
        except AuditError as e:
            fail(str(e), RUN_FAILURE)


@audit_app.command("check")
def check(proof: Annotated[Path, typer.Argument(metavar="PROOF",
                                                help="A proof `convoy audit prove` or "
                                                     "`convoy audit consistency` printed "
                                                     "('-': standard input).")],
          public_key: PublicKeysOption = None) -> None:
    """Check an inclusion proof (`convoy audit prove`) or a consistency proof (`convoy
    audit consistency`) without any store: the checkpoints' signatures (pin the signer with
    --public-key; after a key rotation, pin the old key and the new one: each checkpoint
    must be signed by one of them), then the entry's leaf hash and the path to the signed
    root, or that the older signed log is the first part of the newer one (compare the
    older checkpoint it prints with the one you hold).
    The public key is the `public_key` every checkpoint prints (the raw 32-byte key in
    base64, such as 'y51pj+l55WfSRbas2/WV5qEvMZ548nr7yPYoGRcB4SU='; not a PEM or DER form).
    Exits 1 if the proof does not hold (a signature, hash or path that does not verify),
    2 if PROOF is not a proof (not JSON, or a field of it or of its checkpoint missing, of
    the wrong JSON type or out of range: named).

    Example: `convoy audit check proof.json --public-key "$SIGNER_PUBLIC_KEY"`
    """
    _check_public_keys(public_key)
    try:
        text = read_or_stop(lambda: read_input(proof, PROOF_LIMIT), (
            "interrupted before the proof was checked: nothing was done" + not_kept(
                proof, "proof", many=False, redo="check it")), say).decode("utf-8-sig")
    except OSError as e:
        fail(f"{str(proof)!r}: {_unreadable(e, _PROOF_FILE)}")
    except UnicodeDecodeError as e:
        fail(f"{str(proof)!r} is not a Convoy proof: it is not UTF-8 text ({e.reason} at "
             f"byte {e.start + 1})")
    if not text.strip():
        fail(f"{str(proof)!r} is empty: it holds no proof (the command that wrote it failed? "
             "'convoy audit prove' and 'consistency' print the proof on stdout, an error on "
             "stderr)")
    try:
        doc = json.loads(text)
    except ValueError as e:
        _not_checkpoints(proof, text)
        fail(f"{str(proof)!r} is not JSON: {e}")
    except RecursionError:  # (nested deeper than the decoder goes)
        fail(f"{str(proof)!r} is not a Convoy inclusion proof: it nests arrays or objects "
             "thousands of levels deep")
    audit = _audit()
    from convoy.audit._log import CONSISTENCY_FORMAT

    _not_checkpoints(proof, text)
    consistent = isinstance(doc, dict) and doc.get("format") == CONSISTENCY_FORMAT
    try:
        if consistent:
            old, new = audit.check_consistency(doc, public_key=public_key or None)
        else:
            event = audit.check_inclusion(doc, public_key=public_key or None)
    except (AuditError, UserError) as e:  # a file that is no proof is a bad input file
        if isinstance(e, UserError) or str(e).startswith(
                ("not a Convoy inclusion proof", "not a Convoy consistency proof")):
            fail(str(e), USAGE_ERROR)
        fail(f"{str(proof)!r} does not hold: {e}", RUN_FAILURE)
    if consistent:
        typer.echo(escaped(
            f"tenant {old.tenant!r}: the signed log of {new.size} entries (checkpoint of "
            f"{fmt_time(new.timestamp)}) is the signed log of {old.size} entries (checkpoint "
            f"of {fmt_time(old.timestamp)}, root {base64.b64encode(old.root).decode()}) with "
            "entries appended"))
        _unpinned(public_key)
        return
    where = ", ".join(f"{what} {value}" for what, value in (
        ("session", event.session_id), ("step", event.step_key)) if value is not None)
    typer.echo(escaped(f"entry {doc['index']} of tenant {doc['tenant']!r} is in the signed "
                       f"log of {doc['tree_size']} entries: {event.kind} {event.status}"
                       + (f" ({where})" if where else "")))
    _unpinned(public_key)


def _checkpoint_format() -> str:
    _audit()  # the extra is installed
    from convoy.audit._checkpoint import HEADER

    return HEADER


def _format_of(text: str) -> object:
    """The ``format`` of the JSON object ``text`` holds (``None``: none, or no object)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return doc.get("format") if isinstance(doc, dict) else None


def _not_checkpoints(proof: Path, text: str) -> None:
    """Refuse, in one line, a file of published checkpoints given as a proof."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _format_of(first) == _checkpoint_format():
        fail(f"{str(proof)!r} holds checkpoints, not a proof: check a log against them with "
             f"'convoy audit verify --checkpoint {word(str(proof))}'; 'convoy audit prove "
             "INDEX' writes the proof of an entry")
    if _format_of(text) == _checkpoint_format():  # (one, over several lines)
        fail(f"{str(proof)!r} holds a checkpoint, not a proof, written over several lines: "
             "put it on one line (as 'convoy audit checkpoint' prints it) to check a log "
             "against it with 'convoy audit verify --checkpoint FILE'; 'convoy audit prove "
             "INDEX' writes the proof of an entry")


def _unpinned(public_key: list[str] | None) -> None:
    if not public_key:
        err.print("note: the signer was not pinned: the proof's own checkpoint names the key "
                  "it was signed with; pass --public-key (the key you trust) to check who "
                  "signed it", markup=False, soft_wrap=True)


def _unreadable(e: OSError, wanted: str) -> str:
    """Why a proof's or checkpoints' file could not be read; for a directory, the file
    ``wanted`` instead."""
    if e.errno == errno.EISDIR:
        return f"is a directory: give {wanted} ('-' reads standard input)"
    return str(e.strerror or e)


_PROOF_FILE = ("the file a proof was written to ('convoy audit prove' and 'consistency' "
               "print them)")
_CHECKPOINTS_FILE = "the file the output of 'convoy audit checkpoint' was appended to"
