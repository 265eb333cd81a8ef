"""``convoy erase``, ``convoy export``, ``convoy purge`` and ``convoy keygen``: the rights of
data subjects, from the command line (see docs/privacy.md)."""

from __future__ import annotations

import asyncio
import errno
import os
import shlex
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from convoy import Engine, SubjectErased
from convoy._command import command, word
from convoy._errors import ConvoyError, UnknownSubject, UserError
from convoy._files import dangling_link, home_expanded
from convoy._text import plural, quoted
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    MAX_COUNT,
    RUN_FAILURE,
    USAGE_ERROR,
    AllTenantsOption,
    DbOption,
    ReadBusyTimeoutOption,
    TenantOption,
    WriteBusyTimeoutOption,
    build_engine,
    check_output_file,
    fail,
    label,
    no_sessions_note,
    nonempty,
    open_store,
    out,
    require_convoy_store,
    require_store,
    run_async,
    say,
    tenant_scope,
)
from convoy.cli._deciders import checked_by, who_decides
from convoy.cli._json import json_text
from convoy.cli._render import fmt_time, line_list
from convoy.engine._tenancy import DEFAULT_TENANT
from convoy.privacy import MasterKey, parse_age
from convoy.stores import Erasure, SessionRow, store_from_url

SubjectArg = Annotated[str, typer.Argument(
    metavar="SUBJECT", help="The data subject, as sessions named it.",
    callback=nonempty("the subject", "prints a session's subject, the name sessions gave "
                      "it", "sessions show", ["ID"]))]


def erase(subject: SubjectArg, db: DbOption = DEFAULT_DB, tenant: TenantOption = None,
          busy_timeout: WriteBusyTimeoutOption = 10.0,
          dry_run: Annotated[bool, typer.Option(
              "--dry-run", help="Say what it would erase (the sessions that name the "
              "subject, whether it has a key) and write nothing: the store is opened "
              "read-only.")] = False,
          by: Annotated[str | None, typer.Option(
              "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME", callback=checked_by,
              help="Who erases (the actor of the erasure's audit entry, where the tenant "
                   "has an audit log). Default: the login name.")] = None) -> None:
    """Erase a data subject of the tenant --tenant names (default: 'default'): destroy
    their key, delete every session that names them (inputs, outputs, every journaled
    step, signals, the shared-state versions they wrote), record the erasure, and compact
    the store: on SQLite no deleted row is left in its files; PostgreSQL's VACUUM FULL
    rewrites the tables and the planner statistics' catalog (a role that does not own the
    database is told what an administrator must run), but the server's WAL and your
    backups keep the sealed rows (no plaintext) until they are recycled
    (docs/how-to/privacy.md). Needs
    $CONVOY_MASTER_KEY_FILE (or $CONVOY_MASTER_KEY).

    A subject erased already (and named by no session since) is a repeated request,
    answered as done: it says when, writes nothing and exits 0. A subject the tenant never
    had (no session names it, no key, no erasure) exits 2.

    Example: `convoy erase customer-42 --tenant acme --dry-run`
    """
    if dry_run:
        if by is not None:  # (the name the erasure would record: checked, as it would be)
            who_decides(by)
        require_store(db)
        engine = build_engine(db, busy_timeout=busy_timeout, read_only=True)
        plan = run_async(_erase_plan(engine, subject, tenant or DEFAULT_TENANT))
        if isinstance(plan, SubjectErased):
            _erased_already(subject, plan)
            return
        rows, key = plan
        what = [f"{plural(len(rows), 'session')} ({line_list([r.id for r in rows])})",
                "the shared-state versions they wrote"] if rows else []
        what.append("its key" if key else "no key (none is held)")
        out.print(f"would erase subject {quoted(subject)} of tenant "
                  f"{quoted(tenant or DEFAULT_TENANT)}: {', '.join(what[:-1])}"
                  f"{', and ' if len(what) > 1 else ''}{what[-1]}; nothing was written "
                  "(--dry-run)", markup=False)
        return
    who = who_decides(by)
    try:
        require_convoy_store(db, nothing="erase")
        event = run_async(_erase(build_engine(db, busy_timeout=busy_timeout), subject,
                                 tenant or DEFAULT_TENANT, who))
        if isinstance(event, SubjectErased):
            _erased_already(subject, event)
            return
        out.print(f"erased subject {quoted(subject)} of tenant {quoted(event.tenant)}: "
                  f"{plural(event.sessions, 'session')}, "
                  f"{plural(event.state_versions, 'state version')}, key "
                  f"{'destroyed' if event.key else 'absent'} (erasure #{event.seq})",
                  markup=False)
    except KeyboardInterrupt:
        say(_interrupted_erasure(db, subject, tenant, busy_timeout))
        raise typer.Exit(INTERRUPTED) from None


