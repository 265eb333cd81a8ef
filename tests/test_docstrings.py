"""Every public definition has a docstring: the API reference is built from them.

Walks ``__all__`` of the documented modules: classes (with their public methods and
properties, inherited ones from Convoy base classes included) and functions. A method that
overrides a documented method of a base class inherits its contract, as ``inspect.getdoc``
does. Constants and type aliases cannot carry a docstring at run time and are skipped.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

MODULES = ("convoy", "convoy.resilience", "convoy.cost", "convoy.chaos", "convoy.stores",
           "convoy.durability")


def _is_generated(cls: type, doc: str) -> bool:
    """``@dataclass`` writes ``Name(field: type, ...)`` when a class has no docstring."""
    return doc.startswith(f"{cls.__name__}(")


def _own_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not doc or _is_generated(cls, doc):
        return None
    return str(doc)


def _members(cls: type) -> dict[str, Any]:
    """Public functions and properties defined by ``cls`` or a Convoy base class."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("convoy"):
            continue
        for name, raw in vars(klass).items():
            if name.startswith("_"):
                continue
            value = raw.__func__ if isinstance(raw, staticmethod | classmethod) else raw
            if inspect.isfunction(value) or isinstance(value, property):
                found[name] = (klass, value)
    return found


#: Implementations of a documented protocol inherit its method contracts (they implement
#: it structurally, so the MRO does not show it); their own extra members still need docs.
IMPLEMENTS = {"SQLiteStore": ("convoy.stores", "Store"),
              "SQLiteLimits": ("convoy.stores", "Store"),  # SQLiteStore's shared limits
              "SQLiteState": ("convoy.stores", "Store"),  # SQLiteStore's state methods
              "PostgresStore": ("convoy.stores", "Store"),
              "PostgresState": ("convoy.stores", "Store"),  # PostgresStore's state methods
              "SQLiteAlerts": ("convoy.stores", "Store"),  # SQLiteStore's alert methods
              "PostgresAlerts": ("convoy.stores", "Store"),  # PostgresStore's alert methods
              "SQLiteAudit": ("convoy.stores", "Store"),  # SQLiteStore's audit methods
              "PostgresAudit": ("convoy.stores", "Store"),  # PostgresStore's audit methods
              "PostgresLimits": ("convoy.stores", "Store"),  # PostgresStore's shared limits
              "SQLiteSubjects": ("convoy.stores", "Store"),  # their data-subject methods
              "PostgresSubjects": ("convoy.stores", "Store"),
              "JournaledExecutor": ("convoy.durability", "StepExecutor")}


def _method_doc(cls: type, name: str, value: Any) -> str | None:
    if isinstance(value, property):
        if value.__doc__:
            return value.__doc__
    elif value.__doc__:
        return str(value.__doc__)
    bases = list(cls.__mro__[1:])
    if cls.__name__ in IMPLEMENTS:
        module, protocol = IMPLEMENTS[cls.__name__]
        bases.insert(0, getattr(importlib.import_module(module), protocol))
    for base in bases:  # an override inherits the contract it implements
        inherited = base.__dict__.get(name)
        if inherited is not None and getattr(inherited, "__doc__", None):
            return str(inherited.__doc__)
    return None


def _public_definitions() -> list[tuple[str, Any]]:
    seen: set[int] = set()
    found: list[tuple[str, Any]] = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            found.append((f"{module_name}.{name}", obj))
    return found


def missing_docstrings() -> list[str]:
    """Qualified names of public definitions without a docstring."""
    missing: list[str] = []
    for qualname, obj in _public_definitions():
        if inspect.isfunction(obj):
            if not obj.__doc__:
                missing.append(qualname)
            continue
        if _own_doc(obj) is None:
            missing.append(qualname)
        for name, (owner, value) in sorted(_members(obj).items()):
            if owner is not obj and owner.__module__.startswith("convoy") and any(
                    owner is o for q, o in _public_definitions()):
                continue  # reported once, on the public class that defines it
            if _method_doc(owner, name, value) is None:
                missing.append(f"{qualname}.{name}")
    return sorted(set(missing))


def test_the_walk_finds_the_public_surface() -> None:
    names = {q for q, _ in _public_definitions()}
    for must in ("convoy.Engine", "convoy.Interceptor", "convoy.stores.Store",
                 "convoy.resilience.protections", "convoy.durability.StepExecutor"):
        assert must in names
    members = _members(importlib.import_module("convoy").Engine)
    assert {"run", "resume", "signal", "replay"} <= set(members)


@pytest.mark.parametrize("module_name", MODULES)
def test_public_definitions_have_docstrings(module_name: str) -> None:
    prefix = module_name + "."
    missing = [q for q in missing_docstrings()
               if q.startswith(prefix) and "." not in q[len(prefix):].split(".", 1)[0]]
    assert missing == [], f"write a docstring (Google style) for: {', '.join(missing)}"
