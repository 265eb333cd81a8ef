"""A multi-agent support desk for the observability tests: triage hands the ticket over to
billing, which calls a tool, delegates to a worker and writes shared state. Personal
values (an e-mail, a phone number, a card, an IBAN, an IP address) are planted in the
input, the tool's output and the model's output, so tests can look for them everywhere
telemetry goes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import convoy

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
IP = "203.0.113.77"
PLANTED = (EMAIL, PHONE, CARD, IBAN, IP)
# The same values as they may appear once encoded (JSON escapes nothing here, but the
# compact forms must not leak either).
PLANTED_FORMS = (*PLANTED, "4111111111111111", "DE89370400440532013000", "442079460958",
                 "jane.doe")


class Ticket(BaseModel):
    text: str


class Resolution(BaseModel):
    action: str
    note: str


class Lookup(BaseModel):
    plan: str


@convoy.tool
def find_customer(ctx: convoy.ToolContext[Any], query: str) -> str:
    """Find the customer a ticket is about."""
    return f"customer {EMAIL}, card {CARD}, last login from {IP}"


def script(*, fail_billing_first: int = 0) -> dict[str, Any]:
    return {
        "triage": {"handoff": "billing",
                   "payload": {"text": f"charged twice; reach me on {PHONE} or {EMAIL}"}},
        "billing": [
            {"tool_calls": [{"name": "find_customer", "arguments": {"query": EMAIL}}]},
            {"tool_calls": [{"name": "plans", "arguments": {"text": f"plan of {EMAIL}"}}]},
            {"output": {"action": "refund", "note": f"refund to {IBAN} for {EMAIL}"}},
        ],
        "plans": {"output": {"plan": f"gold ({PHONE})"}},
    }


def agents(model: convoy.Model) -> convoy.Agent[Any, Any]:
    plans = convoy.Agent(name="plans", input_type=Ticket, output_type=Lookup, model=model)
    billing = convoy.Agent(name="billing", input_type=Ticket, output_type=Resolution,
                           tools=[find_customer], workers=[plans], model=model)
    return convoy.Agent(name="triage", input_type=Ticket, output_type=Resolution,
                        handoffs=[billing], model=model)


def desk_workflow(triage: convoy.Agent[Any, Any], name: str = "obs.desk"
                  ) -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name)
    async def desk(ctx: convoy.Context, ticket: Ticket) -> Resolution:
        customer = ctx.state(f"customer:{EMAIL}")
        await customer.update("tickets", lambda n: n + 1, default=0)
        out: Resolution = await ctx.run(triage, ticket)
        return out

    return desk


TICKET = {"text": f"I am {EMAIL}, card {CARD}, IBAN {IBAN}, phone {PHONE}, ip {IP}"}


def down_workflow(name: str) -> Any:
    """One agent whose model always answers 503 (retryable)."""
    sim = convoy.SimModel({"*": {"error": {"message": "down", "status_code": 503}}})
    agent = convoy.Agent(name="solo", model=sim)

    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    return wf