def _interrupted_erasure(db: str, subject: str, tenant: str | None,
                         busy_timeout: float) -> str:
    """The line for an erasure Ctrl-C stopped: whether it committed (the erasure is one
    transaction: all of it, or nothing), as the store now says, and what is left to do."""
    named = tenant or DEFAULT_TENANT
    whose = f"subject {quoted(subject)} of tenant {quoted(named)}"
    try:  # (not run_async: its one line for a store error would be a second line here)
        erased, owed = asyncio.run(_erasure_state(db, busy_timeout, subject, named))
    except (Exception, KeyboardInterrupt) as e:
        why = f"{e}" if isinstance(e, ConvoyError) else type(e).__name__
        dry_run = command("erase", operands=[subject], options="--dry-run", db=db,
                          tenant=tenant)
        return (f"interrupted: whether {whose} was erased is not known (the store could "
                f"not be read: {why}); {dry_run} says what is left to erase")
    if erased is None:
        return (f"interrupted before the erasure committed: nothing of {whose} was erased; "
                "run the same command again")
    if owed is not None:
        return (f"interrupted after the erasure committed: {whose} is erased (erasure "
                f"#{erased.seq}), but the store was not compacted, so deleted rows may "
                f"remain in its files until {command('db compact', db=db)} succeeds: run it")
    return (f"interrupted after the erasure committed: {whose} is erased (erasure "
            f"#{erased.seq}) and the store compacted; nothing more to do")


async def _erasure_state(db: str, busy_timeout: float, subject: str, tenant: str
                         ) -> tuple[SubjectErased | None, str | None]:
    """Whether the subject is erased now (nothing names it since), and the erasure whose
    compaction is still owed, if one is, read from the store opened read-only."""
    from convoy.stores._protocol import COMPACTION_OWED

    async with Engine(store_from_url(db, busy_timeout=busy_timeout, read_only=True)) as engine:
        try:
            await engine.erase_plan(subject, tenant=tenant)
            erased = None
        except SubjectErased as e:
            erased = e
        except UserError:  # (unknown, or one of its sessions held: not erased by this)
            erased = None
        return erased, await engine.store.kv_get(*COMPACTION_OWED)


def _erased_already(subject: str, e: SubjectErased) -> None:
    out.print(f"subject {quoted(subject)} of tenant {quoted(e.tenant)} was erased already "
              f"(erasure #{e.seq} at {fmt_time(e.at)}): nothing of it is left; "
              "nothing more to do", markup=False, soft_wrap=True)


async def _erase_plan(engine: Engine, subject: str, tenant: str
                      ) -> tuple[list[SessionRow], bool] | SubjectErased:
    async with engine:
        try:
            return await engine.erase_plan(subject, tenant=tenant)
        except SubjectErased as e:
            return e
        except UnknownSubject as e:
            _unknown(e, tenant)


async def _erase(engine: Engine, subject: str, tenant: str,
                 by: str) -> Erasure | SubjectErased:
    async with engine:
        try:
            return await engine.erase(subject, tenant=tenant, by=by)
        except SubjectErased as e:  # (raised before anything is written)
            return e
        except UnknownSubject as e:
            _unknown(e, tenant)


