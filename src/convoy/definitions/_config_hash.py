"""Agent configuration hashes: which version of an agent's definition took a step.

The hash covers what decides an agent's behaviour: its name, its instructions, its model
route, its input and output schemas, its tools, the agents it may hand off or delegate to
(by name), its scopes, and its policies (retries, turns, sampling settings, criticality,
escalation). It is the sha256 of a canonical JSON document (sorted keys, no whitespace),
computed once per definition (:attr:`convoy.Agent.config_hash`); its first 16 hex digits
(:attr:`convoy.Agent.config_id`) are journaled with every step the agent takes.

**A tool** counts by its name, description, argument and result schemas, and its policies:
``scopes``, ``writes``, ``idempotent``, ``destructive``, ``trusted``, ``requires_approval``
(the :class:`~convoy.Approval`), ``isolate``, its ``threads`` pool's limits and its
:class:`~convoy.Sandbox` (every limit and ``network``/``read_paths``; of ``env`` only the
variable names, since the values may be credentials). The tool function's code does not
count.

**Computed instructions** (and any function found in a value the document holds) count by
what they are, not by where they were loaded from:

* a function: its qualified name (not its module's name, which is ``__main__`` in
  ``python app.py`` and ``app`` in ``convoy worker``), its code object (bytecode,
  constants, names, argument counts and flags; nested code objects the same way), its
  defaults and keyword-only defaults, and the values of its closure cells (what a
  factory's inner function or lambda captured);
* a :func:`functools.partial`: its function, positional arguments and keywords;
* a bound method: its function and the object it is bound to;
* a builtin: its qualified name, its module, and the object it is bound to (the template
  of ``"Answer {}".format``).

The values those hold are encoded canonically: ``None``, booleans, numbers, strings,
bytes, lists and tuples (as lists), sets (sorted), dicts, enums (type and member name),
dataclasses and Pydantic models (field by field), classes (qualified name), modules
(name), agents (name and hash), tools (as above), functions (as above; one that
refers back to itself counts once). Anything else counts by its type's qualified name
and its ``repr``, unless the repr shows a memory address (``0x...``): then by its type
alone. So an object whose repr varies from process to process for another reason gives
a different hash in each: make it a dataclass or give it a deterministic ``__repr__``.
Module globals a function reads (a ``PROMPT`` constant at the top of the module) do not
count, nor does the source text (comments and layout). Values nested deeper than
:data:`MAX_DEPTH` count by their type alone.

**Stability.** No ``id()``, address or hash-seeded order enters the document, so the same
definition gives the same hash in every process on the same Python minor version, whatever
``PYTHONHASHSEED``. Bytecode differs between Python minor versions (3.11, 3.12, ...) and
with ``-O``/``-OO`` (asserts, docstrings), so an agent with computed instructions gets
another hash there; an agent with text instructions does not. The journal only records the
hash: replay and resume never compare it, so a session journaled under another hash (an
older Convoy, another Python) still resumes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import json
import re
import types
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.definitions._tools import Tool

#: Hex digits journaled with each step (:attr:`convoy.Agent.config_id`).
JOURNALED = 16
#: Nesting beyond which a value counts by its type alone.
MAX_DEPTH = 32

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


def agent_config(agent: Agent[Any, Any]) -> dict[str, Any]:
    """The canonical document an agent's configuration hash is taken of."""
    model = agent.model
    route = model if isinstance(model, str) or model is None else {
        "name": model.name, "deployment": model.deployment, "class": type(model).__qualname__}
    return {
        "name": agent.name,
        "instructions": _code_or_text(agent.instructions),
        "model": route,
        "input": agent.input_schema,
        "output": agent.output_schema,
        "tools": [_tool(t) for t in agent.tools],
        "handoffs": [r if isinstance(r, str) else r.name for r in agent.handoffs],
        "workers": [r if isinstance(r, str) else r.name for r in agent.workers],
        "scopes": sorted(agent.scopes),
        "policies": {
            "output_retries": agent.output_retries, "handoff_retries": agent.handoff_retries,
            "tool_failures": agent.tool_failures, "max_turns": agent.max_turns,
            "criticality": agent.criticality,
            "settings": _plain(agent.model_settings),
            "escalation": _plain(agent.escalation),
        },
    }


def config_hash(agent: Agent[Any, Any]) -> str:
    """The sha256 (hex) of :func:`agent_config` as canonical JSON."""
    return hashlib.sha256(_json(agent_config(agent)).encode()).hexdigest()


def _json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tool(t: Tool) -> dict[str, Any]:
    sandbox = None
    if t.sandbox is not None:
        sandbox = {f.name: _plain(getattr(t.sandbox, f.name))
                   for f in dataclasses.fields(t.sandbox) if f.name != "env"}
        sandbox["env"] = sorted(t.sandbox.env)  # names only: values may be credentials
    threads = None if t.threads is None else {
        "max_workers": t.threads.max_workers,
        "max_stuck_per_tool": t.threads.max_stuck_per_tool}
    return {"name": t.name, "description": t.description, "parameters": t.spec.parameters,
            "result": t.result_adapter.json_schema() if t.result_adapter is not None else None,
            "writes": t.writes, "idempotent": t.idempotent, "scopes": sorted(t.scopes),
            "approval": _plain(t.approval), "isolate": t.isolate,
            "destructive": t.destructive, "trusted": t.trusted, "sandbox": sandbox,
            "threads": threads}


