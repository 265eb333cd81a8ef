"""A session's audit entries, derived from its journal records.

Every record a session journals (the outcome of a model call, a tool call, a handoff, a
state operation, a ``ctx.step``, a signal received) is one accountable step, and holds
what an entry needs: the step's key, kind, agent and target, its status (an error's
type), the fingerprint of what it was asked (:func:`~convoy.durability._executor.
fingerprint`, BLAKE2b-128 of the prompt's texts, of the arguments, of the payload) and
what it returned, as journaled. :func:`entry_of` makes the entry from the record alone
(hashes and references, never the values), so auditing a step costs no hook of its own
around it. The records of a run are queued when it ends and their entries made and
appended by the sealer (see :mod:`convoy.audit._interceptor`), and a resumed session,
whose replayed steps are not journaled again, appends nothing twice.

Which entry each record makes (``blake2b:`` the record's input fingerprint, ``sha256:``
the SHA-256 of its journaled result; *masked*: through the default PII redactor, see
below):

============  ====================================  ====================================
record        entry (kind, actor, target)           hashes, refs
============  ====================================  ====================================
model         ``model_call``, the agent, the model  ``prompt``, ``output``; ``decision``
                                                    (``answer`` or the tools it called, a
                                                    handoff's transfer tool included; a
                                                    name not its agent's: its hash),
                                                    ``tokens``
tool          ``tool_call``, the agent, the tool    ``args``, ``result``
  refused     ``policy_refusal`` (a scope, a        ``args``
              policy, a person's rejection; its
              status the reason, masked), or
              ``approval`` ``required``
handoff       ``handoff``, source, target agent     ``payload`` (what the target got)
state         ``state_write`` (``set``) or          ``input`` (expected version and
              ``state_read``, the agent,            value), ``result``
              ``OP namespace/key`` (each masked)
effect        ``effect``, -, the step's name        ``result``
              (masked)
wait          ``signal``, -, the signal's name      ``payload``
              (masked)
============  ====================================  ====================================

A failed step's status is its error's type (a refusal's reason); every entry has the
agent's configuration id (``refs.config``) when the step had one, and the session's trace
id (``refs.trace_id``) when tracing put one in its headers. A step that only started (the
``started`` record of a call with effects) has its entry when its outcome is journaled.

Names the application or its data chose (a state namespace and key, a step's or a
signal's name, a refusal's reason) may hold personal data (``customer:ann@example.org``,
``notify +44 20 7946 0321``), and the log is never erased: they are written as live spans
write them, through the default :class:`~convoy.observability.Redactor` (every kind,
its default regions and mask: ``customer:[EMAIL]``, ``notify [PHONE]``), in a data
subject's session too. A mask, not a keyed digest: it needs no key, so an entry stays a
function of its record alone (the same bytes whoever seals it, before or after an
erasure), the rest of the name stays readable, and it shows what a span shows; what the
step read or wrote is linked by its keyed hashes. The names of the definitions (agents,
tools, the model that answered) are kept as they are, as spans keep them (a name a model
made up is hashed, above); a model's answer, the commonest entry, has nothing to mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from hashlib import sha256
from itertools import repeat
from json.encoder import encode_basestring as _quote
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, cast

from pydantic_core import to_json

from convoy._errors import UserError
from convoy._text import json_object
from convoy.audit._event import EVENT_FORMAT, digest, encode_event, keyed
from convoy.definitions._agent import _valid_name, callable_names
from convoy.stores._protocol import StepRecord

if TYPE_CHECKING:
    from convoy.observability._redact import Redactor

#: Records whose target is a definition's name (an agent's, a tool's) or a model's, kept
#: as it is; every other record's target is a name the application chose, masked.
_DEFINED = frozenset({"model", "tool", "handoff"})
_KINDS = {"model": "model_call", "tool": "tool_call", "handoff": "handoff", "effect": "effect",
          "wait": "signal"}
_REFUSALS = frozenset({"ToolDenied", "PolicyDenied"})
#: A float's JSON text: ``repr``'s, for the floats between 1e-4 and 1e16 (a time's),
#: in a quarter of its time (``pydantic_core``'s shortest round-trip formatting; a time
#: outside that range takes the general path).
_number = to_json


def time_text(at: float) -> str:
    """``repr(at)``: the text of a record's time as an audit cursor holds it (for a float
    from 1e-4 to 1e16, every clock's, :data:`_number`'s: the same text, without the
    arbitrary-precision arithmetic of ``repr``'s shortest digits)."""
    return _number(at).decode() if type(at) is float and 1e-4 <= at < 1e16 else repr(at)