def export(subject: SubjectArg, output_arg: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE.json",
        help="Write the JSON to this file, readable by its owner only (mode 0600; "
             "never over the store or a key file). Default, or -: standard output.")] = None,
        db: DbOption = DEFAULT_DB, tenant: TenantOption = None,
        busy_timeout: ReadBusyTimeoutOption = 10.0) -> None:
    """Write everything the store holds about a data subject of the tenant --tenant names
    as JSON (the right of access): their sessions with inputs, outputs and every step, the
    shared-state versions those sessions wrote, and under "copies" what other sessions
    hold of their data. A value that also holds another subject's data is withheld.
    Needs the master key.

    Example: `convoy export customer-42 -o customer-42.json`
    """
    output = _output_file(output_arg)
    require_store(db)
    if output is not None:
        check_output_file(output, "--output", [(db, f"the store {label(db)!r}")])
    engine = build_engine(db, busy_timeout=busy_timeout, read_only=True)
    doc = run_async(_export(engine, subject, tenant or DEFAULT_TENANT))
    text = json_text(doc, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    replaced = output.is_file()
    if output.exists() and not replaced:  # a device or a named pipe: written as a stream
        try:
            stream = open(output, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as e:
            _cannot_write(output, e)
        try:
            with stream:
                stream.write(text + "\n")
        except OSError as e:  # (a full device, an I/O error: never misuse)
            _cannot_write(output, e, RUN_FAILURE)
    else:
        _write_whole(output, text + "\n")
    copies = len(doc["copies"]["sessions"])
    out.print(f"wrote {plural(len(doc['sessions']), 'session')} of subject {quoted(subject)}"
              + (f" and the copies of their data {plural(copies, 'other session')} "
                 + ("holds" if copies == 1 else "hold") if copies else "")
              + f" to {str(output)!r}"
              + (" (replacing the file that was there)" if replaced else ""), markup=False)


#: Why a path cannot be opened to write that is the user's to fix (pass another path, or
#: change its permissions): exit 2. Anything else (a full disk, an I/O error) exits 1.
_PATH_ERRORS = frozenset((errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
                          errno.EISDIR, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG))


def _cannot_write(output: Path, e: OSError, code: int | None = None,
                  then: str = "") -> NoReturn:
    """One line naming ``--output``'s file and the OS error, then exit: ``code``, or, for
    a file that could not be opened, 2 if the path is at fault (:data:`_PATH_ERRORS`),
    else 1 (a failed write is not a usage error)."""
    if code is None:
        code = USAGE_ERROR if e.errno in _PATH_ERRORS else RUN_FAILURE
    fail(f"--output: cannot write {str(output)!r}: {e.strerror or e}{then}", code)


def _write_whole(output: Path, text: str) -> None:
    """Write ``text`` to the file ``output`` whole or not at all: to a new file beside it
    (a subject's personal data in plaintext: readable by its owner only, mode 0600), then
    put in its place. A write that fails midway (a full disk, a quota) leaves no part of
    the export behind and a file that was there as it was, and exits 1 (it wrote over
    that file, and a failure left the first part of the export in it, with exit 2)."""
    target = Path(os.path.realpath(output)) if output.is_symlink() else output
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:  # (a path that cannot be made is the user's to fix: exit 2)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        if not (isinstance(e, PermissionError) and os.access(target, os.W_OK)):
            _cannot_write(output, e)
        _write_in_place(output, target, text)
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, target)
    except OSError as e:
        with suppress(OSError):
            part.unlink()
        _cannot_write(output, e, RUN_FAILURE, "; nothing was written there" + (
            " (the file that was there is left as it was)" if target.exists() else ""))


def _write_in_place(output: Path, target: Path, text: str) -> None:
    """Write over the file ``target``, which its owner may write in a directory they may
    not (no new file can be put beside it): made readable by its owner only before it is
    emptied (a file this user may not restrict is left as it was), then written. A write
    that fails midway leaves the first part of the export there, and says so."""
    try:
        fd = os.open(target, os.O_WRONLY)
    except OSError as e:
        _cannot_write(output, e)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        try:
            os.fchmod(fd, 0o600)
        except OSError as e:
            _cannot_write(output, e, RUN_FAILURE, " (making it readable by its owner only, "
                          "as an export of personal data must be); nothing was written there")
        try:
            os.ftruncate(fd, 0)
            f.write(text)
            f.flush()
        except OSError as e:
            _cannot_write(output, e, RUN_FAILURE, "; it holds part of the export now "
                          "(written over the file, as its directory takes no new file): "
                          "delete it, or write the export elsewhere")


def _output_file(given: str | None) -> Path | None:
    """The file ``--output`` names; ``None`` for stdout (``-``, or no --output)."""
    if given is None or given == "-":
        return None
    fix = "pass the path of a file to write (FILE.json), or - for stdout"
    if not given.strip():
        fail(f"--output {given!r} is empty: {fix}")
    path = home_expanded(given)  # (as --db and --key: '--output=~/x.json' no shell expands)
    if path.is_dir():
        fail(f"--output {given!r} is a directory: {fix}")
    if given.endswith(("/", os.sep)):  # (Path drops the slash: 'new/' was written as 'new')
        fail(f"--output {given!r} ends with '/', so it names a directory: {fix}")
    parent = path.parent
    if not path.exists() and not parent.exists() and not parent.is_symlink() and \
            not str(path).startswith("~"):  # (a '~USER' of no such user: as written)
        # (said before the subject's data is read and opened, as --db's directory is)
        fail(f"--output: cannot write {given!r}: the directory {str(parent)!r} does not "
             f"exist; create it first (mkdir -p {word(str(parent))})")
    return path


async def _export(engine: Engine, subject: str, tenant: str) -> dict[str, Any]:
    async with engine:
        try:
            return await engine.export(subject, tenant=tenant)
        except UnknownSubject as e:
            _unknown(e, tenant)


def _unknown(e: UnknownSubject, tenant: str) -> NoReturn:
    """A subject the tenant never had: most often a typo, or another tenant's."""
    if tenant == DEFAULT_TENANT:
        fail(f"{e}; if it is another tenant's, pass --tenant NAME")
    fail(f"{e}; if it belongs to a tenant other than {quoted(tenant)}, name that one with "
         "--tenant")


def purge(older_than: Annotated[str, typer.Option(
        "--older-than", metavar="AGE",
        help="Delete finished sessions that finished longer ago than this: a number and "
             "a unit s, m (minutes), h, d or w (either case): '30d', '12h', '90m', '2w'. "
             "'M' is refused (months or minutes?).")],
        db: DbOption = DEFAULT_DB, tenant: TenantOption = None,
        all_tenants: AllTenantsOption = False,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Print how many sessions would be purged (per tenant with "
            "--all-tenants) and the first ids, and write nothing: the store is opened "
            "read-only.")] = False,
        busy_timeout: WriteBusyTimeoutOption = 10.0,
        by: Annotated[str | None, typer.Option(
            "--by", envvar="CONVOY_USER", show_envvar=True, metavar="NAME", callback=checked_by,
            help="Who purges (the actor of each purge's audit entry, where the tenant has "
                 "an audit log). Default: the login name.")] = None) -> None:
    """Retention: delete finished sessions older than an age as erasure does (with their
    journal, signals and shared-state versions), record it, and compact the store.

    Example: `convoy purge --older-than 30d --all-tenants --dry-run`
    """
    try:
        seconds = parse_age(older_than)
    except UserError as e:
        fail(f"--older-than: {e}")
    # (said as read: '1d' of $'1d\n' or '1 d', never a line its newline breaks)
    older_than = "".join(older_than.split())
    scope = tenant_scope(tenant, all_tenants)
    if dry_run:
        if by is not None:  # (the name the purge would record: checked, as it would be;
            who_decides(by)  # none given: the login name is looked up when it runs)
        require_store(db)
        by_tenant = run_async(_purgeable(db, seconds, scope.tenant))
        ids = sorted(sid for group in by_tenant.values() for sid in group)
        whose = {sid: t for t, group in by_tenant.items() for sid in group}
        counts = "" if scope.tenant is not None or not by_tenant else " (" + ", ".join(
            f"{t}: {len(group)}" for t, group in sorted(by_tenant.items())) + ")"
        if not ids:  # (one line: "would purge 0" then "nothing to purge" said it twice)
            out.print(f"dry run: nothing to purge: no session{scope.of} finished more than "
                      f"{older_than} ago", markup=False, soft_wrap=True)
            no_sessions_note(db, scope)
            return
        out.print(f"would purge {plural(len(ids), 'session')} older than {older_than}{scope.of}"
                  f"{counts}", markup=False, soft_wrap=True)
        for sid in ids[:_SHOWN]:  # (with every tenant's: whose each one is)
            out.print(f"  {sid}" + ("" if scope.tenant is not None else
                                    f" (tenant {quoted(whose[sid])})"),
                      markup=False, soft_wrap=True)
        if len(ids) > _SHOWN:
            out.print(f"  ... and {len(ids) - _SHOWN} more", markup=False)
        out.print("dry run: nothing was purged; run the same command without --dry-run to "
                  "purge them", markup=False, soft_wrap=True)
        return
    who = who_decides(by)
    require_convoy_store(db, nothing="purge")
    events = run_async(_purge(build_engine(db, busy_timeout=busy_timeout), seconds,
                              scope.tenant, who))
    n = sum(e.sessions for e in events)
    per: dict[str, int] = {}
    for event in events:
        per[event.tenant] = per.get(event.tenant, 0) + event.sessions
    counts = "" if scope.tenant is not None or not n else " (" + ", ".join(
        f"{t}: {c}" for t, c in sorted(per.items()) if c) + ")"
    out.print(f"purged {plural(n, 'session')} older than {older_than}{scope.of}{counts}",
              markup=False, soft_wrap=True)
    if not n:
        no_sessions_note(db, scope)