def _code_or_text(value: Any) -> Any:
    """Text as is; a callable as the module docstring says."""
    if isinstance(value, str):
        return value
    return _plain(value)


def _plain(value: Any) -> Any:
    """``value`` as canonical JSON values (see the module docstring)."""
    return _Encoder().encode(value, 0)


class _Encoder:
    """One encoding: remembers the containers and functions on the current path, so a
    value that contains itself (a recursive inner function's own cell) counts once."""

    def __init__(self) -> None:
        self._path: set[int] = set()  # ids of the values being encoded: never encoded

    def encode(self, value: Any, depth: int) -> Any:
        if value is None or (isinstance(value, bool | int | float | str) and
                             not isinstance(value, enum.Enum)):
            return value
        if depth > MAX_DEPTH:
            return {"object": _qualname(type(value))}
        key = id(value)
        if key in self._path:
            return {"cycle": _qualname(value if callable(value) else type(value))}
        self._path.add(key)
        try:
            return self._compound(value, depth + 1)
        finally:
            self._path.discard(key)

    def _compound(self, value: Any, depth: int) -> Any:
        enc = self.encode
        if isinstance(value, enum.Enum):
            return {"enum": _qualname(type(value)), "name": value.name}
        if isinstance(value, bytes | bytearray):
            return {"bytes": bytes(value).hex()}
        if isinstance(value, complex):
            return {"complex": [value.real, value.imag]}
        if isinstance(value, list | tuple):
            return [enc(v, depth) for v in value]
        if isinstance(value, set | frozenset):
            return sorted((enc(v, depth) for v in value), key=_json)
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {k: enc(v, depth) for k, v in value.items()}
            pairs = [[enc(k, depth), enc(v, depth)] for k, v in value.items()]
            return {"dict": sorted(pairs, key=_json)}
        if isinstance(value, types.CodeType):
            return {"code": self._code(value, depth)}
        if isinstance(value, types.FunctionType):
            return self._function(value, depth)
        if isinstance(value, functools.partial):
            return {"partial": enc(value.func, depth), "args": enc(value.args, depth),
                    "keywords": enc(value.keywords, depth)}
        if isinstance(value, types.MethodType):
            return {"method": enc(value.__func__, depth), "self": enc(value.__self__, depth)}
        if isinstance(value, types.BuiltinFunctionType | types.MethodWrapperType |
                      types.MethodDescriptorType | types.WrapperDescriptorType):
            owner = getattr(value, "__self__", None)
            return {"builtin": _qualname(value), "module": getattr(value, "__module__", None),
                    "self": None if isinstance(owner, types.ModuleType) else enc(owner, depth)}
        if isinstance(value, types.ModuleType):
            return {"module": value.__name__}
        if isinstance(value, type):
            return {"type": _qualname(value)}
        return self._object(value, depth)

    def _object(self, value: Any, depth: int) -> Any:
        from convoy.definitions._agent import Agent
        from convoy.definitions._tools import Tool

        enc = self.encode
        if isinstance(value, Agent):
            return {"agent": value.name, "config": value.config_hash}
        if isinstance(value, Tool):
            return {"tool": _tool(value)}
        doc: dict[str, Any]
        if dataclasses.is_dataclass(value):
            # Field by field, untagged: the form settings and escalations always had.
            doc = {f.name: enc(getattr(value, f.name), depth)
                   for f in dataclasses.fields(value)}
        elif isinstance(value, BaseModel):
            doc = {"object": _qualname(type(value)), "fields": enc(value.model_dump(), depth)}
        else:
            doc = {"object": _qualname(type(value)), "repr": _stable_repr(value)}
        call = inspect.getattr_static(type(value), "__call__", None)
        if isinstance(call, types.FunctionType):  # a callable object: its method's code too
            doc = {"callable": doc, "call": enc(call, depth)}
        return doc

    def _function(self, fn: types.FunctionType, depth: int) -> dict[str, Any]:
        enc = self.encode
        doc: dict[str, Any] = {"function": fn.__qualname__, "code": self._code(fn.__code__, depth)}
        if fn.__defaults__:
            doc["defaults"] = enc(fn.__defaults__, depth)
        if fn.__kwdefaults__:
            doc["kwdefaults"] = enc(fn.__kwdefaults__, depth)
        if fn.__closure__:
            cells: dict[str, Any] = {}
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True):
                try:
                    cells[name] = enc(cell.cell_contents, depth)
                except ValueError:  # a cell not filled yet
                    cells[name] = {"empty": True}
            doc["closure"] = cells
        return doc

    def _code(self, code: types.CodeType, depth: int) -> str:
        """The sha256 of what a code object does: its bytecode (``co_code`` is the
        unspecialised form, the same however often the function ran), constants (nested
        code objects the same way), names, argument counts and flags. Not its file, line
        numbers or column positions, which move when unrelated code does."""
        doc = {"name": code.co_name, "bytecode": code.co_code.hex(),
               "consts": [self.encode(c, depth) for c in code.co_consts],
               "names": list(code.co_names), "varnames": list(code.co_varnames),
               "freevars": list(code.co_freevars), "cellvars": list(code.co_cellvars),
               "args": [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount],
               "flags": code.co_flags}
        return hashlib.sha256(_json(doc).encode()).hexdigest()


def _qualname(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or type(obj).__qualname__)


def _stable_repr(value: Any) -> str | None:
    """The repr, unless it shows a memory address (then ``None``) or fails."""
    try:
        text = repr(value)
    except Exception:
        return None
    return None if _ADDRESS.search(text) else text
