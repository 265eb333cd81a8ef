"""A seeded, deterministic stand-in for an LLM, so the example runs with zero setup.

:func:`script` answers every :class:`convoy.ModelRequest` the way a plausible model would,
reading only what a real model sees: the conversation (the ticket JSON, earlier tool calls
and their results) and the agent's name. It decides each turn from the transcript so far:

* ``triage`` classifies by keywords and now and then picks the wrong category;
* ``supervisor`` delegates to the worker triage named, forwards a reroute suggestion once,
  and turns the worker's outcome into the final ``Resolution``;
* ``billing`` / ``technical`` / ``account`` look the customer up, call the CRM tools their
  case needs, then answer with a ``WorkerOutcome``.

It also makes the mistakes real models make, which Convoy repairs: a final answer missing a
field (re-prompted with the validation errors) and a tool call with a malformed argument
(sent back as a tool error). Every "random" choice is a hash of the session id, agent and
a salt: no global random state, so runs are reproducible whatever the concurrency.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import convoy
from examples.support_desk import sim_nlu as nlu
from examples.support_desk.crm import REFUND_AUTO_LIMIT

Reply = dict[str, Any]
SEED = 7
WORKERS = ("billing", "technical", "account")

TRIAGE_ERROR_RATE = 0.15
"""How often triage picks the runner-up category."""
MISREAD_RATE = 0.05
"""How often a worker misreads what the customer wants."""
INVALID_OUTPUT_RATE = 0.04
"""How often a final answer leaves out a required field (Convoy re-prompts)."""
BAD_ARGUMENT_RATE = 0.08
"""How often a refund is requested with the amount as text like "$99.00"."""
REROUTE_RATE = 0.65
"""How often a worker handed another desk's ticket notices and suggests a reroute."""


