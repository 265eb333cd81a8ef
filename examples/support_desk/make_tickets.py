"""Generate ``tickets.jsonl``: synthetic support tickets with ground truth, from a fixed seed.

    python -m examples.support_desk.make_tickets [--out PATH]

Every ticket references real CRM rows (:mod:`.seed_data`): the sender's email exists, the
invoice ids and amounts are that customer's. The ground truth (``category``,
``expected_action``) follows the desk's policy: refunds up to 500.00 are automatic, larger
ones and anything with a legal threat or a data-protection request go to a human; a problem
with a product that has a known incident is answered with its status, otherwise a bug is
filed. Customers whose email gets changed appear in no other ticket, and no invoice is the
subject of two refund requests, so the expected outcome does not depend on the order in
which tickets run.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from examples.support_desk.crm import REFUND_AUTO_LIMIT
from examples.support_desk.seed_data import CustomerRow, InvoiceRow, SeedData, build

SEED = 7
OUT = Path(__file__).with_name("tickets.jsonl")
MONTHS = {1: "January", 2: "February", 3: "March", 4: "April", 5: "May", 6: "June"}
GREETINGS = ("Hi,", "Hello,", "Hello team,", "Good morning,", "Hey there,", "Dear support,", "")
SIGNOFFS = ("Thanks, {first}", "Regards,\n{name}", "Cheers", "Thank you!", "{first}", "")


@dataclass(frozen=True, slots=True)
class Draft:
    """A ticket before it gets an id and its greeting / sign-off."""

    customer: CustomerRow
    subject: str
    body: str
    category: str
    expected_action: str


class Generator:
    """Draws customers and invoices without reuse where reuse would make truth ambiguous."""

    def __init__(self, data: SeedData, rng: random.Random) -> None:
        self.data = data
        self.rng = rng
        customers = list(data.customers)
        rng.shuffle(customers)
        # Customers whose email changes appear in no other ticket.
        self.movers = customers[:18]
        self.regulars = customers[18:]
        self.used_invoices: set[str] = set()
        self.refund_locked: set[str] = set()  # customers with an "amount only" refund ticket

    def customer(self) -> CustomerRow:
        return self.rng.choice(self.regulars)

    def invoice(self, pick: Callable[[InvoiceRow], bool]) -> tuple[CustomerRow, InvoiceRow]:
        """A fresh (never refund-requested) invoice of a regular customer matching ``pick``."""
        pool = [i for c in self.regulars if c.id not in self.refund_locked
                for i in self.data.invoices_of(c.id)
                if i.id not in self.used_invoices and pick(i)]
        inv = self.rng.choice(pool)
        self.used_invoices.add(inv.id)
        return self.owner(inv), inv

    def owner(self, inv: InvoiceRow) -> CustomerRow:
        return next(c for c in self.data.customers if c.id == inv.customer_id)

    def any_invoice(self) -> tuple[CustomerRow, InvoiceRow]:
        c = self.customer()
        return c, self.rng.choice(self.data.invoices_of(c.id))


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _month(inv: InvoiceRow) -> str:
    return MONTHS[int(inv.issued[5:7])]


# -- billing ---------------------------------------------------------------------------------


def refund_by_id(g: Generator) -> Draft:
    c, inv = g.invoice(lambda i: not i.refunded and i.amount <= REFUND_AUTO_LIMIT)
    subject, body = g.rng.choice([
        ("Refund request for {inv}",
         "I was charged {amt} on {inv} but I cancelled before the renewal date. Please refund "
         "it."),
        ("Charged twice this month",
         "Looks like I was double charged - invoice {inv} ({amt}) is a duplicate of my "
         "earlier payment. Can I get my money back?"),
        ("Please reverse {inv}",
         "We downgraded our workspace and were still billed {amt} on {inv}. I'd like a refund, "
         "please."),
        ("Refund",
         "Please refund invoice {inv}. We stopped using the product in {month} and forgot to "
         "cancel."),
        ("Money back for {inv}?",
         "The renewal on {inv} went through by accident. Could you refund the {amt}?"),
    ])
    fmt = {"inv": inv.id, "amt": _money(inv.amount), "month": _month(inv)}
    return Draft(c, subject.format(**fmt), body.format(**fmt), "billing", "refund")


def refund_by_amount(g: Generator) -> Draft:
    """No invoice id: the agent must find the newest unrefunded invoice with that amount."""
    while True:
        c = g.customer()
        if c.id in g.refund_locked:
            continue
        open_ = [i for i in g.data.invoices_of(c.id) if not i.refunded]
        if not open_ or any(i.id in g.used_invoices for i in g.data.invoices_of(c.id)):
            continue
        inv = max(open_, key=lambda i: i.issued)
        if inv.amount <= REFUND_AUTO_LIMIT:
            break
    g.refund_locked.add(c.id)
    g.used_invoices.update(i.id for i in g.data.invoices_of(c.id))
    subject, body = g.rng.choice([
        ("Refund for {month}",
         "I got charged {amt} in {month} even though we no longer use the service. Please "
         "refund that charge."),
        ("Unexpected charge",
         "There's a {amt} charge from you on my card from {month}. I cancelled, so I want a "
         "refund."),
        ("money back pls",
         "charged {amt} again?? i cancelled. refund please"),
    ])
    fmt = {"amt": _money(inv.amount), "month": _month(inv)}
    return Draft(c, subject.format(**fmt), body.format(**fmt), "billing", "refund")


def partial_refund(g: Generator) -> Draft:
    c, inv = g.invoice(lambda i: not i.refunded and len(i.lines) > 1
                       and i.amount <= REFUND_AUTO_LIMIT)
    line, price = inv.lines[1]
    body = g.rng.choice([
        "Could you refund {part} of {inv}? The '{line}' add-on was added by mistake.",
        "We never asked for '{line}' - please refund the {part} for it on invoice {inv}.",
    ]).format(part=_money(price), inv=inv.id, line=line)
    return Draft(c, f"Wrong add-on on {inv.id}", body, "billing", "refund")


def explain_invoice(g: Generator) -> Draft:
    c, inv = g.any_invoice()
    line = inv.lines[-1][0]
    subject, body = g.rng.choice([
        ("Question about {inv}",
         "What is the {amt} charge on {inv}? I don't recognise the '{line}' line."),
        ("Invoice breakdown",
         "Can you explain what I'm paying for in {inv}? The total seems higher than I "
         "expected."),
        ("What is {inv}?",
         "My finance team is asking what invoice {inv} covers. Can you break it down?"),
        ("Billing question",
         "Could you tell me what the charge on invoice {inv} was for? Just want to understand "
         "it, no problem otherwise."),
    ])
    fmt = {"inv": inv.id, "amt": _money(inv.amount), "line": line}
    return Draft(c, subject.format(**fmt), body.format(**fmt), "billing", "explain_invoice")


def explain_already_refunded(g: Generator) -> Draft:
    """A refund request for an invoice that was already refunded: explain, don't refund."""
    c, inv = g.invoice(lambda i: i.refunded)
    body = g.rng.choice([
        "Please refund invoice {inv}, I was charged {amt} by mistake.",
        "I still see {inv} for {amt} on my account. I want that money back.",
    ]).format(inv=inv.id, amt=_money(inv.amount))
    return Draft(c, f"Refund {inv.id}", body, "billing", "explain_invoice")


