"""Workflow definitions: plain async functions of ``(ctx, input)``."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints, overload

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from convoy._errors import UserError
from convoy._text import a_word, import_failed, quoted, short
from convoy.definitions._agent import Agent
from convoy.runtime._context import Context

InT = TypeVar("InT")
OutT = TypeVar("OutT")


@dataclass(frozen=True, kw_only=True, eq=False)
class Workflow(Generic[InT, OutT]):
    """A named, versioned workflow. Build one with :func:`workflow`."""

    fn: Callable[[Context, InT], Awaitable[OutT]]
    name: str
    version: str
    input_type: Any
    output_type: Any
    input_adapter: TypeAdapter[Any]
    output_adapter: TypeAdapter[Any]
    #: Agents that names in handoffs and workers resolve to (see :class:`~convoy.Agent`).
    agents: tuple[Agent[Any, Any], ...] = ()

    def __call__(self, ctx: Context, value: InT) -> Awaitable[OutT]:
        return self.fn(ctx, value)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version!r})"

    def read_input(self, value: Any) -> Any:
        """``value`` as this workflow's input type: a Python value first (a string is a
        string where the type takes one: ``Optional[str]``, a ``Literal``, ``Any``), else,
        for a string, JSON text of it (a model, a list); bytes are JSON text unless the
        type takes bytes. Raises :class:`pydantic.ValidationError`: the JSON text's where
        it is JSON, else the value's."""
        adapter = self.input_adapter
        if isinstance(value, bytes) and self.input_type is not bytes:
            return adapter.validate_json(value)
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            if not isinstance(value, str) or self.input_type is str:
                raise
            as_value = e
        try:
            return adapter.validate_json(value)
        except ValidationError as e:
            if e.errors()[0]["type"] == "json_invalid":  # (not JSON: what the value lacks)
                raise as_value from None
            raise


@overload
def workflow(fn: Callable[[Context, InT], Awaitable[OutT]], /) -> Workflow[InT, OutT]: ...
@overload
def workflow(*, name: str | None = None, version: str = "1",
             agents: Sequence[Agent[Any, Any]] = ()) -> Callable[
    [Callable[[Context, InT], Awaitable[OutT]]], Workflow[InT, OutT]]: ...


def workflow(fn: Any = None, /, *, name: str | None = None, version: str = "1",
             agents: Sequence[Agent[Any, Any]] = ()) -> Any:
    """Declare a workflow: ``async def f(ctx: Context, input: In) -> Out``.

    The input and output types come from the annotations and are validated at the edges.
    ``name`` defaults to ``"module:function"``. Give an explicit ``name`` (``"desk.ticket"``)
    so sessions survive renaming the module: an engine resumes a session by the name it
    was recorded with, finding the workflow among those it was given
    (``Engine(workflows=...)``) or that were decorated in a module it has imported
    (``convoy resume --import myapp.flows``); a ``"module:function"`` name is imported.
    A workflow defined in a script run directly is named ``"__main__:function"``, which
    no other process can import: only that script resumes its sessions. Define it in a
    module the script imports, or give it an explicit name and import the script, for
    other processes to resume them (the types it uses may stay in the script).
    Bump ``version`` when you change the steps a workflow takes; sessions remember the
    version they started with. ``agents`` are agents that handoffs and workers named by
    string may resolve to, besides those the workflow runs (see :class:`~convoy.Agent`).
    """

    # Annotations of a workflow defined inside a function (with postponed evaluation) name
    # local classes: resolve them in the namespace of the frame that applied the decorator.
    localns = dict(sys._getframe(1).f_locals)

    def build(f: Callable[..., Awaitable[Any]]) -> Workflow[Any, Any]:
        if not inspect.iscoroutinefunction(f):
            raise UserError(f"workflow {f.__name__!r} must be an 'async def' function")
        params = list(inspect.signature(f).parameters)
        if len(params) != 2:
            raise UserError(f"workflow {f.__name__!r} must take exactly (ctx, input), "
                            f"it takes {params}")
        hints = get_type_hints(f, localns=localns)
        in_t = hints.get(params[1], Any)
        out_t = hints.get("return", Any)
        wf: Workflow[Any, Any] = Workflow(
            fn=f, name=name or f"{f.__module__}:{f.__qualname__}", version=str(version),
            input_type=in_t, output_type=out_t, input_adapter=_json_adapter(in_t),
            output_adapter=_json_adapter(out_t), agents=tuple(agents))
        _REGISTRY[wf.name] = wf
        return wf

    return build(fn) if fn is not None else build


class WorkflowNotFound(UserError):
    """No workflow named ``workflow`` is registered in this process, and the name does not
    lead to one: an explicit name whose module was not imported, a ``"__main__:..."`` name
    recorded by a script, or a ``"module:name"`` reference whose module does not import or
    has no such attribute (a retired workflow). Commands catch it to say how *they* load
    the module."""

    def __init__(self, message: str, workflow: str) -> None:
        super().__init__(message)
        self.workflow = workflow

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.workflow))


#: Every workflow decorated in this process, by name.
_REGISTRY: dict[str, Workflow[Any, Any]] = {}


def registered_workflow(name: str) -> Workflow[Any, Any] | None:
    """The workflow decorated under ``name`` in an imported module, if any."""
    return _REGISTRY.get(name)