#: What an entry needs of a journal record, as a tuple: ``(key, kind, target, status,
#: result, input_hash, agent, input_tokens, output_tokens, at, config)`` (:func:`kept`).
#: Strings, numbers and ``None`` only, so the garbage collector stops tracking it at its
#: first collection: a run's records wait for their seal at no cost to the collector,
#: where the records themselves (objects it tracks) made it walk them again and again.
Kept = tuple[str, str, str, str, "str | None", "str | None", "str | None", int, int, float,
             "str | None"]


#: The :data:`Kept` of a record (one call in C, not eleven attribute reads in Python: the
#: audit's journal tap makes one on every step).
kept: Callable[[StepRecord], Kept] = attrgetter(
    "key", "kind", "target", "status", "result", "input_hash", "agent", "input_tokens",
    "output_tokens", "at", "config")


def _failure(result: str | None) -> tuple[str, str | None]:
    """``(error type, refusal reason)`` of a failed step's error record."""
    err = json_object(result)
    attrs = err.get("attrs")
    reason = attrs.get("reason") if isinstance(attrs, dict) else None
    return str(err.get("type") or "unknown"), None if reason is None else str(reason)


@lru_cache(maxsize=1)
def name_redactor() -> Redactor:
    """The redactor of the names an entry holds: live spans' default
    (:class:`~convoy.observability.Redactor` as made with no arguments), and nothing
    configurable, so every engine and every later seal writes the same entry for the same
    record. Needs the ``pii`` extra (phone numbers, cards, IBANs; ``convoy[audit]`` brings
    it): without it an engine would mask less than another, so the audit refuses to
    start."""
    from convoy.observability._redact import Redactor

    try:
        return Redactor()
    except UserError as e:
        raise UserError(f"the audit log masks personal data in the names its entries hold "
                        f"(state keys, step names): {e}") from None


def masked(name: str) -> str:
    """``name`` (a step's, a signal's, a refusal's reason) as an entry holds it: its
    personal data masked (:func:`name_redactor`)."""
    return name_redactor().redact(name)


def _state_target(target: str) -> str:
    """A state operation's ``OP NAMESPACE/KEY`` as an entry holds it: the namespace and
    the key masked one by one, as spans mask them (the whole of what follows ``OP`` when
    it does not say where the namespace ends: more than one ``/``), then the whole again:
    a value the ``/`` cuts in two (``keys customer:030/1234567``, whose namespace holds
    the slash; a number split between a namespace and its key) is found whole."""
    op, space, rest = target.partition(" ")
    if not space:
        return masked(target)
    if rest.count("/") > 1:
        return f"{op} {masked(rest)}"
    namespace, slash, key = rest.partition("/")
    return f"{op} {masked(masked(namespace) + slash + masked(key))}"


_CONFIG = '"config":'
_TARGET = ',"target":'
_V = ',"v":' + str(EVENT_FORMAT) + "}"


def _answer_tail(session_id: str, trace_id: str | None) -> str:
    """What follows a model answer's tokens in its entry, the same for every step of a
    session: its trace id, session id and status, up to its step key."""
    return ("" if trace_id is None else ',"trace_id":' + _quote(trace_id)) + \
        '},"session_id":' + _quote(session_id) + ',"status":"ok","step_key":'


def _model_answer(record: Kept, tail: str) -> bytes | None:
    """:func:`entry_of` of the commonest record, a model's answer, at its record's time,
    written in one formatting (``tail``: :func:`_answer_tail` of its session); every other
    record, and any field this cannot write as :func:`~convoy.audit._event.encode_event`
    would, returns ``None``: the general path. What an agent's answers from one model
    share (:func:`_answer_parts`) is written once."""
    key, kind, target, status, text, fp, agent, tokens_in, tokens_out, at, config = record
    if kind != "model" or status != "completed" or text is None or not fp or \
            type(at) is not float or not 1e-4 <= at < 1e16 or '"tool_calls":' in text or \
            not text.startswith('{"model":"') or type(tokens_in) is not int or \
            type(tokens_out) is not int:
        return None
    model = text[10:text.find('"', 10)]
    if "\\" in model:  # an escape: the general path reads it
        return None
    head, refs, end = _answer_parts(agent or target, config, model)
    try:  # (an f-string: one join of its parts, where ``%`` parses a format each time)
        return (f'{head}{_number(at).decode()},"hashes":{{"output":"sha256:'
                f'{sha256(text.encode()).hexdigest()}","prompt":{_quote("blake2b:" + fp)}'
                f'{refs}"tokens":"{tokens_in}+{tokens_out}"{tail}{_quote(key)}{end}').encode()
    except UnicodeEncodeError:
        return None