def refund_above_limit(g: Generator) -> Draft:
    c, inv = g.invoice(lambda i: not i.refunded and i.amount > REFUND_AUTO_LIMIT)
    body = g.rng.choice([
        "We were charged {amt} on {inv} for the Enterprise plan we cancelled last month. "
        "Please refund the full amount.",
        "Invoice {inv} ({amt}) should never have been issued - our contract ended. Refund it "
        "please.",
    ]).format(inv=inv.id, amt=_money(inv.amount))
    return Draft(c, f"Refund of {inv.id}", body, "billing", "escalate")


def billing_legal(g: Generator) -> Draft:
    c, inv = g.any_invoice()
    g.used_invoices.add(inv.id)
    subject, body = g.rng.choice([
        ("Final warning",
         "You charged me {amt} again on {inv} after I cancelled. If this isn't refunded by "
         "Friday my lawyer will take legal action."),
        ("Chargeback",
         "I am filing a chargeback with my bank for {inv} ({amt}) unless you refund it "
         "today."),
        ("Formal complaint",
         "This is a formal complaint about invoice {inv}. My attorney has advised me to "
         "dispute the {amt} charge; expect to hear from them."),
    ])
    fmt = {"inv": inv.id, "amt": _money(inv.amount)}
    return Draft(c, subject.format(**fmt), body.format(**fmt), "billing", "escalate")


