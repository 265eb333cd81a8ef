"""The desk's typed contracts and agents.

``triage`` classifies a :class:`Ticket`; ``supervisor`` gets the :class:`CaseFile` and
delegates to one of three workers (``billing``, ``technical``, ``account``), each with its
CRM tools, then writes the :class:`Resolution`. The workflow returns a
:class:`TicketOutcome`: that resolution, or a :class:`Handover` to a person. Every agent runs on
:data:`~examples.support_desk.sim_script.SUPPORT_SIM` unless the engine overrides the model
(``Engine(model="openai:gpt-4o-mini")`` or ``--model`` on the demo).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import convoy
from examples.support_desk import crm
from examples.support_desk.sim_script import SUPPORT_SIM

Category = Literal["billing", "technical", "account"]
Urgency = Literal["low", "normal", "high"]
Action = Literal["refund", "explain_invoice", "bug_report", "status_info", "reset_password",
                 "update_email", "escalate"]

# -- contracts ---------------------------------------------------------------------------------


class Ticket(BaseModel):
    """A customer's ticket: only what the agents may see (ground truth is ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    customer_email: str
    subject: str
    body: str


class Triage(BaseModel):
    category: Category
    urgency: Urgency
    # The length caps reach a local model's JSON grammar (llama.cpp honours maxLength):
    # a small model otherwise rambles inside a string until max_tokens cuts it.
    summary: str = Field(max_length=200, description="One sentence: what the customer wants.")


class CaseFile(BaseModel):
    """What the supervisor gets: the ticket and its triage."""

    ticket: Ticket
    triage: Triage


class WorkerTask(BaseModel):
    """What a worker gets from the supervisor."""

    # Caps reach a local model's grammar for the delegation's arguments (see crm.Id).
    ticket_id: str = Field(max_length=40)
    customer_email: str = Field(max_length=120)
    subject: str = Field(max_length=200)
    body: str = Field(max_length=1000)
    urgency: Urgency = "normal"
    summary: str = Field(default="", max_length=300)


class WorkerOutcome(BaseModel):
    """A worker's result. ``action="reroute"`` hands the case back for another desk."""

    action: Action | Literal["reroute"]
    resolved: bool
    escalate: bool
    reply: str = Field(max_length=600, description="The message to send to the customer.")
    references: list[str] = Field(default_factory=list,
                                  description="Ids of refunds, bug reports, etc. created.")
    reroute_to: Category | None = None


class Resolution(BaseModel):
    """The supervisor's final answer for one ticket."""

    ticket_id: str
    category: Category
    action: Action
    resolved: bool
    escalated: bool
    reply: str = Field(max_length=600)


class Handover(BaseModel):
    """Why the agents handed a ticket to a person, and where it waits."""

    reason: str = Field(description="The error that ended the agents' work, in words.")
    error: str = Field(description="Its type: AgentTurnsExhausted, OutputValidationError, ...")
    agent: str | None = Field(default=None, description="The agent that gave up, if known.")
    reference: str = Field(description="The ticket's entry in the CRM's human queue.")


class TicketOutcome(BaseModel):
    """What the desk did with one ticket: the supervisor's :class:`Resolution`, or, when
    the agents gave up, an escalation with the :class:`Handover` (``category`` is triage's,
    ``None`` if triage itself gave up)."""

    ticket_id: str
    category: Category | None
    action: Action
    resolved: bool
    escalated: bool
    reply: str
    handover: Handover | None = None


# -- agents ----------------------------------------------------------------------------------

SETTINGS = convoy.ModelSettings(temperature=0.0, max_tokens=400)
"""Every answer here is short JSON; the cap keeps a rambling model from burning tokens."""
TRIAGE_SETTINGS = convoy.ModelSettings(temperature=0.0, max_tokens=150)
"""A triage is three short fields: a tighter cap stops a small model rambling to 400."""
WORKER_TURNS = 8
HANDOVER_REPLY = ("Thank you for your message. A member of our team will look into it and "
                  "get back to you shortly.")