@lru_cache(maxsize=4096)  # (a few per agent; definitions made per request: bounded)
def _answer_parts(actor: str, config: str | None, model: str) -> tuple[str, str, str]:
    """What a model answer's entry holds before its time, between its hashes and its
    tokens, and after its step key: the same for every answer of one agent (of one
    configuration) from one model."""
    q = _quote
    return (f'{{"actor":{q(actor)},"at":',
            f'}},"kind":"model_call","refs":{{{_CONFIG + q(config) + "," if config else ""}'
            '"decision":"answer",',
            f'{_TARGET + q(model) if model else ""}{_V}')


def entry_of(record: StepRecord, session_id: str, at: float,
             trace_id: str | None = None, mac: bytes | None = None) -> bytes | None:
    """The encoded audit entry of ``record`` (see the module docstring), at ``at``;
    ``None`` for a step that only started. ``mac``: the session's data subject's hash key
    (its hashes are :func:`~convoy.audit._event.keyed`)."""
    k = kept(record)
    if k[9] != at:
        k = (*k[:9], at, k[10])
    if mac is None:
        body = _model_answer(k, _answer_tail(session_id, trace_id))
        if body is not None:
            return body
    return _entry(k, session_id, at, trace_id, mac)


def _entry(record: Kept, session_id: str, at: float, trace_id: str | None,
           mac: bytes | None) -> bytes | None:
    """:func:`entry_of`, field by field."""
    key, kind, record_target, record_status, result, fp, agent, tokens_in, tokens_out, _, \
        config = record
    if record_status == "started":
        return None
    target: str | None = record_target
    actor = agent
    hashes: dict[str, str] = {}
    refs: dict[str, str] = {}
    ok = record_status == "completed"
    status, reason = ("ok", None) if ok else _failure(result)
    if kind == "model":
        entry = "model_call"
        actor, target = agent or record_target, None
        if fp:
            hashes["prompt"] = fingerprint(fp, mac)
        if ok:
            hashes["output"] = digest(result or "", mac)
            response = json_object(result)
            model = response.get("model")
            target = model if isinstance(model, str) and model else None
            calls = response.get("tool_calls")
            names = [str(c.get("name")) for c in calls if isinstance(c, dict)] \
                if isinstance(calls, list) else []
            refs["decision"] = ",".join(_called(names, config, mac)) if names else "answer"
            refs["tokens"] = f"{tokens_in}+{tokens_out}"
    elif kind == "state":
        entry = "state_write" if record_target.startswith("set ") else "state_read"
        target = _state_target(record_target)
        if fp:
            hashes["input"] = fingerprint(fp, mac)
        if ok:
            hashes["result"] = digest(result or "", mac)
    else:
        entry = _KINDS.get(kind, kind)
        if kind not in _DEFINED:  # (a step's name, a signal's: the application's)
            target = masked(record_target)
        if kind == "tool":
            if fp:
                hashes["args"] = fingerprint(fp, mac)
            if ok:
                hashes["result"] = digest(result or "", mac)
            elif status == "ApprovalRequired":
                entry, status = "approval", "required"
            elif status in _REFUSALS:
                entry, status = "policy_refusal", masked(reason) if reason else status
        elif ok:
            hashes["payload" if kind in ("handoff", "wait") else "result"] = \
                digest(result or "", mac)
    if config:
        refs["config"] = config
    if trace_id is not None:
        refs["trace_id"] = trace_id
    return encode_event(entry, status, at, session_id, key, actor, target, hashes, refs)


