"""What every command shares: consoles, the ``--db`` and ``--tenant`` options, one-line
errors, the engine.

Exit codes: 0 when the command did its work, 1 when it could not (a store error, sessions
left unfinished by one, a divergent replay, ``run --strict`` with an input that did not
complete), 2 on usage errors, 130 after Ctrl-C. Every error Convoy raises
reaches the user as one line, ``error: <message>``, never as a traceback, including errors
raised inside the event loop and inside task groups.

Tenants: every command that reads or acts on sessions sees one tenant's sessions, the
tenant ``--tenant NAME`` (or ``$CONVOY_TENANT``) names, or the tenant ``default`` when none
is named (the one ``convoy run`` uses); a session of another tenant is exactly an unknown
id. ``--all-tenants`` is the operator's view of every tenant, refused when
``$CONVOY_TENANT`` confines the shell to one.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import importlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console
from rich.text import Text

from convoy import (
    AuditError,
    Engine,
    Interceptor,
    Model,
    StoreError,
    Tenant,
    UserError,
    infer_model,
)
from convoy._command import command
from convoy._errors import ConvoyError, NoStoreError, SessionsHeld
from convoy._text import (
    NOT_FINITE,
    check_storable,
    import_failed,
    plural,
    printable,
    quoted,
    short,
    strict_json,
    undecodable_byte,
)
from convoy.definitions._workflow import file_path_module
from convoy.durability import SessionInterrupted
from convoy.engine._tenancy import DEFAULT_TENANT, check_tenant
from convoy.runtime._concurrency import leaves
from convoy.stores import DEFAULT_STORE, SessionFilter, Store, is_postgres_url, store_from_url
from convoy.stores._url import MAX_BUSY_TIMEOUT, redacted, sqlite_path

T = TypeVar("T")

#: Where the session store lives unless ``--db`` or ``CONVOY_DB`` says otherwise.
DEFAULT_DB = DEFAULT_STORE
#: Exit code of a command that could not do its work (a store error, for one).
RUN_FAILURE = 1
#: Exit code of a usage error (the same code click uses for bad options).
USAGE_ERROR = 2
#: Exit code after Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
#: Exit code of a command whose output was closed before it was all written (a pipe into
#: ``head``): 128 + SIGPIPE, as a program that signal ended (``seq 9999 | head -1``), not
#: 1, which says the command could not do its work.
OUTPUT_CLOSED = 141

DbOption = Annotated[str, typer.Option(
    "--db", envvar="CONVOY_DB", show_envvar=True, metavar="PATH|URL",
    help="Session store: a SQLite file, or a PostgreSQL URL such as postgresql://HOST/DB "
         "(with USER:PASSWORD@ before HOST; ?schema=NAME: the schema, default 'convoy').")]
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="SPEC",
    help="Run every agent on this model instead of its own, e.g. 'sim:' or "
         "'openai:gpt-4o-mini'.")]
TraceOption = Annotated[list[str] | None, typer.Option(
    "--trace", metavar="EXPORTER",
    help="Trace every session with OpenTelemetry: 'store' (then 'convoy trace SESSION'), "
         "'otlp' (OTLP over HTTP, set by OTEL_EXPORTER_OTLP_ENDPOINT) or 'console'. "
         "Repeatable.")]
ConcurrencyOption = Annotated[int, typer.Option(
    "--concurrency", "-c", min=1, help="Sessions running at once.")]


def option_source(ctx: typer.Context, param: typer.CallbackParam, env: str) -> str:
    """How a message names an option's value: the option, or the variable it came from."""
    source = ctx.get_parameter_source(param.name or "")
    if source is not None and source.name == "ENVIRONMENT":
        return env
    return param.opts[0] if param.opts else (param.name or "")


def seconds_option(env: str) -> Callable[[typer.Context, typer.CallbackParam, float], float]:
    """The check of an option of seconds (or ``$ENV``): finite, from 0 to a day."""
    def check(ctx: typer.Context, param: typer.CallbackParam, value: float) -> float:
        if not 0 <= value <= MAX_BUSY_TIMEOUT:  # (NaN compares false: refused too)
            fail(f"{option_source(ctx, param, env)} must be a number of seconds from 0 to "
                 f"{MAX_BUSY_TIMEOUT:g} (a day), got {value}")
        return value

    return check


BusyTimeoutOption = Annotated[float, typer.Option(
    "--busy-timeout", metavar="SECONDS", envvar="CONVOY_BUSY_TIMEOUT",
    callback=seconds_option("CONVOY_BUSY_TIMEOUT"),
    help="How long a write may find the store locked by another process before it gives "
         "up (the sessions it was writing stay unfinished, for a later resume).")]
