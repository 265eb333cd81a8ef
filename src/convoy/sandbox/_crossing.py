"""What crosses into a sandbox process: a reference to the tool (its module and name, so
the fresh interpreter imports it), and the ``ToolContext`` deps, as JSON, only when the
tool declares them with a JSON-able type."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter

from convoy._errors import UserError


def tool_ref(fn: Callable[..., Any], name: str) -> dict[str, str]:
    """Where the sandbox process finds the tool. Raises ``UserError`` for a function it
    cannot import (defined inside another function)."""
    module, qualname = fn.__module__, fn.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise UserError(f"sandboxed tool {name!r} must be defined at the top level of a module "
                        f"(it is {qualname!r}): its sandbox process imports it by name")
    main_file = ""
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None) or ""
        if not main_file:
            raise UserError(f"sandboxed tool {name!r} is defined in an interactive session; "
                            "define it in a module or script file")
    return {"module": module, "qualname": qualname, "main_file": main_file}


def _deps_type(fn: Callable[..., Any]) -> Any:
    """``X`` of a first parameter annotated ``ToolContext[X]`` (None: no deps declared)."""
    params = list(inspect.signature(fn).parameters)
    return _deps_of(get_type_hints(fn).get(params[0])) if params else None


def _deps_of(hint: Any) -> Any:
    from convoy.definitions._tools import ToolContext

    if get_origin(hint) is not ToolContext:
        return None
    (deps,) = get_args(hint)
    return None if deps is type(None) else deps


def deps_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    deps = _deps_type(fn)
    return None if deps is None else TypeAdapter(deps)


def check_deps(hint: Any, name: str) -> TypeAdapter[Any] | None:
    """For a first parameter annotated ``hint``: the adapter that carries the tool's deps
    into the sandbox as JSON; ``UserError`` when they are of a type that cannot cross (a
    client, a connection pool)."""
    deps = _deps_of(hint)
    if deps is None:
        return None
    try:
        return TypeAdapter(deps)
    except Exception as e:
        raise UserError(
            f"sandboxed tool {name!r} declares ToolContext[{getattr(deps, '__name__', deps)}]"
            f": such deps cannot cross into its sandbox process, which receives only JSON "
            f"({type(e).__name__}); declare plain ToolContext (deps stay in the engine) or deps "
            f"of a JSON type such as a Pydantic model") from None


def dump_deps(adapter: TypeAdapter[Any], deps: Any, name: str) -> str:
    try:
        return adapter.dump_json(deps).decode()
    except Exception as e:
        raise UserError(f"sandboxed tool {name!r}: the engine's deps ({type(deps).__name__}) "
                        f"do not match its ToolContext type and cannot cross into the "
                        f"sandbox as JSON: {e}") from None