def entries_of(records: Sequence[Kept], session_id: str, trace_id: str | None,
               mac: bytes | None, tail: str | None = None) -> list[bytes]:
    """The entries of a session's ``records`` (:func:`kept`), in order, each at its
    record's time (:func:`entry_of` of each; ``tail``: :func:`_answer_tail` of the session,
    if it is at hand). (Model answers, the commonest records, in one ``map``: no Python
    code per record but the entry's own.)"""
    if tail is None:
        tail = _answer_tail(session_id, trace_id)
    out: list[bytes | None] = list(map(_model_answer, records, repeat(tail))) \
        if mac is None else [None] * len(records)
    if None not in out:
        return cast("list[bytes]", out)
    bodies = []
    for r, fast in zip(records, out, strict=True):
        body = fast if fast is not None else _entry(r, session_id, r[9], trace_id, mac)
        if body is not None:  # (``None``: a step that only started)
            bodies.append(body)
    return bodies


def _called(names: list[str], config: str | None, mac: bytes | None) -> list[str]:
    """The names of the tools a model called, as its entry keeps them: those its agent's
    definition has (:func:`~convoy.definitions._agent.callable_names`) as they are, any
    other (made up by the model: it may be personal data) as its :func:`digest`. A
    definition this process did not make (a session sealed here that another process
    ran) tells no name from model output: each is a digest. A record of no definition (an
    earlier Convoy's) keeps the names written as tool names are."""
    if not config:
        return [n if _valid_name(n) else digest(n, mac) for n in names]
    known = callable_names(config) or frozenset()
    return [n if n in known else digest(n, mac) for n in names]


def fingerprint(fp: str, mac: bytes | None) -> str:
    """An input fingerprint as an entry keeps it (keyed in a data subject's session)."""
    return "blake2b:" + fp if mac is None else keyed(mac, "blake2b:" + fp)


class JournalEntries:
    """The journal tap of one run of one session: the records it journals, held until
    :meth:`take_records` (the run's end) and made into their entries (:func:`entry_of`,
    each at its record's time) by :meth:`entries`, in one pass. The audit interceptor hands
    the records to its sealer, which makes the entries of many runs at once as it seals
    them: a tight loop, with the code and data it needs warm, costs a fraction of the
    same work done a step at a time between the engine's own (and the records are not
    changed once written: a store that seals a subject's data writes a copy).

    The run's records are held as they are, and taken as :data:`Kept` tuples when it ends
    (one ``map`` in C, not a tuple a step): the collector stops tracking a tuple of
    strings and numbers at its first collection, so the records that wait for their seal
    cost it nothing. :attr:`last_at` is the time of the last record taken: every record
    of the session journaled after it is later (the executor stamps them so), which makes
    it the audit cursor."""

    __slots__ = ("_tail", "flush_every", "held", "last_at", "mac", "session_id", "trace_id")

    def __init__(self, session_id: str, trace_id: str | None, *, flush_every: int = 1024,
                 mac: bytes | None = None) -> None:
        self.session_id = session_id
        self.trace_id = trace_id
        self.mac = mac
        self.held: list[StepRecord] = []
        self.flush_every = flush_every
        self.last_at: float | None = None
        self._tail = _answer_tail(session_id, trace_id)

    def __call__(self, record: StepRecord) -> None:
        held = self.held
        held.append(record)
        if len(held) >= self.flush_every:
            self.full()  # a long run: what it holds goes with its next commit

    def recover(self, records: Iterable[StepRecord]) -> None:
        """Add ``records`` a run journaled without appending their entries (it was
        killed), in the order they were written."""
        for r in sorted(records, key=lambda r: r.at):
            self(r)

    def entries(self, records: Sequence[Kept]) -> list[bytes]:
        """The entries of ``records`` (of this tap's session), in order."""
        return entries_of(records, self.session_id, self.trace_id, self.mac, self._tail)

    def full(self) -> None:
        """Called when it holds ``flush_every`` records (a subclass hands them on)."""

    def take_records(self) -> list[Kept]:
        """The records held (but those of steps that only started: they have no entry),
        emptied."""
        held = self.held
        if not held:
            return []
        self.last_at = held[-1].at
        records = list(map(kept, held))
        held.clear()
        if "started" in map(_STATUS, records):
            records = [r for r in records if r[3] != "started"]
        return records

    def take(self) -> list[bytes]:
        """The entries of the records held, emptied."""
        return self.entries(self.take_records())


_STATUS = itemgetter(3)


__all__ = ["JournalEntries", "Kept", "entries_of", "entry_of", "kept", "masked", "name_redactor",
           "time_text"]