def script_workflow(name: str, instead: str | None = None) -> str:
    """What to do about ``"__main__:NAME"``: a workflow defined in a script run directly,
    whose sessions no other process can load (``instead``: what to run in the script)."""
    short = name.partition(":")[2].rpartition(".")[2]
    instead = instead or "resume its sessions from that script (await engine.resume())"
    return (f"workflow {quoted(name, 120)} was defined in a script run directly ('__main__'), "
            f"which no other process can import; {instead}, and for the sessions it starts "
            "from then on, define the workflow in a module the script imports, with an "
            f"explicit name (@convoy.workflow(name={quoted(short, 80)})): any process that "
            "imports that module can resume them")


def file_path_module(name: str) -> str | None:
    """What to write instead of a module named as a file (``flows.py``, ``./app/flows``):
    the module as Python imports it, or ``None`` for a name that is not a path."""
    if not (name.endswith(".py") or "/" in name or "\\" in name or name.startswith(".")):
        return None
    stem = name[:-3] if name.endswith(".py") else name
    parts = [p for p in stem.replace("\\", "/").split("/") if p not in ("", ".")]
    dotted = ".".join(parts)
    if not parts or ".." in parts or not all(p.isidentifier() for p in parts):
        return "a module name (run from the directory that contains the file, and name it " \
            "without '.py')"
    top = f"{parts[0]}.py" if len(parts) == 1 else parts[0]
    return f"{dotted!r} (run from the directory that contains {top!r})"


def load_workflow(ref: str) -> Workflow[Any, Any]:
    """Import ``"package.module:attribute"`` and return the workflow it names (or the one
    decorated under the explicit name ``ref`` in an imported module).

    Raises:
        WorkflowNotFound: no workflow is found by ``ref``: an explicit name no imported
            module registered, a script's ``"__main__:NAME"``, a module that does not
            import, or an attribute the module does not have.
        UserError: ``ref`` names a file path, or something that is not a workflow, or the
            module's own code failed on import.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        found = _REGISTRY.get(ref)
        if found is not None:
            return found
        raise WorkflowNotFound(f"workflow {quoted(ref, 120)} is not registered in this process "
                               "and is not a 'package.module:name' reference; import the module "
                               "that defines it, or pass Engine(workflows=[...])", ref)
    if module_name == "__main__" and registered_workflow(ref) is None:
        raise WorkflowNotFound(script_workflow(ref), ref)
    instead = file_path_module(module_name)
    if instead is not None:
        raise UserError(f"{quoted(module_name, 120)} in {quoted(ref, 120)} is a file path; name "
                        f"the module as Python imports it: {instead}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise WorkflowNotFound(import_failed(module_name, e, f" for workflow "
                                             f"{quoted(ref, 120)}"), ref) from e
    except Exception as e:  # the module's own code failed on import
        raise UserError(f"importing module {quoted(module_name)} for workflow "
                        f"{quoted(ref, 120)} failed: {type(e).__name__}: {short(str(e), 2000)}"
                        ) from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            flows = {n: v for n in dir(module) if isinstance(v := getattr(module, n), Workflow)}
            named = [n for n, wf in flows.items() if wf.name == attr]
            if named:  # the workflow's explicit name, typed where its attribute goes
                raise WorkflowNotFound(f"{quoted(attr)} is the explicit name of "
                                       f"{module_name}:{named[0]}; name it as "
                                       f"{quoted(f'{module_name}:{named[0]}', 120)}", ref)
            raise WorkflowNotFound(
                f"module {quoted(module_name)} has no attribute {quoted(attr)}; workflows it "
                f"defines: {', '.join(f'{module_name}:{n}' for n in flows) or '(none)'}", ref)
        obj = getattr(obj, part)
    return check_workflow(obj, ref)


def check_workflow(obj: Any, ref: str | None = None) -> Workflow[Any, Any]:
    """``obj`` if it is a workflow, else a UserError naming it (as ``ref``, or by its own
    name) and what it is: a function someone forgot to decorate, most of the time."""
    if isinstance(obj, Workflow):
        return obj
    if ref is None:
        name = getattr(obj, "__qualname__", None)
        ref = name if isinstance(name, str) else short(repr(obj), 120)
    kind = type(obj).__name__
    if isinstance(obj, str):
        raise UserError(f"{quoted(ref, 120)} is a name, not a workflow; load the workflow "
                        f"it names with convoy.load_workflow({quoted(ref, 120)})")
    raise UserError(f"{quoted(ref, 120)} is {a_word(kind)}, not a workflow; decorate it "
                    "with @convoy.workflow")


def _json_adapter(tp: Any) -> TypeAdapter[Any]:
    """The adapter of a workflow's input or output type, whose JSON keeps a float's NaN
    and infinities (``NaN``, ``Infinity``: what ``pydantic_core`` and Python's ``json``
    write and read) where pydantic's default writes ``null`` (a value read back as
    ``None``). A model, dataclass or TypedDict has its own configuration (pydantic takes
    no other for it): its ``ser_json_inf_nan`` says."""
    try:
        return TypeAdapter(tp, config=_KEEP_INF_NAN)
    except PydanticUserError:
        return TypeAdapter(tp)


_KEEP_INF_NAN = ConfigDict(ser_json_inf_nan="constants")
