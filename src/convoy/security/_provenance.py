"""Provenance: where each piece of content a model sees came from, and what it tainted.

Every :class:`~convoy.Message` an agent loop builds carries a :class:`Provenance`: the
developer's instructions, the user's input, a tool's output (which tool), another agent
(which one), a person, or the model itself. Content from tools and from fields of the
input marked :class:`Untrusted` is *untrusted*; so is every message built from untrusted
content (taint propagates): a model's turns after it read untrusted content, the output
or handoff payload of such a run, and any later input whose text carries a string of such
an output (a summary passed on by workflow code, a handoff).

Each session keeps a :class:`Taint` ledger, created at the first untrusted content (a
session that reads none pays one attribute check per step): the untrusted texts it has
seen, normalised, which the policy (:mod:`convoy.security._policy`) checks tool arguments
against. The ledger is rebuilt by replay, from the same journaled results.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from convoy.models._messages import Message
    from convoy.runtime._session import SessionState


class Origin(StrEnum):
    """Where a piece of content came from."""

    DEVELOPER = "developer"
    USER = "user"
    TOOL = "tool"
    AGENT = "agent"
    HUMAN = "human"
    MODEL = "model"


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """The origin of one message: ``origin``, the tool or agent it came from
    (``source``), and whether it is untrusted or built from untrusted content
    (``tainted``)."""

    origin: Origin
    source: str = ""
    tainted: bool = False

    @property
    def label(self) -> str:
        """``"tool:search_docs"``, ``"user"``, ..."""
        return f"{self.origin.value}:{self.source}" if self.source else self.origin.value


DEVELOPER = Provenance(origin=Origin.DEVELOPER)
USER = Provenance(origin=Origin.USER)
USER_TAINTED = Provenance(origin=Origin.USER, tainted=True)
HUMAN = Provenance(origin=Origin.HUMAN)
MODEL = Provenance(origin=Origin.MODEL)
MODEL_TAINTED = Provenance(origin=Origin.MODEL, tainted=True)


@lru_cache(maxsize=1024)
def from_tool(name: str, tainted: bool = True) -> Provenance:
    """A tool's output (shared instances: no allocation per message)."""
    return Provenance(origin=Origin.TOOL, source=name, tainted=tainted)


@lru_cache(maxsize=1024)
def from_agent(name: str, tainted: bool) -> Provenance:
    """Another agent's message: a handoff payload or a worker's answer."""
    return Provenance(origin=Origin.AGENT, source=name, tainted=tainted)


@dataclass(frozen=True, slots=True, kw_only=True)
class Untrusted:
    """Marks a field of an input model as untrusted content, not the user's request::

        class Ticket(BaseModel):
            request: str                                   # what the user asks
            attachment: Annotated[str, convoy.Untrusted()]  # what they forwarded

    Its text joins the session's untrusted content (the policy checks tool arguments
    against it) and is not part of the user's request; the agent's input message is
    tainted (a plain tainted ``user`` provenance), and the session's taint sources, which
    the policy's refusals cite, name the field: ``"user:attachment"``."""


@lru_cache(maxsize=256)
def untrusted_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``cls`` annotated :class:`Untrusted`."""
    return tuple(name for name, f in cls.model_fields.items()
                 if any(isinstance(m, Untrusted) for m in f.metadata))


_WS = re.compile(r"\s+")
#: Strings shorter than this (normalised) are not compared as a whole: too common.
MIN_MATCH = 6


def normalise(text: str) -> str:
    """Lower case without whitespace: ``"DE89 3704"`` and ``"de893704"`` compare equal."""
    return _WS.sub("", text.lower())


def strings(value: Any) -> Iterator[str]:
    """The string leaves of a JSON-like value (keys not included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)