def chance(req: convoy.ModelRequest, salt: str, *, per_step: bool = False) -> float:
    """A deterministic number in [0, 1) for this session and agent (and step)."""
    where = f"{SEED}|{req.session_id}|{req.agent}|{salt}"
    if per_step:
        where += f"|{req.step_key}|{req.attempt}"
    digest = hashlib.blake2b(where.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# -- reading the conversation ------------------------------------------------------------


@dataclass
class Transcript:
    """What an agent has seen so far: its task and the results of its tool calls."""

    task: dict[str, Any]
    results: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    repairing: bool = False

    @classmethod
    def of(cls, req: convoy.ModelRequest) -> Transcript:
        user = [m for m in req.messages if m.role == "user"]
        task = _json(user[0].content if user else None)
        pending: dict[str, tuple[str, dict[str, Any]]] = {}
        results: list[tuple[str, dict[str, Any], Any]] = []
        for m in req.messages:
            if m.role == "assistant":
                for c in m.tool_calls or ():
                    pending[c.id] = (c.name, _json(c.arguments))
            elif m.role == "tool" and m.tool_call_id in pending:
                name, args = pending.pop(m.tool_call_id)
                results.append((name, args, _json(m.content)))
        last = req.messages[-1] if req.messages else None
        repairing = bool(last and last.role == "user" and len(user) > 1)
        return cls(task if isinstance(task, dict) else {}, results, repairing)

    def result(self, tool: str) -> Any:
        """The latest successful result of ``tool``, or ``None`` if it was not called yet."""
        for name, _, res in reversed(self.results):
            if name == tool and not (isinstance(res, dict) and "error" in res):
                return res
        return None

    def attempts(self, tool: str) -> int:
        return sum(1 for name, _, _ in self.results if name == tool)


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError:
        return text


def _call(name: str, **arguments: Any) -> Reply:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


# -- triage and supervisor -----------------------------------------------------------------


def triage(req: convoy.ModelRequest, t: Transcript) -> Reply:
    text = f"{t.task.get('subject', '')}\n{t.task.get('body', '')}".lower()
    order = nlu.ranked(text)
    category = order[1] if chance(req, "misclassify") < TRIAGE_ERROR_RATE else order[0]
    return {"output": {"category": category, "urgency": nlu.urgency(text),
                       "summary": nlu.summary(str(t.task.get("body", "")))}}


def supervisor(req: convoy.ModelRequest, t: Transcript) -> Reply:
    ticket, tri = t.task.get("ticket", {}), t.task.get("triage", {})
    tried = [(name, res) for name, _, res in t.results if name in WORKERS]
    task = {"ticket_id": ticket.get("id"), "customer_email": ticket.get("customer_email"),
            "subject": ticket.get("subject"), "body": ticket.get("body"),
            "urgency": tri.get("urgency", "normal"), "summary": tri.get("summary", "")}
    if not tried:
        return {"delegate": tri.get("category", "billing"), "payload": task}
    worker, outcome = tried[-1]
    outcome = outcome if isinstance(outcome, dict) else {}
    target = outcome.get("reroute_to")
    if outcome.get("action") == "reroute" and target in WORKERS and \
            target not in {name for name, _ in tried}:
        return {"delegate": target, "payload": task}
    action = outcome.get("action", "escalate")
    escalated = bool(outcome.get("escalate")) or action in ("escalate", "reroute")
    reply = outcome.get("reply") or "We have passed your request to a specialist."
    if action == "reroute":
        action, reply = "escalate", "We have passed your request to a specialist who will " \
                                    "reply within one business day."
    return {"output": {"ticket_id": ticket.get("id"), "category": worker, "action": action,
                       "resolved": bool(outcome.get("resolved")) and not escalated,
                       "escalated": escalated, "reply": reply}}


# -- workers -------------------------------------------------------------------------------


def outcome(action: str, reply: str, *, resolved: bool = True, escalate: bool = False,
            references: list[str] | None = None, reroute_to: str | None = None) -> Reply:
    return {"output": {"action": action, "resolved": resolved, "escalate": escalate,
                       "reply": reply, "references": references or [],
                       "reroute_to": reroute_to}}


def escalation(reply: str) -> Reply:
    return outcome("escalate", reply, resolved=False, escalate=True)


def _triage_check(req: convoy.ModelRequest, desk: str, text: str) -> Reply | None:
    """A worker handed another desk's ticket usually suggests a reroute, and otherwise
    gives up and escalates it (a wasted human touch, like a real model's)."""
    s = nlu.scores(text)
    best = max((c for c in nlu.CATEGORIES if c != desk), key=lambda c: s[c])
    if s[best] <= s[desk] and s[desk] > 0:
        return None
    if chance(req, "notice") < REROUTE_RATE:
        return outcome("reroute", f"This looks like a {best} question.", resolved=False,
                       reroute_to=best)
    if s[desk] == 0:
        return escalation("This is outside what I can do here; I've forwarded your ticket to "
                          "a colleague who will reply soon.")
    return None


def billing(req: convoy.ModelRequest, t: Transcript) -> Reply:
    text = f"{t.task.get('subject', '')}\n{t.task.get('body', '')}"
    low = text.lower()
    if nlu.needs_human(low):
        return escalation("I'm sorry for the trouble. A billing lead will review your case "
                          "personally and reply within one business day.")
    reroute = _triage_check(req, "billing", low)
    if reroute:
        return reroute
    refund = nlu.wants_refund(low) != (chance(req, "misread") < MISREAD_RATE)
    found = t.result("lookup_customer")
    if found is None:
        return _call("lookup_customer", email=t.task.get("customer_email", ""))
    if not found.get("found"):
        return escalation("I couldn't find an account for this email address; a colleague "
                          "will follow up.")
    customer = found["customer"]
    mentioned = nlu.amount(text)
    inv_id = nlu.invoice_id(text)
    if inv_id is None:
        listed = t.result("list_invoices")
        if listed is None:
            return _call("list_invoices", customer_id=customer["id"])
        matches = [i for i in listed if (not refund or i["status"] == "paid")
                   and (mentioned is None or abs(i["amount"] - mentioned) < 0.005)]
        if not matches:
            return escalation("I couldn't match that charge to one of your invoices; a "
                              "billing specialist will look into it.")
        inv_id = matches[0]["id"]
    looked = t.result("get_invoice")
    if looked is None:
        return _call("get_invoice", invoice_id=inv_id)
    invoice = looked.get("invoice")
    if not looked.get("found") or invoice["customer_id"] != customer["id"]:
        return escalation(f"I couldn't find {inv_id} on your account; a billing specialist "
                          "will follow up.")
    if not refund or invoice["status"] == "refunded":
        return _explain(invoice)
    amount = mentioned if mentioned and mentioned < invoice["amount"] else invoice["amount"]
    if amount > REFUND_AUTO_LIMIT:
        return escalation(f"A refund of ${amount:,.2f} needs a manager's approval; I've "
                          "forwarded your request and you'll hear back within a day.")
    done = t.result("issue_refund")
    if done is None:
        bad = t.attempts("issue_refund") == 0 and chance(req, "badarg") < BAD_ARGUMENT_RATE
        return _call("issue_refund", invoice_id=inv_id,
                     amount=f"${amount:,.2f}" if bad else amount,
                     reason=nlu.summary(str(t.task.get("body", "")), 80))
    if done.get("ok"):
        return outcome("refund", f"I've refunded ${done['amount']:,.2f} on {inv_id}. It will "
                       "appear on your statement in 5-10 business days.",
                       references=[f"refund:{done['refund_id']}"])
    if done.get("refusal") == "already_refunded":
        return _explain(invoice)
    return escalation(f"I couldn't refund this automatically ({done.get('message')}); a "
                      "billing specialist will follow up.")


def _explain(invoice: dict[str, Any]) -> Reply:
    lines = "; ".join(f"{ln['description']}: ${ln['amount']:,.2f}" for ln in invoice["lines"])
    reply = (f"Invoice {invoice['id']} ({invoice['issued']}) totals ${invoice['amount']:,.2f}:"
             f" {lines}.")
    if invoice["status"] == "refunded":
        reply += (f" It was already refunded (${invoice['refunded_amount']:,.2f}), so no "
                  "further action is needed.")
    return outcome("explain_invoice", reply, references=[invoice["id"]])


def technical(req: convoy.ModelRequest, t: Transcript) -> Reply:
    text = f"{t.task.get('subject', '')}\n{t.task.get('body', '')}"
    low = text.lower()
    if nlu.needs_human(low):
        return escalation("I'm very sorry. Our incident manager will contact you directly "
                          "today.")
    reroute = _triage_check(req, "technical", low)
    if reroute:
        return reroute
    product = nlu.product(low)
    if product is None:
        return escalation("Could you tell us which product is affected? An engineer will "
                          "follow up.")
    found = t.result("lookup_customer")
    if found is None:
        return _call("lookup_customer", email=t.task.get("customer_email", ""))
    if not found.get("found"):
        return escalation("I couldn't find your account; an engineer will follow up.")
    status = t.result("check_service_status")
    if status is None:
        return _call("check_service_status", product=product)
    incident = status.get("status") not in ("operational", "unknown")
    if incident and chance(req, "misread") >= MISREAD_RATE:
        return outcome("status_info", f"This is a known incident with {product}: "
                       f"{status.get('note')} We'll update you when it's resolved.")
    if nlu.asks_status(low):
        return outcome("status_info", f"{product.title()} is operational right now: "
                       f"{status.get('note')} If you still see problems, reply with details.")
    filed = t.result("open_bug_report")
    if filed is None:
        return _call("open_bug_report", customer_id=found["customer"]["id"], product=product,
                     summary=str(t.task.get("summary") or t.task.get("subject", "")))
    if not filed.get("ok"):
        return escalation(f"I couldn't file this automatically ({filed.get('message')}); an "
                          "engineer will follow up.")
    return outcome("bug_report", f"Thanks for the report. I've filed {filed['report_id']} "
                   f"with the {product} team; we'll email you when it's fixed.",
                   references=[str(filed["report_id"])])


def account(req: convoy.ModelRequest, t: Transcript) -> Reply:
    email = str(t.task.get("customer_email", ""))
    text = f"{t.task.get('subject', '')}\n{t.task.get('body', '')}"
    low = text.lower()
    if nlu.needs_human(low):
        return escalation("For your security, our trust & safety team will handle this "
                          "request and contact you within 24 hours.")
    new_email = nlu.other_email(text, email)
    if nlu.wants_password_reset(low):
        intent = "reset"
    elif new_email and nlu.wants_email_change(low):
        intent = "email"
    else:
        reroute = _triage_check(req, "account", low)
        if reroute:
            return reroute
        return escalation("I'm not sure what you need changed on your account; a colleague "
                          "will follow up.")
    found = t.result("lookup_customer")
    if found is None:
        return _call("lookup_customer", email=email)
    if not found.get("found"):
        return escalation("I couldn't find an account for this email address; a colleague "
                          "will follow up.")
    cid = found["customer"]["id"]
    if intent == "reset":
        done = t.result("reset_password")
        if done is None:
            return _call("reset_password", customer_id=cid)
        if done.get("ok"):
            return outcome("reset_password", f"{done['message']} (reference "
                           f"{done['reference']}).", references=[str(done["reference"])])
        return escalation(f"I couldn't reset your password ({done.get('message')}).")
    done = t.result("update_email")
    if done is None:
        return _call("update_email", customer_id=cid, new_email=new_email)
    if done.get("ok"):
        return outcome("update_email", f"Done: {done['message']}",
                       references=[str(done["reference"])])
    return escalation(f"I couldn't change your email ({done.get('message')}).")


AGENTS: dict[str, Callable[[convoy.ModelRequest, Transcript], Reply]] = {
    "triage": triage, "supervisor": supervisor, "billing": billing, "technical": technical,
    "account": account,
}


def script(req: convoy.ModelRequest) -> Reply:
    """The SimModel script: the reply of agent ``req.agent`` to its conversation so far."""
    behave = AGENTS.get(req.agent)
    if behave is None:
        return {"text": f"[{req.agent}] I don't know how to do that."}
    t = Transcript.of(req)
    reply = behave(req, t)
    out = reply.get("output")
    if isinstance(out, dict) and "reply" in out and not t.repairing and \
            chance(req, "invalid", per_step=True) < INVALID_OUTPUT_RATE:
        return {"output": {k: v for k, v in out.items() if k != "reply"}}
    return reply


SUPPORT_SIM = convoy.SimModel(script, seed=SEED, name="sim:support",
                              latency=convoy.Latency(kind="lognormal", value=0.02, sigma=0.5))
"""The default model of every support-desk agent."""

# The two tiers the demo routes between: the same simulated behaviour at two price points
# (a gpt-4o-mini-like and a gpt-4o-like list price), so the savings are what routing and
# caching are worth, not a difference in the simulated answers.
MINI_SIM = convoy.SimModel(script, seed=SEED, name="sim:support-mini",
                           latency=convoy.Latency(kind="lognormal", value=0.015, sigma=0.5))
LARGE_SIM = convoy.SimModel(script, seed=SEED, name="sim:support-large",
                            latency=convoy.Latency(kind="lognormal", value=0.04, sigma=0.5))
PRICES = {"sim:support": convoy.Price(input_per_mtok=0.15, output_per_mtok=0.60),
          "sim:support-mini": convoy.Price(input_per_mtok=0.15, output_per_mtok=0.60),
          "sim:support-large": convoy.Price(input_per_mtok=2.50, output_per_mtok=10.00)}