#: :data:`BusyTimeoutOption` of a command that writes no session (a decision, a state value,
#: an erasure, a purge, a migration).
WriteBusyTimeoutOption = Annotated[float, typer.Option(
    "--busy-timeout", metavar="SECONDS", envvar="CONVOY_BUSY_TIMEOUT",
    callback=seconds_option("CONVOY_BUSY_TIMEOUT"),
    help="How long a write may find the store locked by another process before the "
         "command gives up, in one line (run it again).")]
#: :data:`BusyTimeoutOption` of a command that only reads (it writes nothing to wait for).
ReadBusyTimeoutOption = Annotated[float, typer.Option(
    "--busy-timeout", metavar="SECONDS", envvar="CONVOY_BUSY_TIMEOUT",
    callback=seconds_option("CONVOY_BUSY_TIMEOUT"),
    help="How long opening the store may wait (SQLite: for another process's lock; "
         "PostgreSQL: for its connections) before it gives up.")]
StopGraceOption = Annotated[float, typer.Option(
    "--stop-grace", metavar="SECONDS", envvar="CONVOY_STOP_GRACE",
    callback=seconds_option("CONVOY_STOP_GRACE"),
    help="At Ctrl-C or SIGTERM, how long the steps in flight may take to finish (their "
         "outcomes journaled, no new step started) before they are cancelled (the command "
         "then names their sessions); a second signal cancels them at once. A cancelled "
         "step that is not idempotent is escalated to a person when the session goes on.")]
TENANT_ENV = "CONVOY_TENANT"
#: The largest count, offset, index or version an option takes: a 64-bit integer, what
#: SQLite and PostgreSQL store (a larger one is a usage error, not a failed query).
MAX_COUNT = 2**63 - 1


def count_option(*names: str, least: int = 0, help: str, metavar: str = "N") -> Any:
    """A ``typer.Option`` for an integer that reaches the store (a row limit, an offset, a
    version): from ``least`` to :data:`MAX_COUNT`, else one line and exit 2."""

    def check(param: typer.CallbackParam, value: int | None) -> int | None:
        if value is not None and value < least:  # (the usual slip: said plainly)
            fail(f"{param.opts[0]} must be at least {least}, got {value}")
        if value is not None and value > MAX_COUNT:
            fail(f"{param.opts[0]} must be at most {MAX_COUNT:,} (a 64-bit integer, what "
                 f"the store keeps), got {value}")
        return value

    return typer.Option(*names, metavar=metavar, callback=check, help=help)


def tenant_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None
                  ) -> str | None:
    """Validate ``--tenant`` (or ``$CONVOY_TENANT``) in one line naming where it came from."""
    if value is None:
        return None
    try:
        return check_tenant(value)
    except UserError as e:
        source = ctx.get_parameter_source(param.name or "")
        fail(f"{TENANT_ENV if source is not None and source.name == 'ENVIRONMENT' else '--tenant'}"
             f": {e}")


TenantOption = Annotated[str | None, typer.Option(
    "--tenant", "-t", envvar=TENANT_ENV, show_envvar=True, metavar="NAME",
    callback=tenant_option, show_default=False,
    help=f"Act as this tenant: another tenant's sessions (and state) are unknown to the "
         f"command (default: the tenant {DEFAULT_TENANT!r}).")]
AllTenantsOption = Annotated[bool, typer.Option(
    "--all-tenants", help="Every tenant's sessions: the operator's view.")]


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose sessions a command sees: one ``tenant``, or every tenant (``None``)."""

    tenant: str | None
    #: The tenant was named (``--tenant``, ``$CONVOY_TENANT``), not the default.
    named: bool = True

    @property
    def of(self) -> str:
        """`` of tenant 'acme'`` (nothing for every tenant), to follow "sessions"."""
        return "" if self.tenant is None else f" of tenant {self.tenant!r}"

    @property
    def hint(self) -> str:
        """How to see other tenants, when the default tenant was not asked for."""
        return "" if self.named else " (for other tenants: --tenant NAME or --all-tenants)"

    def command(self, args: str, db: str | None = None, *, operands: Sequence[str] = (),
                options: str = "", quote: bool = True) -> str:
        """``'convoy ARGS OPERANDS OPTIONS'`` with ``--db db`` and this scope's ``--tenant``
        or ``--all-tenants``, where the next command would not get them anyway, and
        operands after ``--`` when one begins with ``-``
        (:func:`convoy._command.command`)."""
        return command(args, operands=operands, options=options, db=db, tenant=self.tenant,
                       all_tenants=self.tenant is None, quote=quote)

    def view(self, engine: Engine) -> Engine | Tenant:
        """The engine as this scope sees it."""
        return engine if self.tenant is None else engine.tenant(self.tenant)


def nonempty(what: str, hint: str, args: str, operands: Sequence[str] = ()
             ) -> Callable[[typer.Context, str], str]:
    """A callback that refuses an empty (or blank) argument in one line (``what`` names
    it; ``'convoy ARGS OPERANDS' HINT`` says where to find one, on the store and tenant
    the command was given): a shell variable that was not set is not an unknown id to look
    up."""
    def check(ctx: typer.Context, value: str) -> str:
        if not value.strip():
            fail(f"{what} is empty: give one ({_as_given(ctx, args, operands)} {hint})")
        return value

    return check


def _as_given(ctx: typer.Context, args: str, operands: Sequence[str]) -> str:
    """``'convoy ARGS OPERANDS'`` with the ``--db`` and ``--tenant`` (or
    ``--all-tenants``) of the words the command was given (its callbacks run as its words
    are read: the options after an argument are not read yet)."""
    words: list[str] = list(getattr(ctx, "convoy_args", None) or [])
    given: dict[str, str] = {}
    for i, w in enumerate(words):
        if w == "--":
            break
        for opt in ("--db", "--tenant", "-t"):
            if w == opt and i + 1 < len(words):
                given[opt.lstrip("-")[:1]] = words[i + 1]
            elif w.startswith(opt + "="):
                given[opt.lstrip("-")[:1]] = w.partition("=")[2]
    return command(args, operands=operands, db=given.get("d"),
                   tenant=given.get("t", os.environ.get(TENANT_ENV)),
                   all_tenants="--all-tenants" in words)


#: The callback of a command's SESSION argument (:func:`nonempty`).
SESSION_ID = nonempty("the session id", "shows them", "sessions list")


def each_session_id(ctx: typer.Context, values: list[str] | None) -> list[str] | None:
    """The callback of a command's SESSION... arguments: none of them empty."""
    for v in values or ():
        SESSION_ID(ctx, v)
    return values