class Taint:
    """One session's untrusted content (see the module docstring).

    Attributes:
        texts: the untrusted texts seen, normalised.
        marks: normalised strings of outputs built from untrusted content: a later
            input carrying one is tainted.
        sources: the provenance labels of what was read, in order (first occurrence).
        boundary: the session's spotlighting boundary, random, never in the journal.
    """

    __slots__ = ("boundary", "marks", "request", "sources", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.marks: list[str] = []
        self.sources: list[str] = []
        self.request: str | None = None
        self.boundary = secrets.token_hex(8)

    def add(self, text: str, prov: Provenance) -> None:
        """Untrusted ``text`` entered the session."""
        self.texts.append(normalise(text))
        if prov.label not in self.sources:
            self.sources.append(prov.label)

    def add_derived(self, value: Any, prov: Provenance) -> None:
        """An output built from untrusted content: its text is untrusted, and inputs that
        carry one of its strings are tainted."""
        for s in strings(value):
            n = normalise(s)
            if len(n) >= MIN_MATCH:
                self.marks.append(n)
                self.texts.append(n)
        if prov.label not in self.sources:
            self.sources.append(prov.label)

    def derived(self, text: str) -> bool:
        """Whether ``text`` carries a string of an output built from untrusted content."""
        if not self.marks:
            return False
        n = normalise(text)
        return any(m in n for m in self.marks)

    def seen_in(self, candidate: str) -> bool:
        """Whether the normalised ``candidate`` occurs in untrusted content."""
        return any(candidate in t for t in self.texts)


def ledger(s: SessionState) -> Taint:
    """The session's ledger, created at its first untrusted content."""
    t = s.taint
    if t is None:
        t = s.taint = Taint()
    return t


def note_untrusted(s: SessionState, text: str, prov: Provenance, *,
                   signal: bool = False) -> None:
    """Untrusted ``text`` entered session ``s``: into its ledger; with ``signal``, known
    injection patterns into the engine's signals, unless the session is replaying its
    journal (the provenance policy signals tool outputs as they are produced)."""
    ledger(s).add(text, prov)
    if signal and not getattr(s.executor, "replaying", False):
        count_injections(s, text)


def note_grounded(s: SessionState, text: str) -> None:
    """A trusted tool's output entered session ``s``: what it holds may ground a later
    call's arguments (the ``ungrounded_entities`` rule)."""
    if s.grounded is None:
        s.grounded = []
    s.grounded.append(normalise(text))


def count_injections(s: SessionState, text: str) -> None:
    """Known injection patterns of ``text`` into the engine's signals."""
    from convoy.security._spotlight import detect_injection

    hits = detect_injection(text)
    if hits:
        s.runtime.injection_signals.update(hits)


def input_provenance(s: SessionState, value: Any, rendered: str, sender: str) -> Provenance:
    """The provenance of an agent's input message: from ``sender`` (an agent) or the
    user; tainted if it has :class:`Untrusted` fields (which join the ledger) or carries
    a string of an output built from untrusted content."""
    tainted = False
    if isinstance(value, BaseModel):
        for name in untrusted_fields(type(value)):
            for text in strings(value.model_dump(mode="json", include={name}).get(name)):
                note_untrusted(s, text, Provenance(origin=Origin.USER, source=name,
                                                   tainted=True), signal=True)
                tainted = True
    if not tainted and s.taint is not None:
        tainted = s.taint.derived(rendered)
    if sender:
        return from_agent(sender, tainted)
    return USER_TAINTED if tainted else USER


def tainted(s: SessionState, messages: list[Message]) -> bool:
    """Whether any of ``messages`` is untrusted (or built from untrusted content)."""
    return s.taint is not None and any(
        m.provenance is not None and m.provenance.tainted for m in messages)


__all__ = ["DEVELOPER", "HUMAN", "MODEL", "MODEL_TAINTED", "USER", "USER_TAINTED",
           "Origin", "Provenance", "Taint", "Untrusted", "count_injections", "from_agent",
           "from_tool",
           "input_provenance", "ledger", "normalise", "note_grounded", "note_untrusted", "strings",
           "tainted", "untrusted_fields"]