"""The reply when the agents give up on a ticket and a person takes it over."""

_POLICY = (
    "Policy: refunds up to $500.00 are automatic; anything larger, any legal threat "
    "(lawyer, lawsuit, chargeback), data-protection request or hacked account must be "
    "escalated to a human (action 'escalate', escalate=true) without changing anything. "
    "Never invent ids: look them up with your tools. Reply to the customer politely in "
    "two or three sentences. If the ticket belongs to another desk, answer with "
    "action 'reroute' and reroute_to set to that desk."
)

triage = convoy.Agent(
    name="triage",
    instructions=(
        "You triage customer support tickets. Classify the ticket into exactly one category:"
        " 'billing' (charges, invoices, refunds), 'technical' (bugs, outages, product "
        "problems) or 'account' (login, passwords, email changes, account security, personal"
        " data). Set urgency 'high' for legal threats, outages, locked accounts; 'low' for "
        "plain questions; otherwise 'normal'. Summarise the request in one sentence."),
    input_type=Ticket,
    output_type=Triage,
    model=SUPPORT_SIM,
    model_settings=TRIAGE_SETTINGS,
)

billing = convoy.Agent(
    name="billing",
    instructions=(
        "You are the billing desk. Look up the customer by email, find the invoice (by id, "
        "or with list_invoices by amount and date), check it with get_invoice, then either "
        "explain it (action 'explain_invoice') or refund it with issue_refund (action "
        "'refund'). An invoice that was already refunded is explained, not refunded again. "
        + _POLICY),
    input_type=WorkerTask,
    output_type=WorkerOutcome,
    max_turns=WORKER_TURNS,
    tools=[crm.lookup_customer, crm.list_invoices, crm.get_invoice, crm.issue_refund],
    model=SUPPORT_SIM,
    model_settings=SETTINGS,
)

technical = convoy.Agent(
    name="technical",
    instructions=(
        "You are the technical desk. Look up the customer, identify the product (dashboard, "
        "api, mobile, reports, sync, notifications) and check its status. If it has an "
        "incident, or the customer only asks whether it is working, answer with the status "
        "(action 'status_info'); otherwise file a bug with open_bug_report (action "
        "'bug_report'). " + _POLICY),
    input_type=WorkerTask,
    output_type=WorkerOutcome,
    max_turns=WORKER_TURNS,
    tools=[crm.lookup_customer, crm.check_service_status, crm.open_bug_report],
    model=SUPPORT_SIM,
    model_settings=SETTINGS,
)

account = convoy.Agent(
    name="account",
    instructions=(
        "You are the account desk. Look up the customer, then send a password reset link "
        "(reset_password, action 'reset_password') or change the account email to the new "
        "address they give (update_email, action 'update_email'). " + _POLICY),
    input_type=WorkerTask,
    output_type=WorkerOutcome,
    max_turns=WORKER_TURNS,
    tools=[crm.lookup_customer, crm.reset_password, crm.update_email],
    model=SUPPORT_SIM,
    model_settings=SETTINGS,
)

WORKERS = (billing, technical, account)

supervisor = convoy.Agent(
    name="supervisor",
    instructions=(
        "You run a support desk. Delegate the ticket to the worker for its triage category "
        "(billing, technical or account), passing the ticket's fields, urgency and summary. "
        "If the worker answers action 'reroute', delegate once to the desk it names. Then "
        "answer with the Resolution: the ticket id, the category of the desk that handled "
        "it, the worker's action, resolved, escalated and the reply for the customer. Do "
        "not change the worker's facts."),
    input_type=CaseFile,
    output_type=Resolution,
    workers=WORKERS,
    model=SUPPORT_SIM,
    model_settings=SETTINGS,
    criticality="high",  # it writes the answer the customer gets: route it to the strong model
)