#: Session ids a purge's dry run names (it counts them all).
_SHOWN = 10


async def _purgeable(db: str, seconds: float, tenant: str | None) -> dict[str, list[str]]:
    """The ids of the sessions ``convoy purge`` would delete now, by tenant, from the store
    opened read-only (by the store's clock, as the purge's)."""
    async with open_store(db) as store:
        ids = await store.finished_before(store.clock() - seconds, tenant=tenant,
                                          limit=MAX_COUNT)
        found: dict[str, list[str]] = {}
        for start in range(0, len(ids), 1000):
            for row in (await store.get_sessions(ids[start:start + 1000])).values():
                found.setdefault(row.tenant, []).append(row.id)
        return found


async def _purge(engine: Engine, seconds: float, tenant: str | None,
                 by: str) -> list[Erasure]:
    async with engine:
        return await engine.purge(seconds, tenant=tenant, by=by)


def keygen(file: Annotated[str, typer.Argument(
        metavar="FILE", help="Where to write the new master key (must not exist).")]) -> None:
    """Write a new master key (32 random bytes, base64) to FILE, readable by its owner
    only (a missing directory is made, mode 0700). Point $CONVOY_MASTER_KEY_FILE at it;
    keep it out of the store's backups.

    Example: `convoy keygen ~/.convoy/master.key`
    """
    if file == "-":  # (elsewhere standard output: a key there lands in scrollback)
        fail("FILE '-': a master key is written to a file only its owner can read, never "
             "to standard output; name the file (e.g. 'convoy keygen ~/.convoy/master.key'; "
             "'./-' for a file named '-')")
    path = home_expanded(file)
    if file.endswith(("/", os.sep)) and not path.is_dir():  # (Path drops the slash)
        fail(f"FILE {file!r} ends with '/', so it names a directory: name the file to "
             "write the key to, e.g. 'convoy keygen ~/.convoy/master.key'")
    if path.is_dir():  # ('' arrives as '.')
        fail(f"FILE {str(path)!r} is a directory"
             f"{' (an empty FILE names the current one)' if str(path) == '.' else ''}: name "
             "the file to write the key to, e.g. 'convoy keygen ~/.convoy/master.key'")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"cannot create {quoted(str(path), 200)}: {quoted(str(parent), 200)} "
                     "is a file, not a directory")
            break
    try:
        # Each missing directory, outermost first, with its own mode (``parents=True``
        # would give all but the last the umask's).
        for folder in reversed([path.parent, *path.parent.parents]):
            if not folder.exists():
                folder.mkdir(mode=0o700)
    except OSError as e:
        fail(f"cannot create {quoted(str(path), 200)}: {e.strerror or e}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.is_symlink() and not path.exists():  # (O_EXCL does not follow it)
            fail(f"{str(path)!r} {dangling_link(path)}; a master key is not written "
                 "through a link: name the file itself, or a path where nothing is")
        fail(f"{str(path)!r} exists already; a master key is never overwritten")
    except OSError as e:
        fail(f"cannot create {quoted(str(path), 200)}: {e.strerror or e}")
    with os.fdopen(fd, "w") as f:
        f.write(MasterKey.generate() + "\n")
    # (the whole path: a relative one names another file from any other directory)
    whole = shlex.quote(os.path.abspath(path))
    out.print(f"wrote a new master key to {path}; export CONVOY_MASTER_KEY_FILE={whole}",
              markup=False, soft_wrap=True)  # (a command to copy: never cut in two)
