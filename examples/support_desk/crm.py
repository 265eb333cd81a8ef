"""A small bundled CRM in SQLite, and the tools the support agents use on it.

The database lives at ``$CONVOY_CRM_DB`` (default ``.convoy/support_crm.db`` relative to the
working directory) and is created and seeded from :mod:`.seed_data` on first use.

Every call opens its own short-lived connection (tools run in worker threads). Writes run
in ``BEGIN IMMEDIATE`` transactions and are keyed by Convoy's idempotency key in
``applied_requests``: a replayed call returns the stored result and changes nothing, so a
resumed session never refunds twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

import convoy
from examples.support_desk import seed_data

DEFAULT_PATH = ".convoy/support_crm.db"
ENV_VAR = "CONVOY_CRM_DB"
REFUND_AUTO_LIMIT = 500.0
"""Refunds above this need a human's approval: the tool refuses them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers(
  id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, plan TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invoices(
  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
  issued TEXT NOT NULL, amount REAL NOT NULL, description TEXT NOT NULL, lines TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds(
  id INTEGER PRIMARY KEY AUTOINCREMENT, invoice_id TEXT NOT NULL REFERENCES invoices(id),
  amount REAL NOT NULL, reason TEXT NOT NULL, idempotency_key TEXT,
  created TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS services(product TEXT PRIMARY KEY, status TEXT NOT NULL,
  note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bug_reports(
  id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL, product TEXT NOT NULL,
  summary TEXT NOT NULL, idempotency_key TEXT, created TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS account_events(
  id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
  detail TEXT NOT NULL, idempotency_key TEXT,
  created TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS human_queue(
  id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id TEXT NOT NULL, category TEXT,
  reason TEXT NOT NULL, transcript TEXT NOT NULL, reference TEXT NOT NULL,
  idempotency_key TEXT, created TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS applied_requests(idempotency_key TEXT PRIMARY KEY,
  result TEXT NOT NULL);
"""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# -- tool results --------------------------------------------------------------------------


class Customer(BaseModel):
    id: str
    name: str
    email: str
    plan: str


class CustomerLookup(BaseModel):
    found: bool
    customer: Customer | None = None


class InvoiceLine(BaseModel):
    description: str
    amount: float


class InvoiceSummary(BaseModel):
    id: str
    issued: str
    amount: float
    status: Literal["paid", "refunded"]


class Invoice(InvoiceSummary):
    customer_id: str
    description: str
    refunded_amount: float
    lines: list[InvoiceLine]


class InvoiceLookup(BaseModel):
    found: bool
    invoice: Invoice | None = None


class ServiceStatus(BaseModel):
    product: str
    known: bool
    status: Literal["operational", "degraded", "outage", "unknown"]
    note: str


RefundRefusal = Literal["invoice_not_found", "invalid_amount", "exceeds_invoice",
                        "already_refunded", "above_auto_limit"]


class RefundResult(BaseModel):
    ok: bool
    invoice_id: str
    amount: float
    refund_id: int | None = None
    refusal: RefundRefusal | None = None
    message: str


class AccountChange(BaseModel):
    ok: bool
    customer_id: str
    reference: str | None = None
    refusal: Literal["customer_not_found", "invalid_email", "email_in_use"] | None = None
    message: str


class BugReport(BaseModel):
    ok: bool
    report_id: str | None = None
    product: str
    message: str


class QueuedTicket(BaseModel):
    """A ticket the agents gave up on, waiting in the human queue."""

    reference: str
    ticket_id: str
    category: str | None
    reason: str
    transcript: list[dict[str, Any]]


M = TypeVar("M", bound=BaseModel)

# -- the database ----------------------------------------------------------------------------


class CRM:
    """The CRM database at ``path``; created and seeded deterministically if missing."""

    _init_lock = threading.Lock()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with CRM._init_lock:
            self._create()

    @classmethod
    def reset(cls, path: str | Path) -> CRM:
        """Delete the database at ``path`` (and its WAL files) and create a fresh one."""
        p = Path(path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{p}{suffix}").unlink(missing_ok=True)
        _CACHE.pop(str(p.resolve()), None)
        return cls(p)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection, closed on exit."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: writers queue, readers go on)."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key='seed'").fetchone():
                return
            data = seed_data.build()
            conn.executemany("INSERT INTO customers VALUES(?,?,?,?)",
                             [(c.id, c.name, c.email, c.plan) for c in data.customers])
            conn.executemany("INSERT INTO invoices VALUES(?,?,?,?,?,?)", [
                (i.id, i.customer_id, i.issued, i.amount, i.description, json.dumps(i.lines))
                for i in data.invoices])
            conn.executemany(
                "INSERT INTO refunds(invoice_id, amount, reason, created) VALUES(?,?,?,?)",
                [(i.id, i.amount, "goodwill credit", f"{i.issued} 12:00:00")
                 for i in data.invoices if i.refunded])
            conn.executemany("INSERT INTO services VALUES(?,?,?)",
                             [(s.product, s.status, s.note) for s in data.services])
            conn.execute("INSERT INTO meta VALUES('seed', ?)", (str(seed_data.SEED),))

    def _once(self, key: str | None, model: type[M],
              apply: Callable[[sqlite3.Connection], M]) -> M:
        """Apply a write at most once per idempotency ``key``; replays get the stored result."""
        with self.transaction() as conn:
            if key:
                row = conn.execute("SELECT result FROM applied_requests WHERE idempotency_key=?",
                                   (key,)).fetchone()
                if row:
                    return model.model_validate_json(row[0])
            result = apply(conn)
            if key:
                conn.execute("INSERT INTO applied_requests VALUES(?,?)",
                             (key, result.model_dump_json()))
            return result

    # -- reads -----------------------------------------------------------------------------

    def customer_by_email(self, email: str) -> Customer | None:
        with self.connect() as conn:
            row = conn.execute("SELECT id, name, email, plan FROM customers WHERE email=?",
                               (email.strip().lower(),)).fetchone()
        return Customer(id=row[0], name=row[1], email=row[2], plan=row[3]) if row else None

    def invoice(self, invoice_id: str) -> Invoice | None:
        with self.connect() as conn:
            return _invoice(conn, invoice_id.strip().upper())

    def invoices_of(self, customer_id: str) -> list[InvoiceSummary]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT i.id, i.issued, i.amount, COUNT(r.id) FROM invoices i "
                "LEFT JOIN refunds r ON r.invoice_id = i.id WHERE i.customer_id=? "
                "GROUP BY i.id ORDER BY i.issued DESC", (customer_id,)).fetchall()
        return [InvoiceSummary(id=r[0], issued=r[1], amount=r[2],
                               status="refunded" if r[3] else "paid") for r in rows]

    def service(self, product: str) -> ServiceStatus:
        name = product.strip().lower()
        with self.connect() as conn:
            row = conn.execute("SELECT status, note FROM services WHERE product=?",
                               (name,)).fetchone()
        if row is None:
            return ServiceStatus(product=name, known=False, status="unknown",
                                 note=f"No product named {product!r}; known products: "
                                      f"{', '.join(seed_data.PRODUCTS)}.")
        return ServiceStatus(product=name, known=True, status=row[0], note=row[1])

    def refunds_for(self, invoice_id: str) -> list[tuple[int, float, str | None]]:
        """``(refund id, amount, idempotency key)`` of every refund on an invoice."""
        with self.connect() as conn:
            return conn.execute("SELECT id, amount, idempotency_key FROM refunds "
                                "WHERE invoice_id=? ORDER BY id", (invoice_id,)).fetchall()

    def refunds_by_request(self) -> dict[str, list[str]]:
        """Invoice ids refunded by each idempotency key (seeded refunds have none)."""
        out: dict[str, list[str]] = {}
        with self.connect() as conn:
            for key, invoice_id in conn.execute(
                    "SELECT idempotency_key, invoice_id FROM refunds "
                    "WHERE idempotency_key IS NOT NULL ORDER BY id"):
                out.setdefault(key, []).append(invoice_id)
        return out

    def refunded_by_session(self, session_id: str) -> float:
        """The total of the refunds a Convoy session issued (its idempotency keys are
        ``"<session id>:<step key>"``)."""
        prefix = f"{session_id}:"
        with self.connect() as conn:
            row = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE "
                               "substr(idempotency_key, 1, ?) = ?",
                               (len(prefix), prefix)).fetchone()
        return round(float(row[0]), 2)
    def writes_by_session(self) -> dict[str, set[str]]:
        """The write actions each session applied (``refund``, ``bug_report``,
        ``reset_password``, ``update_email``), from the idempotency keys
        (``"<session id>:<step key>"``) of the rows they wrote."""
        out: dict[str, set[str]] = {}
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT idempotency_key, 'refund' FROM refunds UNION ALL "
                "SELECT idempotency_key, 'bug_report' FROM bug_reports UNION ALL "
                "SELECT idempotency_key, CASE kind WHEN 'password_reset' THEN 'reset_password'"
                " ELSE 'update_email' END FROM account_events").fetchall()
        for key, action in rows:
            if key:
                out.setdefault(key.rsplit(":", 1)[0], set()).add(action)
        return out

    def human_queue(self) -> list[QueuedTicket]:
        """The tickets handed to a person, oldest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT reference, ticket_id, category, reason, transcript "
                                "FROM human_queue ORDER BY id").fetchall()
        return [QueuedTicket(reference=r[0], ticket_id=r[1], category=r[2], reason=r[3],
                             transcript=json.loads(r[4])) for r in rows]

    def changes(self) -> dict[str, int]:
        """What the desk changed: refunds issued, bug reports filed, account changes,
        tickets handed to a person."""
        with self.connect() as conn:
            def n(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])

            return {
                "refunds issued": n("SELECT COUNT(*) FROM refunds "
                                    "WHERE idempotency_key IS NOT NULL"),
                "bug reports filed": n("SELECT COUNT(*) FROM bug_reports"),
                "password resets": n("SELECT COUNT(*) FROM account_events "
                                     "WHERE kind='password_reset'"),
                "email changes": n("SELECT COUNT(*) FROM account_events "
                                   "WHERE kind='email_change'"),
                "tickets handed to a person": n("SELECT COUNT(*) FROM human_queue"),
            }

    # -- writes ----------------------------------------------------------------------------

    def issue_refund(self, invoice_id: str, amount: float, reason: str, *,
                     key: str | None) -> RefundResult:
        inv_id = invoice_id.strip().upper()

        def apply(conn: sqlite3.Connection) -> RefundResult:
            def refuse(why: RefundRefusal, message: str) -> RefundResult:
                return RefundResult(ok=False, invoice_id=inv_id, amount=amount, refusal=why,
                                    message=message)

            inv = _invoice(conn, inv_id)
            if inv is None:
                return refuse("invoice_not_found", f"There is no invoice {inv_id}.")
            if amount <= 0:
                return refuse("invalid_amount", "A refund amount must be positive.")
            if inv.refunded_amount > 0:
                return refuse("already_refunded", f"{inv_id} was already refunded "
                              f"({inv.refunded_amount:.2f}); it cannot be refunded again.")
            if amount > inv.amount + 1e-9:
                return refuse("exceeds_invoice", f"{amount:.2f} is more than the invoice "
                              f"total of {inv.amount:.2f}.")
            if amount > REFUND_AUTO_LIMIT:
                return refuse("above_auto_limit", f"Refunds above {REFUND_AUTO_LIMIT:.2f} "
                              "need a human's approval.")
            cur = conn.execute("INSERT INTO refunds(invoice_id, amount, reason, idempotency_key)"
                               " VALUES(?,?,?,?)", (inv_id, amount, reason, key))
            return RefundResult(ok=True, invoice_id=inv_id, amount=amount,
                                refund_id=cur.lastrowid,
                                message=f"Refunded {amount:.2f} on {inv_id}.")

        return self._once(key, RefundResult, apply)

    def reset_password(self, customer_id: str, *, key: str | None) -> AccountChange:
        def apply(conn: sqlite3.Connection) -> AccountChange:
            if not _exists(conn, customer_id):
                return AccountChange(ok=False, customer_id=customer_id,
                                     refusal="customer_not_found",
                                     message=f"No customer {customer_id}.")
            cur = conn.execute("INSERT INTO account_events(customer_id, kind, detail, "
                               "idempotency_key) VALUES(?,?,?,?)",
                               (customer_id, "password_reset", "reset link sent", key))
            return AccountChange(ok=True, customer_id=customer_id,
                                 reference=_reference("PR", key, cur.lastrowid),
                                 message="A password reset link was sent to the customer's "
                                         "email address; it expires in 24 hours.")

        return self._once(key, AccountChange, apply)

    def update_email(self, customer_id: str, new_email: str, *,
                     key: str | None) -> AccountChange:
        email = new_email.strip().lower()

        def apply(conn: sqlite3.Connection) -> AccountChange:
            def refuse(why: Literal["customer_not_found", "invalid_email", "email_in_use"],
                       message: str) -> AccountChange:
                return AccountChange(ok=False, customer_id=customer_id, refusal=why,
                                     message=message)

            if not _exists(conn, customer_id):
                return refuse("customer_not_found", f"No customer {customer_id}.")
            if not _EMAIL.match(email):
                return refuse("invalid_email", f"{new_email!r} is not a valid email address.")
            if conn.execute("SELECT 1 FROM customers WHERE email=?", (email,)).fetchone():
                return refuse("email_in_use", f"{email} already belongs to an account.")
            conn.execute("UPDATE customers SET email=? WHERE id=?", (email, customer_id))
            cur = conn.execute("INSERT INTO account_events(customer_id, kind, detail, "
                               "idempotency_key) VALUES(?,?,?,?)",
                               (customer_id, "email_change", email, key))
            return AccountChange(ok=True, customer_id=customer_id,
                                 reference=_reference("EC", key, cur.lastrowid),
                                 message=f"The account email is now {email}.")

        return self._once(key, AccountChange, apply)

    def open_bug_report(self, customer_id: str, product: str, summary: str, *,
                        key: str | None) -> BugReport:
        name = product.strip().lower()

        def apply(conn: sqlite3.Connection) -> BugReport:
            if name not in seed_data.PRODUCTS:
                return BugReport(ok=False, product=name, message=f"Unknown product {product!r};"
                                 f" known products: {', '.join(seed_data.PRODUCTS)}.")
            cur = conn.execute("INSERT INTO bug_reports(customer_id, product, summary, "
                               "idempotency_key) VALUES(?,?,?,?)",
                               (customer_id, name, summary, key))
            return BugReport(ok=True, report_id=_reference("BUG", key, cur.lastrowid),
                             product=name,
                             message="Bug report filed with the engineering team.")

        return self._once(key, BugReport, apply)


    def hand_to_human(self, ticket_id: str, category: str | None, reason: str,
                      transcript: list[dict[str, Any]], *, key: str) -> str:
        """Put a ticket in the human queue, once per ``key``; its reference."""

        def apply(conn: sqlite3.Connection) -> QueuedTicket:
            ref = _reference("HQ", key, None)
            conn.execute("INSERT INTO human_queue(ticket_id, category, reason, transcript, "
                         "reference, idempotency_key) VALUES(?,?,?,?,?,?)",
                         (ticket_id, category, reason, json.dumps(transcript), ref, key))
            return QueuedTicket(reference=ref, ticket_id=ticket_id, category=category,
                                reason=reason, transcript=[])

        return self._once(key, QueuedTicket, apply).reference


def _reference(prefix: str, key: str | None, rowid: int | None) -> str:
    """A reference derived from the idempotency key: the same write gets the same reference
    in any run, whatever order concurrent sessions reached the CRM in."""
    if key is None:
        return f"{prefix}-{rowid or 0:05d}"
    return f"{prefix}-{hashlib.blake2b(key.encode(), digest_size=4).hexdigest().upper()}"


def _invoice(conn: sqlite3.Connection, invoice_id: str) -> Invoice | None:
    row = conn.execute("SELECT id, customer_id, issued, amount, description, lines FROM invoices"
                       " WHERE id=?", (invoice_id,)).fetchone()
    if row is None:
        return None
    refunded = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE invoice_id=?",
                            (invoice_id,)).fetchone()[0]
    return Invoice(id=row[0], customer_id=row[1], issued=row[2], amount=row[3],
                   description=row[4], status="refunded" if refunded else "paid",
                   refunded_amount=refunded,
                   lines=[InvoiceLine(description=d, amount=a) for d, a in json.loads(row[5])])


def _exists(conn: sqlite3.Connection, customer_id: str) -> bool:
    return conn.execute("SELECT 1 FROM customers WHERE id=?", (customer_id,)).fetchone() is not None


_CACHE: dict[str, CRM] = {}
_CACHE_LOCK = threading.Lock()


def crm_path() -> Path:
    """Where the CRM lives: ``$CONVOY_CRM_DB`` or ``.convoy/support_crm.db``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def current_crm() -> CRM:
    """The CRM at :func:`crm_path` (read on every call, so tests can point it elsewhere)."""
    path = crm_path()
    key = str(path.resolve())
    with _CACHE_LOCK:
        crm = _CACHE.get(key)
        if crm is None or not path.exists():
            crm = _CACHE[key] = CRM(path)
        return crm


# -- tools -----------------------------------------------------------------------------------

# Length caps on tool arguments reach a local model's grammar: llama.cpp's function-calling
# format generates arguments with no token limit, so an unbounded string lets a small model
# ramble until the context is full.
Id = Annotated[str, Field(max_length=40)]
Email = Annotated[str, Field(max_length=120)]
Text = Annotated[str, Field(max_length=300)]


@convoy.tool(trusted=True)  # our own system of record, not untrusted content
def lookup_customer(email: Email) -> CustomerLookup:
    """Find a customer account by email address."""
    customer = current_crm().customer_by_email(email)
    return CustomerLookup(found=customer is not None, customer=customer)


@convoy.tool(trusted=True)  # our own system of record, not untrusted content
def list_invoices(customer_id: Id) -> list[InvoiceSummary]:
    """List a customer's invoices, newest first, with their amounts and refund status."""
    return current_crm().invoices_of(customer_id)


@convoy.tool(trusted=True)  # our own system of record, not untrusted content
def get_invoice(invoice_id: Id) -> InvoiceLookup:
    """Get one invoice (like INV-1234) with its line items and how much was refunded."""
    invoice = current_crm().invoice(invoice_id)
    return InvoiceLookup(found=invoice is not None, invoice=invoice)


@convoy.tool(trusted=True)  # our own system of record, not untrusted content
def check_service_status(product: Id) -> ServiceStatus:
    """Current status of a product (dashboard, api, mobile, reports, sync, notifications)."""
    return current_crm().service(product)


@convoy.tool(writes=True, idempotent=True, trusted=True)  # our CRM's own reply
def issue_refund(ctx: convoy.ToolContext, invoice_id: Id, amount: float,
                 reason: Text) -> RefundResult:
    """Refund part or all of an invoice. Refuses amounts above the invoice total, invoices
    already refunded, and refunds above the automatic limit (500.00), which need a human."""
    return current_crm().issue_refund(invoice_id, amount, reason, key=ctx.idempotency_key)


@convoy.tool(writes=True, idempotent=True, trusted=True)  # our CRM's own reply
def reset_password(ctx: convoy.ToolContext, customer_id: Id) -> AccountChange:
    """Send the customer a password reset link."""
    return current_crm().reset_password(customer_id, key=ctx.idempotency_key)


@convoy.tool(writes=True, idempotent=True, trusted=True)  # our CRM's own reply
def update_email(ctx: convoy.ToolContext, customer_id: Id, new_email: Email) -> AccountChange:
    """Change the email address of a customer's account."""
    return current_crm().update_email(customer_id, new_email, key=ctx.idempotency_key)


@convoy.tool(writes=True, idempotent=True, trusted=True)  # our CRM's own reply
def open_bug_report(ctx: convoy.ToolContext, customer_id: Id, product: Id,
                    summary: Text) -> BugReport:
    """File a bug report for engineering about a product."""
    return current_crm().open_bug_report(customer_id, product, summary, key=ctx.idempotency_key)


READ_TOOLS = (lookup_customer, list_invoices, get_invoice, check_service_status)
WRITE_TOOLS = (issue_refund, reset_password, update_email, open_bug_report)