def one_tenant(tenant: str | None) -> str:
    """The tenant ``--tenant`` / ``$CONVOY_TENANT`` names, else ``default``."""
    return DEFAULT_TENANT if tenant is None else tenant


def tenant_scope(tenant: str | None, all_tenants: bool) -> Scope:
    """The scope of ``--tenant`` / ``$CONVOY_TENANT`` / ``--all-tenants`` (validated by the
    option's callback); exits 2 when they contradict each other."""
    if all_tenants:
        if tenant is not None:
            if os.environ.get(TENANT_ENV) == tenant:
                fail(f"{TENANT_ENV} is set to {tenant!r}, which confines this shell to that "
                     f"tenant; unset it to use --all-tenants")
            fail("--tenant and --all-tenants exclude each other: pick one")
        return Scope(None)
    if tenant is None:
        return Scope(DEFAULT_TENANT, named=False)
    return Scope(tenant)


ImportOption = Annotated[list[str] | None, typer.Option(
    "--import", metavar="MODULE",
    help="Import this module first, so the workflows it defines (also under explicit "
         "names) resolve. Repeatable.")]


class DataConsole(Console):
    """A console for what the commands print, which holds data: a state value, a key, an
    error message, a name (from a model, a tool, a customer). A string it prints (a table
    cell, a title, a line) is shown as it is: never read as Rich markup (a ``[/]`` in it is
    no traceback, a ``[bold red]`` or a ``[link=...]`` is not obeyed) nor emoji codes, and
    what a terminal would obey in it (ESC, a bidi override) is written as an escape
    (:func:`~convoy._text.printable`). Styles are given as ``style=`` or :class:`Text`
    spans, never as markup. (A :class:`Text` the commands build is theirs to escape.)"""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(printable(text), **{**options, "markup": False,
                                                      "emoji": False})

    def print(self, *objects: Any, soft_wrap: bool | None = None, **options: Any) -> None:
        """As :meth:`Console.print`; a line of text piped or captured (not a terminal, which
        wraps it itself) is not word-wrapped at the console's width: one notice, one line
        (what grep finds whole). A table still fits the width."""
        if soft_wrap is None and not self.is_terminal and \
                all(isinstance(o, str | Text) for o in objects):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **options)

    def on_broken_pipe(self) -> None:
        """Its reader exited (``| head``). Standard output: exit :data:`OUTPUT_CLOSED`,
        saying nothing (the output was wanted no further), as Rich's own does with exit 1.
        Standard error: the command goes on and says nothing more there (nobody reads its
        notices: a stop still lets the steps in flight finish, a worker keeps serving)."""
        if self.stderr:
            self.quiet = True
            return
        try:
            super().on_broken_pipe()
        except SystemExit:
            raise SystemExit(OUTPUT_CLOSED) from None

    @property
    def file(self) -> IO[str]:
        """Where it writes (``sys.stdout`` or ``sys.stderr`` as they are when it writes),
        without the spaces a table pads its lines with at their end."""
        return cast("IO[str]", _LineEnds(Console.file.fget(self)))  # type: ignore[attr-defined]

    @file.setter
    def file(self, new_file: IO[str]) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]


