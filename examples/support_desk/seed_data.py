"""The CRM's contents, generated deterministically from a fixed seed.

Pure data, no database: :mod:`.crm` loads it into SQLite and ``make_tickets.py`` writes
tickets that reference it, so both always agree on emails, invoice ids and amounts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

SEED = 20240601
N_CUSTOMERS = 60

PLANS: dict[str, float] = {"starter": 29.0, "pro": 99.0, "business": 299.0, "enterprise": 1200.0}
ADDONS: tuple[tuple[str, float], ...] = (
    ("Extra seats (5)", 45.0),
    ("Priority support", 60.0),
    ("Data export pack", 19.0),
    ("SMS credits", 12.5),
)
PRODUCTS: tuple[str, ...] = ("dashboard", "api", "mobile", "reports", "sync", "notifications")

_FIRST = ("Ada", "Ben", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
          "Kira", "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq",
          "Uma", "Victor", "Wen", "Xavier", "Yara", "Zoe")
_LAST = ("Adler", "Brook", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
         "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi",
         "Silva", "Tanaka", "Weber")
_DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example")


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: str
    name: str
    email: str
    plan: str


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    id: str
    customer_id: str
    issued: str
    amount: float
    description: str
    lines: tuple[tuple[str, float], ...]
    refunded: bool


@dataclass(frozen=True, slots=True)
class ServiceRow:
    product: str
    status: str  # "operational" | "degraded" | "outage"
    note: str


@dataclass(frozen=True, slots=True)
class SeedData:
    customers: tuple[CustomerRow, ...]
    invoices: tuple[InvoiceRow, ...]
    services: tuple[ServiceRow, ...]

    def invoices_of(self, customer_id: str) -> list[InvoiceRow]:
        return [i for i in self.invoices if i.customer_id == customer_id]


SERVICES: tuple[ServiceRow, ...] = (
    ServiceRow("dashboard", "operational", "All systems normal."),
    ServiceRow("api", "degraded", "Elevated error rates (HTTP 502) on the REST API since 09:10 "
               "UTC; engineers are rolling out a fix."),
    ServiceRow("mobile", "operational", "All systems normal."),
    ServiceRow("reports", "operational", "All systems normal."),
    ServiceRow("sync", "outage", "Sync is down for all EU workspaces; a fix is in progress, "
               "ETA two hours. No data is lost."),
    ServiceRow("notifications", "operational", "All systems normal."),
)


@cache
def build(seed: int = SEED) -> SeedData:
    """The CRM's rows for ``seed``: same seed, same rows, on every machine."""
    rng = random.Random(seed)
    customers: list[CustomerRow] = []
    invoices: list[InvoiceRow] = []
    emails: set[str] = set()
    next_invoice = 1001
    for n in range(N_CUSTOMERS):
        first, last = _FIRST[n % len(_FIRST)], rng.choice(_LAST)
        email = f"{first}.{last}@{rng.choice(_DOMAINS)}".lower()
        if email in emails:
            email = email.replace("@", f"{n}@")
        emails.add(email)
        plan = rng.choices(list(PLANS), weights=(35, 35, 20, 10))[0]
        cid = f"C{n + 1:03d}"
        customers.append(CustomerRow(cid, f"{first} {last}", email, plan))
        months = rng.randint(2, 4)
        for m in range(7 - months, 7):
            lines: list[tuple[str, float]] = [(f"{plan.title()} plan, monthly", PLANS[plan])]
            if rng.random() < 0.3:
                lines.append(rng.choice(ADDONS))
            amount = round(sum(p for _, p in lines), 2)
            invoices.append(InvoiceRow(
                id=f"INV-{next_invoice}", customer_id=cid,
                issued=f"2024-{m:02d}-{1 + n % 28:02d}", amount=amount,
                description=f"{plan.title()} subscription, 2024-{m:02d}",
                lines=tuple(lines), refunded=rng.random() < 0.08))
            next_invoice += 1
    return SeedData(tuple(customers), tuple(invoices), SERVICES)
