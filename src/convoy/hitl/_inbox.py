"""The inbox: the human tasks of one tenant (``engine.tenant("acme").inbox``) or of every
tenant (``engine.inbox``, the operator's view), and the decisions people make on them.

Tasks are shared state (:mod:`convoy.hitl._task`): a decision is a compare-and-set of the
task against the version read, so a task is decided once (a second reviewer is told who
came first), the key's history is the audit, and the write wakes the waiting session in
the same transaction. Sessions that ended ``escalated`` (an unknown outcome after a
crash, ``Escalated`` raised) are listed as escalation tasks too (id
``<session>:escalated``): approving runs the escalated step again, editing records it as
done with the given result, rejecting fails the session (the existing
:data:`~convoy.ESCALATION` answers), and each decision is kept in the inbox's history.

Through a tenant's inbox, another tenant's task is exactly an unknown id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from convoy._command import command
from convoy._errors import UserError
from convoy._text import a_word, quoted
from convoy.engine._escalation import answer_escalation
from convoy.hitl._task import (
    INBOX,
    Action,
    Comment,
    Decision,
    HumanTask,
    TaskKind,
    TaskStatus,
    answer_checker,
    load_task,
    session_of,
)
from convoy.interceptors._base import DecisionInput
from convoy.privacy._seal import is_sealed
from convoy.state._access import watch_signal
from convoy.stores._protocol import SessionFilter, SessionRow, StateEntry, StateWrite
from convoy.stores._rows import LeftOut, readable

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

ESCALATED = "escalated"  # the step part of the id of a session-level escalation
_SESSION_ACTION: dict[str, str] = {"approve": "retry", "edit": "complete", "reject": "fail"}


def _unknown_task(task_id: str, tenant: str | None, store_url: str) -> UserError:
    where = f" of tenant {tenant!r}" if tenant is not None else ""
    listed = command("inbox list", db=store_url, tenant=tenant, all_tenants=tenant is None)
    return UserError(f"no human task {quoted(task_id)}{where}; {listed} shows them")


def _check_by(by: object) -> str:
    if not isinstance(by, str) or not by.strip():
        raise UserError("say who decides: by='<name>' (it is recorded with the decision)")
    return by


def _escalated_task(row: SessionRow) -> HumanTask:
    """An ``escalated`` session, as the task that answers it."""
    err = row.error_record or {}
    return HumanTask(
        id=f"{row.id}:{ESCALATED}", tenant=row.tenant, session_id=row.id, kind="escalation",
        prompt=f"Session {row.id!r} of workflow {row.workflow!r} escalated: "
               f"{err.get('message', 'it needs a person')}. Approve to run its step "
               "again, edit to record the step as done with a result, or reject to fail "
               "the session.",
        reason=str(err.get("type") or "Escalated"),
        history={"workflow": row.workflow, "step": err.get("key"), "error": err},
        queue="escalations", created_at=row.finished or row.created)


class Inbox:
    """Human tasks and the decisions on them: ``engine.inbox`` (every tenant) or
    ``engine.tenant(name).inbox`` (one tenant). Every method opens the engine if needed.

    Decisions name who made them (``by``): they are journaled with the task and shown in
    its history. ``by`` is what the caller says: authenticate people before they reach
    this API.
    """

    __slots__ = ("__engine", "__tenant")

    def __init__(self, engine: Engine, tenant: str | None) -> None:
        self.__engine = engine
        self.__tenant = tenant

    def __repr__(self) -> str:
        return f"Inbox(tenant={self.__tenant!r})"

    # -- reading -------------------------------------------------------------------------

    async def tasks(self, *, status: TaskStatus | Literal["all"] = "open",
                    queue: str | None = None, kind: TaskKind | None = None,
                    assignee: str | None = None,
                    sealed: list[str] | None = None,
                    left_out: list[LeftOut] | None = None) -> list[HumanTask]:
        """Tasks, oldest first: ``open`` ones by default (of sessions still waiting, and
        escalated sessions), or of one ``status``, or ``"all"``; optionally of one queue,
        kind, or assigned to ``assignee`` (tasks with no assignees are anyone's).

        A task that stays sealed (it holds a data subject's data, and the engine has no
        master key, or the subject was erased) can be neither read nor filtered: it is
        left out, and its id added to ``sealed`` if given (for ``open``: only if its
        session still waits). A task or an escalated session damaged in the store (edited
        by hand) raises :class:`~convoy.JournalError`, or, with ``left_out``, is left out
        and added to it."""
        engine = self.__engine
        await engine.open()
        store = engine.store
        before = 0 if left_out is None else len(left_out)
        tasks: dict[str, HumanTask] = {}
        locked: dict[str, str] = {}  # sealed task id -> its session
        for tenant in await self._tenants(open_only=status == "open", left_out=left_out):
            entries = await store.state_list(tenant, INBOX, left_out=left_out)
            for e in entries:
                if is_sealed(e.value):
                    locked[e.key] = e.session_id or session_of(e.key)
            for task in readable((e for e in entries if not is_sealed(e.value)),
                                 lambda e: load_task(e.value, e.version, e.key), left_out):
                tasks[task.id] = task
            escalated = await store.list_sessions(SessionFilter(
                status="escalated", tenant=tenant, limit=1_000_000), left_out=left_out)
            for esc in escalated:
                t = _escalated_task(esc)
                tasks[t.id] = t.model_copy(update={"version": tasks[t.id].version}) \
                    if t.id in tasks else t
        if status == "open":  # (with "all", a task whose session ended is listed too)
            waiting = [t for t in tasks.values()
                       if t.is_open and not t.id.endswith(f":{ESCALATED}")]
            rows = await store.get_sessions(list({t.session_id for t in waiting}
                                                 | set(locked.values())), left_out=left_out)
            for t in waiting:
                found = rows.get(t.session_id)
                if found is None or not found.unfinished:
                    tasks.pop(t.id)  # its session ended: nobody waits for it any more
            # (its status is sealed: the one its session waits for)
            locked = {k: v for k, v in locked.items()
                      if (row := rows.get(v)) is not None and row.unfinished
                      and watch_signal(INBOX, k) in row.wait_names}
        if sealed is not None:
            sealed.extend(sorted(locked))
        if left_out is not None:  # a damaged session is met more than once: named once
            left_out[before:] = dict.fromkeys(left_out[before:])
        out = [t for t in tasks.values()
               if status in ("all", t.status)
               and (queue is None or t.queue == queue) and (kind is None or t.kind == kind)
               and (assignee is None or not t.assignees or assignee in t.assignees)]
        return sorted(out, key=lambda t: (t.created_at, t.id))

    async def _tenants(self, *, open_only: bool,
                       left_out: list[LeftOut] | None = None) -> list[str]:
        """The tenants with tasks to list (a damaged session row, which names no tenant
        that can be trusted, is added to ``left_out``)."""
        if self.__tenant is not None:
            return [self.__tenant]
        store = self.__engine.store
        rows = await store.unfinished(left_out=left_out) if open_only else \
            await store.list_sessions(SessionFilter(limit=10_000_000), left_out=left_out)
        rows += await store.list_sessions(SessionFilter(status="escalated", limit=1_000_000),
                                          left_out=left_out)
        return sorted({r.tenant for r in rows})

    async def get(self, task_id: str) -> HumanTask:
        """One task, as it stands now.

        Raises:
            UserError: no such task (in this tenant).
        """
        task, _ = await self._find(task_id)
        return task

    async def decidable(self, task_id: str, *, by: str) -> HumanTask:
        """The task, if ``by`` may decide it now: what a form checks before it asks a
        person anything (the decision checks it again as it is recorded).

        Raises:
            UserError: as a decision would: no such task, it is decided already, its
                session waits for it no more, or it is assigned to others.
        """
        task, row = await self._find(task_id)
        self._check_open(task, row, _check_by(by))
        return task

    async def history(self, task_id: str) -> list[HumanTask]:
        """Every version of a task, oldest first: who created, commented on, decided and
        used it, and when (the audit of a decision)."""
        task, _ = await self._find(task_id)
        entries = await self.__engine.store.state_history(task.tenant, INBOX, task.id)
        return [load_task(e.value, e.version) for e in entries]

    async def _find(self, task_id: str) -> tuple[HumanTask, SessionRow]:
        engine = self.__engine
        await engine.open()
        if not isinstance(task_id, str):
            raise UserError(f"a task id is a string, got {task_id!r}")
        sid = session_of(task_id)
        row = await engine.store.get_session(sid, tenant=self.__tenant)
        if row is None:
            raise _unknown_task(task_id, self.__tenant, engine.store.url)
        entry = await engine.store.state_get(row.tenant, INBOX, task_id)
        if task_id == f"{sid}:{ESCALATED}":
            if row.status == "escalated":
                return _escalated_task(row).model_copy(
                    update={"version": entry.version if entry else 0}), row
            if entry is None:
                raise _unknown_task(task_id, self.__tenant, engine.store.url)
        elif entry is None:
            raise _unknown_task(task_id, self.__tenant, engine.store.url)
        assert entry is not None
        if is_sealed(entry.value) and engine.keys is not None:
            raise UserError(f"task {quoted(task_id)} holds the data of a data subject who was "
                            f"erased: it stays sealed for good; end its session with "
                            + command("cancel", operands=[sid], db=engine.store.url,
                                      tenant=row.tenant))
        return load_task(entry.value, entry.version), row

    # -- deciding ------------------------------------------------------------------------

    async def answer(self, task_id: str, value: Any, *, by: str,
                     comment: str | None = None) -> HumanTask:
        """Answer a question (``ctx.ask_human``) with ``value``, validated against its
        answer type (the Pydantic type when this process has it loaded, else its JSON
        schema). The waiting session wakes. Answering an approval or an escalation is
        :meth:`edit`."""
        return await self._decide(task_id, "answer", value, by, comment)

    async def approve(self, task_id: str, *, by: str, comment: str | None = None
                      ) -> HumanTask:
        """Approve: the tool call runs (an approval is then valid for its
        ``expires_after`` and used once), or the escalated agent runs again, or its
        low-confidence answer is kept (see :class:`~convoy.Escalation`)."""
        return await self._decide(task_id, "approve", None, by, comment)

    async def edit(self, task_id: str, value: Any, *, by: str, comment: str | None = None
                   ) -> HumanTask:
        """Approve with changes: a tool call runs with the arguments ``value``; an
        escalated agent's output is ``value``. Validated against the task's schema."""
        return await self._decide(task_id, "edit", value, by, comment)

    async def reject(self, task_id: str, *, by: str, comment: str | None = None
                     ) -> HumanTask:
        """Reject: the tool call is refused (the model is told, with ``comment``); an
        escalated run fails with its error (see :class:`~convoy.Escalation`)."""
        return await self._decide(task_id, "reject", None, by, comment)

    async def comment(self, task_id: str, text: str, *, by: str) -> HumanTask:
        """Add a comment to an open task; it decides nothing."""
        if not isinstance(text, str) or not text.strip():
            raise UserError("a comment needs some text")
        task, row = await self._find(task_id)
        self._check_open(task, row, _check_by(by))
        if task.id.endswith(f":{ESCALATED}") and row.status == "escalated":
            raise UserError(f"task {task.id!r} is an escalated session: decide it (approve, "
                            "edit or reject) with a comment")
        now = self.__engine.clock()
        return await self._write(task, task.model_copy(update={
            "comments": (*task.comments, Comment(by=by, text=text, at=now))}))

    async def _decide(self, task_id: str, action: Action, value: Any, by: str,
                      comment: str | None) -> HumanTask:
        task, row = await self._find(task_id)
        self._check_open(task, row, _check_by(by))
        if action not in task.actions:
            raise UserError(f"task {task.id!r} is {a_word(task.kind)}: "
                            f"{' / '.join(task.actions)} it, not {action}")
        if action in ("answer", "edit"):
            value = answer_checker(task)(value)
        engine = self.__engine
        now = engine.clock()
        decision = Decision(action=action, value=value, by=by, comment=comment, at=now)
        escalated = task.id.endswith(f":{ESCALATED}") and row.status == "escalated"

        async def write(made: DecisionInput) -> HumanTask:
            audit = tuple(made.audit)  # entries that ride the task's write
            if escalated:
                return await self._answer_session(task, row, decision, audit)
            update: dict[str, Any] = {"status": "answered", "decision": decision,
                                      "error": None}
            if task.kind == "approval" and action in ("approve", "edit"):
                update["expires_at"] = now + (task.expires_after or 3600.0)
            return await self._write(task, task.model_copy(update=update), audit)

        # The chain sees the decision as it is made (audit, tracing), around its write.
        step = (row.error_record or {}).get("key") if escalated else task.id.rpartition(":")[2]
        return await engine.runtime.decision_chain.call(DecisionInput(
            tenant=task.tenant, session_id=task.session_id,
            step_key=None if step is None else str(step), task_id=task.id, kind=task.kind,
            action=action, by=by, decision=decision.model_dump(mode="json"), at=now,
            headers=row.header_map, proceed=write, subject=row.subject))

    def _check_open(self, task: HumanTask, row: SessionRow, by: str) -> None:
        if not task.is_open:
            d = task.decision
            who = f" by {d.by!r}" if d is not None else ""
            shown = command("inbox show", operands=[task.id], db=self.__engine.store.url,
                            tenant=task.tenant)
            raise UserError(f"task {task.id!r} is already {task.standing}{who}; nothing was "
                            f"changed ({shown} has its history)")
        if row.status != "escalated" and not row.unfinished:
            raise UserError(f"task {task.id!r} belongs to session {row.id!r}, which is "
                            f"{row.status}: nobody waits for this answer any more")
        if task.assignees and by not in task.assignees:
            raise UserError(f"task {task.id!r} is assigned to {', '.join(task.assignees)}, "
                            f"not {by!r}")

    async def _answer_session(self, task: HumanTask, row: SessionRow,
                              decision: Decision, audit: Sequence[bytes] = ()) -> HumanTask:
        reason = decision.comment or f"rejected by {decision.by}"
        await answer_escalation(self.__engine.store, row, {
            "action": _SESSION_ACTION[decision.action], "result": decision.value,
            "reason": reason})
        done = task.model_copy(update={"status": "answered", "decision": decision})
        # Written on the session's behalf: its error (in the task) is the session's data,
        # sealed as the session's are, and erased with it.
        written = await self._write(task, done, audit, writer=row.id)
        return written

    async def _write(self, task: HumanTask, new: HumanTask,
                     audit: Sequence[bytes] = (), writer: str | None = None) -> HumanTask:
        engine = self.__engine
        res = await engine.store.state_put(StateWrite(
            tenant=task.tenant, namespace=INBOX, key=task.id, value=new.model_dump_json(),
            expected_version=task.version, session_id=writer, audit=audit))
        if not res.written or res.entry is None:
            raise _changed(task, res.entry, engine.store.url)
        engine._poke()
        return load_task(res.entry.value, res.entry.version)


def _changed(task: HumanTask, entry: StateEntry | None, store_url: str) -> UserError:
    now = load_task(entry.value, entry.version) if entry is not None else None
    d = now.decision if now is not None else None
    by = f" (by {d.by!r})" if d is not None else ""
    shown = command("inbox show", operands=[task.id], db=store_url, tenant=task.tenant)
    return UserError(f"task {task.id!r} changed while you decided{by}; nothing was "
                     f"written: look at it again ({shown})")


__all__ = ["ESCALATED", "Inbox"]