# -- technical -------------------------------------------------------------------------------

_BUGS = {
    "dashboard": [("Dashboard charts blank", "The dashboard charts stay blank since the last "
                   "update; the widgets just spin forever."),
                  ("Dashboard bug", "Filtering the dashboard by date throws an error and the "
                   "page freezes.")],
    "mobile": [("Mobile app crashes", "The mobile app crashes every time I open the settings "
                "screen (iOS 17)."),
               ("App freezing", "Android app freezes when I upload a photo. Reinstalling did "
                "not help.")],
    "reports": [("Reports wrong totals", "The totals in the weekly reports don't add up - "
                 "the sum column is off by a few rows."),
                ("Export broken", "Exporting a report to CSV produces an empty file.")],
    "notifications": [("No notifications", "Notifications stopped arriving on my phone two "
                       "days ago even though they're enabled."),
                      ("Duplicate notifications", "I get every notification three times.")],
}
_INCIDENTS = {
    "api": [("API errors", "Our integration gets HTTP 502 from the API since this morning. "
             "Nothing changed on our side."),
            ("API timeouts", "Requests to the API keep failing with bad gateway errors, is "
             "something wrong?")],
    "sync": [("Sync not working", "My files stopped syncing between my laptop and phone. "
              "Is sync down?"),
             ("Sync stuck", "Sync has been stuck at 'waiting' for hours for our whole team.")],
}


def bug_report(g: Generator) -> Draft:
    product = g.rng.choice(sorted(_BUGS))
    subject, body = g.rng.choice(_BUGS[product])
    return Draft(g.customer(), subject, body, "technical", "bug_report")


def incident_status(g: Generator) -> Draft:
    product = g.rng.choice(sorted(_INCIDENTS))
    subject, body = g.rng.choice(_INCIDENTS[product])
    return Draft(g.customer(), subject, body, "technical", "status_info")


def status_question(g: Generator) -> Draft:
    product = g.rng.choice(("dashboard", "reports", "mobile"))
    name = {"dashboard": "the dashboard", "reports": "reports", "mobile": "the mobile app"}[product]
    body = g.rng.choice([
        f"Quick check: is {name} having an outage right now? It feels slow today.",
        f"Is there a known problem with {name}? Is it down for everyone or just me?",
    ])
    return Draft(g.customer(), f"Status of {product}?", body, "technical", "status_info")


def technical_legal(g: Generator) -> Draft:
    body = g.rng.choice([
        "Your sync deleted two years of client files. My attorney is in copy and we will sue "
        "for damages.",
        "The API outage cost us a full day of sales. Our legal team is preparing a claim.",
    ])
    return Draft(g.customer(), "Data loss", body, "technical", "escalate")


# -- account ---------------------------------------------------------------------------------