class _LineEnds:
    """A text file whose lines lose their trailing spaces as they are written. (Rich pads
    every cell of a table to its column's width, the last one too, and has no option
    that does not; each print is one write, so a line and its end come together.)"""

    __slots__ = ("_file",)

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, text: str) -> int:
        self._file.write(_PADDED_END.sub("", text) if " \n" in text else text)
        return len(text)

    def __getattr__(self, name: str) -> Any:  # (flush, isatty, fileno, encoding, ...)
        return getattr(self._file, name)


_PADDED_END = re.compile(r" +(?=\n)")


def _console(*, stderr: bool) -> Console:
    console = DataConsole(stderr=stderr, highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped or captured: do not squeeze tables into 80 columns
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def say(line: str) -> None:
    """One line to the user on stderr, as it is (no markup)."""
    err.print(line, markup=False, soft_wrap=True)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print a one-line error to stderr and exit (no traceback)."""
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def unknown_session(db: str, scope: Scope, session_id: str) -> NoReturn:
    """Exit with the one message every command gives for an unknown session id (or one of
    another tenant than the scope's): the store as ``label`` names it (no password)."""
    # (a named tenant may be the typo: how to list every tenant's)
    hint = " (every tenant's: --all-tenants)" if scope.named and scope.tenant is not None \
        else scope.hint
    fail(f"no session {quoted(session_id)}{scope.of} in {label(db)!r}; "
         f"{scope.command('sessions list', db)} shows the ids{hint}")


async def require_session(engine: Engine, scope: Scope, session_id: str, db: str) -> None:
    """:func:`unknown_session` unless the store has the session."""
    if await engine.store.get_session(session_id, tenant=scope.tenant) is None:
        unknown_session(db, scope, session_id)


def json_value(text: str, option: str, example: str = """'"text"'""") -> Any:
    """The value of an option (or argument) given as JSON, or one line and exit 2: not
    JSON, or holding a lone surrogate (which no store can hold)."""
    byte = undecodable_byte(text)
    if byte is not None:
        fail(f"{option} is not UTF-8 text: it holds the byte 0x{byte:02x}; give it in UTF-8")
    try:
        value = strict_json(text)
    except json.JSONDecodeError as e:
        # (the quoting hint for a bare word, not for an object or a list cut short)
        hint = "" if text.lstrip()[:1] in ("{", "[", '"') else f" (quote strings: {example})"
        fail(f"{option} is not JSON: {e.msg.removesuffix(' at')} at column {e.colno}{hint}")
    except ValueError as e:
        if str(e) != NOT_FINITE:  # nested too deep, an integer too long
            fail(f"{option}: {e}")
        fail(f"{option} is not JSON: {NOT_FINITE} (readers could not parse it); write null "
             """or a string such as '"NaN"' instead""")
    try:
        return check_storable(value, option)
    except UserError as e:
        fail(str(e))


def cannot_listen(e: OSError, addr: str, port: int, *, addr_option: str,
                  port_option: str) -> str:
    """The one line for a server that could not listen on ``addr``:``port``, naming the
    option at fault: the address (not one of this machine's, not an address at all) or
    the port (taken, or privileged)."""
    reason = e.strerror or str(e)
    if not addr.strip():
        return (f"{addr_option} is empty: give an address of this machine, such as "
                "127.0.0.1, or 0.0.0.0 for all of them")
    if isinstance(e, socket.gaierror) or e.errno in (
            errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
        host, _, after = addr.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")  # ([::1]:9464, as in a URL)
        host = host[1:-1] if bracketed else host
        if host and (bracketed or ":" not in host) and after.isdigit():  # (HOST:PORT; an
            # IPv6 address alone has colons of its own)
            return (f"{addr_option} {addr}: cannot listen on this address: {reason} (give "
                    f"the host alone, and the port with {port_option}: {addr_option} {host} "
                    f"{port_option} {after})")
        if addr.startswith("[") and addr.endswith("]") and ":" in addr:  # ([::1], from a URL)
            return (f"{addr_option} {addr}: cannot listen on this address: {reason} (give "
                    f"the address without its brackets: {addr_option} {addr[1:-1]})")
        return (f"{addr_option} {addr}: cannot listen on this address: {reason} (give an "
                "address of this machine, such as 127.0.0.1, or 0.0.0.0 for all of them)")
    where = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    if e.errno == errno.EADDRINUSE:
        return (f"{port_option} {port}: cannot listen on {where}: {reason} (another "
                "process listens there: pick another port, or 0 for a free one)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"{port_option} {port}: cannot listen on {where}: {reason} (ports below "
                "1024 need privileges: pick another port, or 0 for a free one)")
    return f"{addr_option} {addr} {port_option} {port}: cannot listen on {where}: {reason}"


def reportable(e: BaseException) -> StoreError | AuditError | UserError | None:
    """The Convoy error to tell the user about, looking inside exception groups (a
    ``TaskGroup`` wraps what its tasks raise) and interrupted sessions; store errors
    first, since they explain the rest, then an audit log found changed (a store that
    holds a tampered entry where it is read)."""
    leaves = list(_leaves(e))
    for cls in (StoreError, AuditError, UserError):
        for leaf in leaves:
            if isinstance(leaf, cls):
                return leaf
    return None


def _leaves(e: BaseException) -> Iterator[BaseException]:
    """The errors in ``e`` (a group's, in order), an interrupted session's by its cause."""
    for leaf in leaves(e) if isinstance(e, BaseExceptionGroup) else (e,):
        yield leaf.cause if isinstance(leaf, SessionInterrupted) and \
            leaf.cause is not None else leaf


def exit_code(e: StoreError | AuditError | UserError) -> int:
    """Misuse exits 2, and so does a --db that holds no Convoy store (the wrong store was
    named); anything else that stopped the command exits 1."""
    if isinstance(e, SessionsHeld):  # (not misuse: it succeeds once they have ended)
        return RUN_FAILURE
    return USAGE_ERROR if isinstance(e, UserError | NoStoreError) else RUN_FAILURE


@contextmanager
def convoy_errors() -> Iterator[None]:
    """Turn a Convoy error into one line on stderr: a store error (or an audit log found
    changed) exits 1, misuse exits 2. Anything else (a bug) keeps its traceback."""
    try:
        yield
    except (Exception, BaseExceptionGroup) as e:
        problem = reportable(e)
        if problem is None or isinstance(e, typer.Exit):
            raise
        fail(str(problem), exit_code(problem))


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` with Convoy's errors as one line (see :func:`convoy_errors`)."""
    try:
        with convoy_errors():
            return asyncio.run(main)
    finally:
        main.close()  # never started (Ctrl-C before the loop ran it): no "never awaited"


def workflows_from_cwd() -> None:
    """Let ``MODULE:WORKFLOW`` references resolve from the current directory, as with
    ``python -m`` (the ``convoy`` console script does not put it on ``sys.path``)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_modules(modules: list[str] | None, option: str | None = None) -> list[Any]:
    """Import ``--import`` modules (their workflows register themselves); exit 2 if one
    cannot be imported, the line begun with ``option`` when given (the option, or the
    variable, that named the module)."""
    workflows_from_cwd()
    said = "" if option is None else f"{option}: "
    imported = []
    for name in modules or ():
        instead = file_path_module(name)
        if instead is not None:
            fail(f"{said}{quoted(name, 120)} is a file path; name the module as Python "
                 f"imports it: {instead}")
        module, colon, _ = name.partition(":")
        if colon and module:  # what 'convoy run' takes, given where a module belongs
            fail(f"{said}{quoted(name, 120)} names a workflow (MODULE:WORKFLOW); name its "
                 f"module as Python imports it: {module}")
        try:
            imported.append(importlib.import_module(name))
        except ImportError as e:
            fail(said + import_failed(name, e))
        except (Exception, SystemExit) as e:  # its own code failed, or quit: one line
            fail(f"{said}importing module {quoted(name)} failed: {type(e).__name__}: "
                 f"{short(str(e), 2000)}")
    return imported


def host_in_url(addr: str) -> str:
    """``addr`` as a URL's host: an IPv6 address in brackets (``[::1]``)."""
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def label(db: str) -> str:
    """How messages name the store ``db``: the path as given, or the URL without its
    password."""
    return redacted(db)


def check_db_path(db: str, *, create: bool = False) -> None:
    """Refuse a ``--db`` that cannot be a store file, in one line: a directory, a path under
    a regular file, or (when the command would ``create`` the store) a path whose directory
    does not exist: it is not created behind the user's back. A PostgreSQL URL is checked
    for its form here, the rest when the store opens (the server says what is wrong)."""
    if not db:
        fail("--db is empty: pass the store's file path or postgresql:// URL (or set "
             "CONVOY_DB)")
    if is_postgres_url(db):
        try:
            store_from_url(db)  # parses the URL; connects to nothing
        except UserError as e:
            fail(f"--db: {e}")
        return
    try:
        path = sqlite_path(db)
    except UserError as e:
        fail(f"--db: {e}")
    if path.is_dir():
        fail(f"--db {db!r} is a directory, not a Convoy store file")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO, a socket
        fail(f"--db {db!r} is not a regular file (a device, a pipe or a socket), so it "
             "cannot hold a Convoy store; pass a file path or a postgresql:// URL")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"--db {db!r}: {str(parent)!r} is a file, not a directory")
            break
    if create and not path.parent.exists():
        fail(f"the directory {str(path.parent)!r} of --db {db!r} does not exist; create "
             f"it first (mkdir -p {path.parent})")


#: The files a SQLite store at PATH is made of: PATH and these suffixed files beside it.
STORE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
SQLITE_HEADER = b"SQLite format 3\0"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing: the same path once links and '..' are resolved
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_file(path: Path, option: str,
                      stores: Sequence[tuple[str | Path, str]] = (),
                      inputs: Sequence[tuple[Path, str]] = ()) -> None:
    """Refuse, in one line (exit 2, the file untouched), an output file ``option`` names
    that writing would destroy a store or an input with: one of ``stores`` (``(db, what
    it is)``) or one of its files, one of ``inputs`` (``(file, the option naming it)``;
    ``-`` is standard input), or any existing SQLite database. Any other file is
    overwritten."""
    for infile, flag in inputs:
        if str(infile) != "-" and _same_file(path, infile):
            fail(f"{option} {str(path)!r} is the {flag} file: writing there would destroy "
                 "it; pass another path")
    for db, what in stores:
        if is_postgres_url(db):
            continue
        try:
            base = sqlite_path(db)
        except UserError:
            continue  # (refused as --db, where it is checked)
        for suffix in ("", *STORE_FILE_SUFFIXES):
            if _same_file(path, Path(f"{base}{suffix}")):
                which = f"the {suffix} file of {what}" if suffix else what
                fail(f"{option} {str(path)!r} is {which}: writing there would destroy it; "
                     "pass another path")
    for env, what, lost in (
            ("CONVOY_MASTER_KEY_FILE", "the master key file", "every value sealed with it"),
            ("CONVOY_AUDIT_KEY", "the audit log's signing key",
             "the key that signed its checkpoints")):
        named = os.environ.get(env)
        if named and _same_file(path, Path(named)):
            fail(f"{option} {str(path)!r} is {what} (${env}): writing there would destroy "
                 f"it, and with it {lost}; pass another path")
    if not path.is_file():  # missing (writing says if it cannot be made), or a device or
        return  # a named pipe: written as a stream (to read a pipe would wait for a writer)
    try:
        with path.open("rb") as f:
            header = f.read(4096)
    except OSError:
        return  # not readable: writing says what is wrong
    if header.startswith(SQLITE_HEADER):
        fail(f"{option} {str(path)!r} is a SQLite database (a store?), which is never "
             f"overwritten; pass another path")
    if _looks_like_a_key(header):
        fail(f"{option} {str(path)!r} holds a key (a master key or a signing key), which is "
             "never overwritten; pass another path")


def _looks_like_a_key(head: bytes) -> bool:
    """Whether a file starting ``head`` is a key Convoy writes: a master key (32 bytes in
    base64, ``convoy keygen``) or a PEM private key (an audit signing key)."""
    if b"-----BEGIN" in head and b"PRIVATE KEY-----" in head:
        return True
    text = head.strip()
    if len(text) != 44:
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except ValueError:
        return False


def tracing(exporters: list[str] | None) -> list[Interceptor]:
    """The interceptors ``--trace`` asks for (none without it)."""
    if not exporters:
        return []
    from convoy.observability import Tracing, observe

    # The exporters' own records of a failed export (each retry, the batch dropped) would
    # reach stderr through logging's last resort, before the one line the command prints
    # for them (``warn_lost_spans``): an application keeps them, the command line says it
    # once.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)

    for name in exporters:  # (the library's message offers a SpanExporter object too)
        if name not in ("store", "otlp", "console"):
            fail(f"--trace: unknown exporter {quoted(name)}; use 'store', 'otlp' or "
                 "'console' (repeat --trace for several)")
    # Spans to the console go to stderr: stdout holds the command's own output (its
    # summary, its failures), which they would come before and mix with.
    chosen: list[Any] = [_stderr_console() if name == "console" else name
                         for name in exporters]
    try:
        return observe(Tracing(exporters=chosen))
    except UserError as e:
        fail(f"--trace: {str(e).removeprefix('Tracing: ')}")


def _stderr_console() -> Any:
    """OpenTelemetry's console exporter, writing to stderr, one span a line."""
    from convoy.observability._export import console_exporter

    return console_exporter(sys.stderr)


def warn_lost_spans(engine: Engine) -> None:
    """One line on stderr for each exporter that failed to deliver spans (``--trace
    otlp`` with no collector listening: the SDK only logs it, where nobody sees it)."""
    from convoy.observability import Tracing
    from convoy.observability._otlp_env import endpoint_variable

    for ic in engine.runtime.interceptors:
        if isinstance(ic, Tracing):
            for where, lost in ic.spans_lost:
                err.print(f"warning: {plural(lost, 'span')} could not be exported to {where}: is "
                          f"the collector running there? ({endpoint_variable()} says "
                          "where OTLP goes)" if where.startswith("OTLP") else
                          f"warning: {plural(lost, 'span')} could not be exported to {where}",
                          markup=False, style="yellow", soft_wrap=True)


def build_engine(db: str, *, concurrency: int = 1000, model: str | None = None,
                 busy_timeout: float = 10.0, interceptors: Sequence[Interceptor] = (),
                 read_only: bool = False) -> Engine:
    """An engine on ``db``; ``--model`` (if given) overrides every agent's model. A
    ``read_only`` engine (for commands that only read) opens the store read-only: it
    never creates, migrates or writes it; any other audits the sessions it runs and the
    decisions it records where the store audits (:mod:`convoy.cli._audited`), and traces
    them where the store keeps their trace (:mod:`convoy.cli._traced`; ``--trace``
    instead traces every session, to where it says), unless ``interceptors`` (the
    application's, ``--interceptors``) audit or trace themselves.

    The model is built here, not lazily by the engine, so a typo fails before any session
    starts; it is registered under its spec so the engine closes it. Bad specs exit 2.
    """
    models: dict[str, Model] = {}
    if model is not None:
        try:
            models[model] = infer_model(model)
        except UserError as e:
            fail(f"--model: {e}")
        except ImportError as e:
            fail(f"--model {quoted(model, 200)} needs a package that is not installed: {e}")
    check_db_path(db, create=True)
    if not read_only:
        from convoy.cli._audited import AuditWhereAudited
        from convoy.cli._traced import TraceWhereTraced
        from convoy.observability import Tracing

        # (an application's own audit and tracing, --interceptors, decide as they do in
        # its engine; --trace traces every session)
        interceptors = list(interceptors)
        if not _audits(interceptors):
            interceptors.append(AuditWhereAudited())
        if not any(isinstance(ic, Tracing) for ic in interceptors):
            interceptors.append(TraceWhereTraced())
    with convoy_errors():
        return Engine(store_from_url(db, busy_timeout=busy_timeout, read_only=read_only),
                      models=models,
                      model=model, concurrency=concurrency, interceptors=interceptors)


def _audits(interceptors: Sequence[Interceptor]) -> bool:
    """Whether one of ``interceptors`` is an :class:`~convoy.audit.AuditInterceptor` (an
    application's: the ``audit`` extra is imported only where one was made)."""
    audit = sys.modules.get("convoy.audit")
    cls = getattr(audit, "AuditInterceptor", None)
    return cls is not None and any(isinstance(ic, cls) for ic in interceptors)


def require_store(db: str) -> None:
    """Commands that read sessions must not silently create an empty SQLite store. (A
    PostgreSQL database must exist already; its tables are created on open.)"""
    check_db_path(db)
    if is_postgres_url(db):
        return
    path = sqlite_path(db)
    if not path.exists():
        # A URL's path is read as RFC 3986 and SQLAlchemy read it: sqlite:///x.db is x.db in
        # the current directory, sqlite:////abs/x.db is /abs/x.db. Say which file it was.
        where = f" (the file {str(path)!r}, relative to the current directory: an " \
                "absolute path takes four slashes, sqlite:////path)" \
            if db.startswith("sqlite:///") and not path.is_absolute() else ""
        if not path.parent.is_dir():  # (which 'convoy run' refuses too: it creates no dir)
            fail(f"no Convoy store at {db!r}{where}: the directory {str(path.parent)!r} "
                 "does not exist; pass --db PATH or set CONVOY_DB")
        fail(f"no Convoy store at {db!r}{where}; pass --db PATH or set CONVOY_DB "
             "('convoy run' creates it)")
    if _empty_file(path):
        # Read commands and commands that change a store gave it different advice (the
        # store's "'convoy db migrate' creates one", "not a Convoy database"): one line.
        fail(f"{label(db)!r} is an empty file (an empty SQLite database, with no Convoy "
             "store in it): pass --db PATH (or set CONVOY_DB) to name the store, or make one "
             f"there with {command('db migrate', db=db)}")


def _empty_file(path: Path) -> bool:
    """Whether the SQLite file ``path`` is zero bytes with nothing in a WAL beside it: an
    empty database, whatever opens it."""
    try:
        if path.stat().st_size:
            return False
        return Path(f"{path}-wal").stat().st_size == 0
    except FileNotFoundError:
        return path.exists()  # (no WAL)
    except OSError:
        return False  # unreadable: opening it says what is wrong


def require_convoy_store(db: str, *, nothing: str) -> None:
    """Commands that change sessions a store holds already (``erase``, ``purge``) open it
    writable, and a writable store is created or migrated as it opens: a database that
    holds no Convoy store (an application's own SQLite file, an empty file, a PostgreSQL
    schema without Convoy's tables) is refused first, in one line, and left as it is,
    read as ``open_store`` reads it (nothing created). ``nothing``: what there is not to do
    in it ("erase")."""
    require_store(db)
    if run_async(store_from_url(db, read_only=True).schema_version()) is None:
        why = run_async(_foreign_reason(db))  # (as the commands that read say it)
        fail(f"{why or f'{label(db)!r} holds no Convoy store'}: nothing to {nothing} there, "
             "and it is left as it is; pass --db PATH or set CONVOY_DB to the store the "
             "sessions ran in" + (" (its ?schema=NAME)" if is_postgres_url(db) else ""))


async def _foreign_reason(db: str) -> str | None:
    """What a store opened read-only says of ``db`` (a database that holds no Convoy
    store), up to its advice: which tables it has instead; ``None`` if it says nothing."""
    store = store_from_url(db, read_only=True)
    try:
        await store.open()
    except NoStoreError as e:
        return str(e).partition("): ")[0] + ")" if "): " in str(e) else None
    except Exception:
        return None
    await store.aclose()
    return None


@asynccontextmanager
async def open_store(db: str, *, write: bool = False, unseal: bool = False,
                     busy_timeout: float = 10.0) -> AsyncIterator[Store]:
    """The store at ``db`` (which must exist), open: read-only (nothing is created,
    migrated or written: a store at an older schema version is one line saying to run
    'convoy db migrate'), or, for a command that may ``write``, migrated as an engine
    opens it. ``unseal``: a data subject's values come opened when the master key is
    configured (``$CONVOY_MASTER_KEY_FILE``, ``$CONVOY_MASTER_KEY``), as an engine reads
    them; sealed otherwise. A store opened to ``write`` and ``unseal`` refuses a master key
    that is not the store's (what it writes is sealed under it)."""
    store = store_from_url(db, read_only=not write, busy_timeout=busy_timeout)
    await store.open()
    try:
        if unseal:
            from convoy.privacy._keys import KeyRing, MasterKey
            from convoy.privacy._sealed_store import sealing

            master = MasterKey.from_env()
            if master is not None:
                keys = KeyRing(store, master)
                if write:
                    await keys.check()
                yield sealing(store, keys)
                return
        yield store
    finally:
        await store.aclose()


def its_workflows(known: Sequence[str], scope: Scope, db: str) -> str:
    """The end of the line that says a ``--workflow`` has no sessions: the workflows of
    ``scope`` that do (``known``), or, for a named tenant with none at all, that the tenant
    has no sessions (most likely a mistyped --tenant, as :func:`no_sessions_note` says)."""
    if known:
        return f"; its workflows: {', '.join(known)}{scope.hint}"
    if scope.tenant is not None and scope.named:
        return (f"; tenant {quoted(scope.tenant)} has no sessions at all: a mistyped "
                f"--tenant? ({command('sessions list', db=db, all_tenants=True)} shows every "
                "tenant's)")
    return f"; its workflows: (none: no sessions){scope.hint}"


def no_sessions_note(db: str, scope: Scope) -> None:
    """One line on stderr when the tenant ``scope`` names (``--tenant``, not the default)
    has no session at all in the store: most likely a mistyped --tenant (a nightly purge
    that purges nothing, an alert listing that is empty, a metrics server that serves
    zeros, say nothing otherwise)."""
    tenant = scope.tenant
    if tenant is None or not scope.named:
        return

    async def none() -> bool:
        async with open_store(db) as store:
            return not await store.list_sessions(SessionFilter(tenant=tenant, limit=1),
                                                 left_out=[])

    if run_async(none()):
        err.print(f"note: tenant {quoted(tenant)} has no sessions in {label(db)}: a "
                  f"mistyped --tenant? ({command('sessions list', db=db, all_tenants=True)} "
                  "shows every tenant's)", markup=False, soft_wrap=True)


def sealed_note(erased: bool = False) -> str:
    """What the command line prints for a value that is still sealed: without the master
    key, how to read it; with it, or when its key is known to be gone (``erased``:
    :func:`sealed_by_erased`), that its subject was erased."""
    from convoy.privacy._keys import MASTER_KEY_ENV, MASTER_KEY_FILE_ENV

    if erased:
        return "(sealed under the key of a data subject who was erased: nothing can read it)"
    if os.environ.get(MASTER_KEY_ENV) or os.environ.get(MASTER_KEY_FILE_ENV):
        return "(sealed under the key of a data subject who was erased)"
    return ("(sealed: it holds a data subject's data; set $CONVOY_MASTER_KEY_FILE to the "
            "master key to read it)")


async def sealed_by_erased(store: Store, tenant: str, text: str) -> bool:
    """Whether the sealed value ``text`` of ``tenant`` is sealed under a key the store no
    longer holds (its data subject was erased: the key and the map of its label to the
    subject are deleted together), which needs no master key to tell."""
    from convoy.privacy._seal import sealed_label
    from convoy.stores._protocol import SUBJECT_REFS

    try:
        label, version = sealed_label(text, "a sealed value")
    except ConvoyError:  # (damaged, or a format this Convoy does not read: not known gone)
        return False
    # (format 1, earlier releases', names the subject itself, as ``KeyRing.subject_of``
    # reads it)
    subject = label if version == 1 else await store.kv_get(SUBJECT_REFS + tenant, label)
    return subject is None or await store.subject_key_get(tenant, subject) is None


async def workflow_names(store: Store, tenant: str | None = None) -> list[str]:
    """The workflows that have sessions (of ``tenant``) in ``store`` (for "did you mean"
    messages), if the store can tell."""
    names = getattr(store, "workflow_names", None)
    return list(await names(tenant=tenant)) if names is not None else []
