"""Tools: typed Python functions an agent may call.

Arguments are validated (Pydantic, from the signature) before the function runs, and the
return value is validated against the return annotation after. A tool that writes declares
``writes=True``; Convoy then journals a ``started`` record before calling it and hands it an
idempotency key (``ToolContext.idempotency_key``), so a resumed session never applies the
write twice. Sync functions run on a daemon thread of a bounded pool (``ToolThreads``), or
with ``isolate="process"`` in a child process killed on timeout, so they never block the
event loop, a hung one cannot starve the others, and none keeps the process alive.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    TypeVar,
    cast,
    get_origin,
    get_type_hints,
    overload,
)

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from convoy._errors import StepError, ToolError, UserError
from convoy._text import readable_validation_error
from convoy.definitions._tool_runner import DEFAULT_TOOL_THREADS, ToolThreads, run_in_process
from convoy.models._messages import ToolSpec
from convoy.sandbox._config import Sandbox
from convoy.security._approval import Approval
from convoy.security._scopes import check_scopes

if TYPE_CHECKING:
    from convoy.state._access import StateAccess
    from convoy.state._handle import State

DepsT = TypeVar("DepsT")
T = TypeVar("T")


@dataclass(slots=True, frozen=True, kw_only=True)
class ToolContext(Generic[DepsT]):
    """Passed to a tool whose first parameter is annotated ``ToolContext`` (or
    ``ToolContext[MyDeps]``).

    ``deps`` is whatever the engine was given as ``Engine(deps=...)``: database clients,
    HTTP sessions, configuration. Tools get their dependencies here instead of from
    globals or environment variables, and tests pass fakes the same way.

    ``state(...)`` is the session's shared state (see :meth:`state`).
    """

    session_id: str
    tenant: str
    agent: str
    step_key: str
    idempotency_key: str
    deps: DepsT = None  # type: ignore[assignment]
    _state: StateAccess | None = field(default=None, repr=False, compare=False)

    @overload
    def state(self, namespace: str | None = None, *, type: type[T]) -> State[T]: ...
    @overload
    def state(self, namespace: str | None = None, *, type: None = None) -> State[Any]: ...

    def state(self, namespace: str | None = None, *, type: Any = None) -> State[Any]:
        """A namespace of the session's tenant's shared state, as ``ctx.state`` gives
        workflow code, for an ``async`` tool (``None``: the session's own namespace).

        The tool call is the journaled step: its result replays, and the operations inside
        it are not journaled one by one. Each write names its writer (this call's step key
        and the write's position in the call), so a tool run again after a crash (declare
        it ``writes=True, idempotent=True``) does not apply a write twice if it makes the
        same calls in the same order. A stale write raises
        :class:`~convoy.StateConflict`; left uncaught, it reaches the model as a failed
        tool call carrying the current value and version, so the agent can re-plan.
        """
        from convoy.state._handle import State

        if self._state is None:
            raise UserError("this ToolContext was built outside a session, so it has no "
                            "shared state; tools get one when an agent calls them")
        from convoy.hitl._task import check_namespace

        ns = f"session:{self.session_id}" if namespace is None else check_namespace(namespace)
        return State(ns, self._state, type)


@dataclass(frozen=True, kw_only=True, eq=False)
class Tool:
    """A callable tool. Build one with :func:`tool`."""

    name: str
    description: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any] | None
    takes_ctx: bool = False
    writes: bool = False
    idempotent: bool = True
    isolate: Literal["thread", "process"] = "thread"
    threads: ToolThreads | None = None
    scopes: frozenset[str] = frozenset()
    approval: Approval | None = None
    sandbox: Sandbox | None = None
    destructive: bool = False
    trusted: bool = False
    spec: ToolSpec = field(init=False)
    #: Scopes or an approval to check before a call runs (the tool guard skips the rest).
    guarded: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        object.__setattr__(self, "spec", ToolSpec(
            name=self.name, description=self.description, parameters=schema))
        object.__setattr__(self, "scopes", check_scopes(self.scopes, f"tool {self.name!r}"))
        object.__setattr__(self, "guarded", bool(self.scopes) or self.approval is not None)

    def validate_args(self, arguments: str) -> BaseModel:
        """Parse JSON-text arguments; raises ``ValueError`` with a readable reason."""
        try:
            return self.args_model.model_validate_json(arguments or "{}")
        except ValidationError as e:
            raise ValueError(readable_validation_error(e)) from None

    async def invoke(self, args: BaseModel, ctx: ToolContext[Any]) -> Any:
        """Call the function with validated ``args`` (a sync one on a pool thread or in a child
        process, as ``isolate`` says) and validate
        its result. Any exception becomes a :class:`~convoy.ToolError`, retryable for
        timeouts and connection errors."""
        if self.sandbox is not None:
            return await self._invoke_sandboxed(args, ctx)
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        try:
            if inspect.iscoroutinefunction(self.fn):
                result = await (self.fn(ctx, **kwargs) if self.takes_ctx else self.fn(**kwargs))
            else:
                args_ = (ctx,) if self.takes_ctx else ()
                if self.isolate == "process":
                    result = await run_in_process(self.name, self.fn, *args_, **kwargs)
                else:
                    pool = self.threads if self.threads is not None else DEFAULT_TOOL_THREADS
                    result = await pool.run(self.name, self.fn, *args_, **kwargs)
        except ToolError:
            raise
        except Exception as e:
            # Facts a model can act on (a state conflict's current value) go with it.
            raise ToolError(f"tool {self.name!r} raised {type(e).__name__}: {e}",
                            retryable=isinstance(e, TimeoutError | ConnectionError),
                            timeout=isinstance(e, TimeoutError),
                            details=e.details if isinstance(e, StepError) else None) from e
        if self.result_adapter is not None:
            try:
                result = self.result_adapter.validate_python(result)
            except ValidationError as e:
                raise ToolError(f"tool {self.name!r} returned an invalid result: "
                                f"{readable_validation_error(e)}") from None
        return result

    async def _invoke_sandboxed(self, args: BaseModel, ctx: ToolContext[Any]) -> Any:
        """One call in a sandbox process: arguments and result cross as JSON, validated by
        the tool's types on both sides; a limit, refusal or crash is a ToolSandboxError."""
        from convoy.sandbox._crossing import deps_adapter, dump_deps, tool_ref
        from convoy.sandbox._runner import run_sandboxed

        assert self.sandbox is not None
        call_ctx: dict[str, Any] | None = None
        if self.takes_ctx:
            adapter = deps_adapter(self.fn)
            call_ctx = {"session_id": ctx.session_id, "tenant": ctx.tenant,
                        "agent": ctx.agent, "step_key": ctx.step_key,
                        "idempotency_key": ctx.idempotency_key,
                        "deps": None if adapter is None else
                        dump_deps(adapter, ctx.deps, self.name)}
        try:
            text = await run_sandboxed(self.name, tool_ref(self.fn, self.name), self.sandbox,
                                       args.model_dump_json(), call_ctx)
        except ToolError:
            raise
        except Exception as e:  # what the tool raised, rebuilt from its record
            raise ToolError(f"tool {self.name!r} raised {type(e).__name__}: {e}",
                            retryable=isinstance(e, TimeoutError | ConnectionError),
                            timeout=isinstance(e, TimeoutError)) from e
        try:
            return self.load_result(text)
        except ValidationError as e:
            raise ToolError(f"tool {self.name!r} returned an invalid result: "
                            f"{readable_validation_error(e)}") from None

    def dump_result(self, result: Any) -> str:
        """The result as JSON text, for the journal and for the model."""
        if self.result_adapter is not None:
            return self.result_adapter.dump_json(result).decode()
        return json.dumps(result, default=str)

    def load_result(self, text: str) -> Any:
        """Decode a journaled result (the inverse of :meth:`dump_result`), for replay."""
        if self.result_adapter is not None:
            return self.result_adapter.validate_json(text)
        return json.loads(text)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(*, name: str | None = None, description: str | None = None, writes: bool = False,
         idempotent: bool | None = None, isolate: Literal["thread", "process"] = "thread",
         threads: ToolThreads | None = None, scopes: Iterable[str] = (),
         requires_approval: bool | Approval = False, sandbox: Sandbox | None = None,
         destructive: bool = False, trusted: bool = False,
         ) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
         description: str | None = None, writes: bool = False,
         idempotent: bool | None = None, isolate: Literal["thread", "process"] = "thread",
         threads: ToolThreads | None = None, scopes: Iterable[str] = (),
         requires_approval: bool | Approval = False, sandbox: Sandbox | None = None,
         destructive: bool = False, trusted: bool = False,
         ) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function into a :class:`Tool`.

    Args:
        name: tool name shown to the model (default: the function name).
        description: shown to the model (default: the docstring's first paragraph).
        writes: the tool has side effects; Convoy journals it before calling and passes an
            idempotency key.
        idempotent: calling it twice with the same arguments (and idempotency key) is safe.
            Defaults to ``not writes``. Only idempotent tools are retried after a crash
            left their outcome unknown.
        isolate: where a *sync* function runs. ``"thread"``: a daemon thread of
            ``threads`` (default: a shared pool of ``min(32, cpus + 4)``); a call that times
            out keeps its thread until the function returns, and a tool with too many such
            calls fails fast with ``ToolThreadsExhausted``. ``"process"``: a child process
            (forked where the platform can) killed when the call times out or is
            cancelled, for tools that may hang; arguments, result and exceptions must pickle.
        threads: a :class:`ToolThreads` pool of its own for this tool (a bulkhead).
        scopes: the scopes a call needs (``"payments:refund"``); an agent not granted all
            of them (``Agent(scopes=...)``) is refused before the tool runs, and the
            model is told (``ToolDenied``).
        requires_approval: ``True`` or an :class:`Approval`: every call waits for a
            person to approve it (an inbox task; the session parks), bound to its exact
            arguments, tenant and session, valid for ``expires_after`` seconds, used once.
        sandbox: run every call (sync or async) in a fresh, locked-down process with these
            limits (:class:`~convoy.Sandbox`); a limit hit, a refusal or a crash is a
            :class:`~convoy.ToolSandboxError`. The function must be defined at the top of
            a module, and its arguments and result must be JSON.
        destructive: the tool destroys or moves something that cannot be taken back
            (implies ``writes``); by default, once a session has read untrusted content,
            every call of it needs a person's approval (:class:`~convoy.ProvenancePolicy`).
        trusted: its output is trusted data (your own system of record), not untrusted
            content: it is not spotlighted, and arguments found in it need no approval.
    """
    if isolate not in ("thread", "process"):
        raise UserError(f"tool isolate must be 'thread' or 'process', got {isolate!r}")
    if not isinstance(requires_approval, bool | Approval):
        raise UserError(f"tool requires_approval is True, False or a convoy.Approval, got "
                        f"{requires_approval!r}")
    approval = Approval() if requires_approval is True else requires_approval or None
    scope_set = frozenset(scopes) if not isinstance(scopes, str) else scopes
    if sandbox is not None and not isinstance(sandbox, Sandbox):
        raise UserError(f"tool sandbox must be a convoy.Sandbox, got {sandbox!r}")
    if sandbox is not None and (isolate != "thread" or threads is not None):
        raise UserError("a sandboxed tool already runs in a process of its own; drop "
                        "isolate= and threads=")

    localns = dict(sys._getframe(1).f_locals)  # resolve annotations naming local classes

    writes = writes or destructive

    def build(f: Callable[..., Any]) -> Tool:
        return _build_tool(f, localns, name=name, description=description, writes=writes,
                           idempotent=(not writes) if idempotent is None else idempotent,
                           isolate=isolate, threads=threads, scopes=scope_set,
                           approval=approval, sandbox=sandbox, destructive=destructive,
                           trusted=trusted)

    return build(fn) if fn is not None else build


def _build_tool(f: Callable[..., Any], localns: dict[str, Any], *, name: str | None,
                description: str | None, writes: bool, idempotent: bool,
                isolate: Literal["thread", "process"] = "thread",
                threads: ToolThreads | None = None, scopes: Any = frozenset(),
                approval: Approval | None = None, sandbox: Sandbox | None = None,
                destructive: bool = False, trusted: bool = False) -> Tool:
    tool_name = name or f.__name__
    if not tool_name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"tool name {tool_name!r} must be letters, digits, '_' or '-'")
    # include_extras: Annotated[str, Field(max_length=...)] constraints reach the schema
    hints = get_type_hints(f, localns=localns, include_extras=True)
    params = list(inspect.signature(f).parameters.values())
    first = hints.get(params[0].name) if params else None
    takes_ctx = first is ToolContext or get_origin(first) is ToolContext
    if takes_ctx:
        params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UserError(f"tool {tool_name!r}: *args/**kwargs are not supported; "
                            "declare each argument with a type")
        if p.name not in hints:
            raise UserError(f"tool {tool_name!r}: argument {p.name!r} needs a type annotation")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], default)
    args_model = cast(type[BaseModel], create_model(
        f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields))
    ret = hints.get("return")
    if sandbox is not None:  # what cannot cross into its process fails here, not per call
        from convoy.sandbox._crossing import check_deps, tool_ref

        tool_ref(f, tool_name)
        if takes_ctx:
            check_deps(first, tool_name)
    doc = inspect.getdoc(f) or ""
    return Tool(
        name=tool_name,
        description=description or doc.split("\n\n")[0] or tool_name,
        fn=f,
        args_model=args_model,
        result_adapter=None if ret in (None, type(None)) else TypeAdapter(ret),
        takes_ctx=takes_ctx,
        writes=writes,
        idempotent=idempotent,
        isolate=isolate,
        threads=threads,
        scopes=scopes,
        approval=approval,
        sandbox=sandbox,
        destructive=destructive,
        trusted=trusted,
    )