def reset_password(g: Generator) -> Draft:
    subject, body = g.rng.choice([
        ("Can't log in", "I forgot my password and the login page keeps rejecting me. Please "
         "help."),
        ("Locked out", "My account is locked after too many attempts. Can you reset my "
         "password?"),
        ("Password reset", "I requested a password reset twice but no email came. Can you "
         "send a new link?"),
        ("login problem", "cant sign in, says wrong password. pls reset"),
    ])
    return Draft(g.customer(), subject, body, "account", "reset_password")


def update_email(g: Generator) -> Draft:
    c = g.movers.pop()
    first, last = c.name.lower().split()
    new = f"{first}.{last}.{g.rng.randint(10, 99)}@newmail.example"
    subject, body = g.rng.choice([
        ("Change my email", "Please change the email address on my account to {new}. I'm "
         "leaving my current job."),
        ("Update contact address", "From now on please use {new} as the email for my account "
         "instead of this one."),
        ("New email address", "Could you update my login email to {new}? Thanks."),
    ])
    return Draft(c, subject, body.format(new=new), "account", "update_email")


def account_escalation(g: Generator) -> Draft:
    subject, body = g.rng.choice([
        ("Delete my data", "Under the GDPR I request the deletion of all personal data you "
         "hold about me."),
        ("Account hacked", "Someone hacked my account and changed my settings. I did not do "
         "this. What are you going to do about it?"),
    ])
    return Draft(g.customer(), subject, body, "account", "escalate")


# -- ambiguous: keywords of one category, intent of another ---------------------------------


def ambiguous(g: Generator) -> Draft:
    kind = g.rng.randrange(4)
    if kind == 0:
        return Draft(g.customer(), "Can't get my invoice",
                     "I can't log in to download my invoice for March - I think I forgot my "
                     "password.", "account", "reset_password")
    if kind == 1:
        c, inv = g.invoice(lambda i: not i.refunded and i.amount <= REFUND_AUTO_LIMIT)
        return Draft(c, "App crashed and charged me",
                     f"The mobile app crashed during checkout and I ended up paying twice. "
                     f"Please refund the duplicate charge {inv.id}.", "billing", "refund")
    if kind == 2:
        return Draft(g.customer(), "Billing page broken",
                     "The billing page in the dashboard shows an error when I open it, so I "
                     "can't see my invoices.", "technical", "bug_report")
    return Draft(g.customer(), "Emails not arriving",
                 "Email notifications about new comments stopped arriving, although my "
                 "account email is correct.", "technical", "bug_report")


KINDS: list[tuple[Callable[[Generator], Draft], int]] = [
    (refund_by_id, 26), (refund_by_amount, 8), (partial_refund, 6),
    (explain_invoice, 26), (explain_already_refunded, 6),
    (refund_above_limit, 6), (billing_legal, 8),
    (bug_report, 34), (incident_status, 18), (status_question, 8), (technical_legal, 5),
    (reset_password, 30), (update_email, 18), (account_escalation, 7),
    (ambiguous, 16),
]


def generate(seed: int = SEED) -> list[dict[str, str]]:
    """All tickets, shuffled, with ids ``T-0001``... (deterministic for ``seed``)."""
    rng = random.Random(seed)
    g = Generator(build(), rng)
    drafts = [make(g) for make, n in KINDS for _ in range(n)]
    rng.shuffle(drafts)
    tickets = []
    for n, d in enumerate(drafts, 1):
        first = d.customer.name.split()[0]
        greet = rng.choice(GREETINGS)
        sign = rng.choice(SIGNOFFS).format(first=first, name=d.customer.name)
        body = "\n\n".join(p for p in (greet, d.body, sign) if p)
        tickets.append({"id": f"T-{n:04d}", "customer_email": d.customer.email,
                        "subject": d.subject, "body": body, "category": d.category,
                        "expected_action": d.expected_action})
    return tickets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    tickets = generate(args.seed)
    args.out.write_text("".join(json.dumps(t) + "\n" for t in tickets))
    print(f"wrote {len(tickets)} tickets to {args.out}")


if __name__ == "__main__":
    main()
