"""The simulator's "language understanding": keyword scores and regex extraction.

Deliberately shallow, like a small model: mixed signals ("I can't log in to see my invoice")
can fool it, which is where the simulated desk makes its honest mistakes.
"""

from __future__ import annotations

import re

CATEGORIES = ("billing", "technical", "account")

_KEYWORDS: dict[str, dict[str, int]] = {
    "billing": {"refund": 2, "charge": 1, "charged": 1, "invoice": 1, "billed": 1,
                "payment": 1, "paying": 1, "money back": 2, "renewal": 1, "$": 1, "inv-": 1,
                "paid": 1, "billing": 1},
    "technical": {"error": 1, "crash": 2, "bug": 2, "broken": 1, "down": 1, "outage": 2,
                  "blank": 1, "freez": 1, "sync": 2, "api": 2, "502": 1, "timeout": 1,
                  "export": 1, "notification": 2, "app": 1, "slow": 1, "stuck": 1,
                  "dashboard": 1, "report": 1, "not working": 1, "known problem": 1},
    "account": {"password": 2, "log in": 1, "login": 1, "sign in": 1, "locked": 2,
                "email address": 1, "my email": 1, "login email": 2, "hacked": 2, "gdpr": 2,
                "personal data": 1, "reset": 1, "my account": 1},
}

_ESCALATE = re.compile(r"\b(lawyer|attorney|legal|sue|court|chargeback|gdpr|personal data|"
                       r"hacked|formal complaint)\b")
_URGENT = re.compile(r"\b(urgent|asap|outage|down|locked|cannot|can't|cant|stuck|today)\b")
_CALM = re.compile(r"\b(question|explain|understand|quick check|could you tell)\b")
_INVOICE = re.compile(r"\bINV-\d{4}\b", re.IGNORECASE)
_AMOUNT = re.compile(r"\$\s?(\d[\d,]*\.?\d{0,2})")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_REFUND = re.compile(r"refund|money back|reverse|charged twice|double charged|duplicate charge")
_PASSWORD = re.compile(r"password|log in|login page|sign in|locked")
_EMAIL_CHANGE = re.compile(r"(change|update|use).{0,40}\b(email|address)\b")
_STATUS_QUESTION = re.compile(r"\b(is (it|sync|the \w+|\w+) down|outage|known problem|status)\b")
_PRODUCTS = (("sync", "sync"), ("api", "api"), ("dashboard", "dashboard"),
             ("notification", "notifications"), ("report", "reports"),
             ("mobile", "mobile"), ("app", "mobile"), ("ios", "mobile"), ("android", "mobile"))


def scores(text: str) -> dict[str, int]:
    """Keyword score of each category for ``text`` (lower-cased)."""
    return {cat: sum(w for k, w in words.items() if k in text)
            for cat, words in _KEYWORDS.items()}


def ranked(text: str) -> list[str]:
    """Categories, most likely first (ties keep the order of :data:`CATEGORIES`)."""
    s = scores(text)
    return sorted(CATEGORIES, key=lambda c: -s[c])


def needs_human(text: str) -> bool:
    return bool(_ESCALATE.search(text))


def urgency(text: str) -> str:
    if needs_human(text) or _URGENT.search(text):
        return "high"
    return "low" if _CALM.search(text) else "normal"


def summary(body: str, limit: int = 110) -> str:
    """The ticket's gist: its longest paragraph, shortened."""
    para = max((p.strip() for p in body.split("\n\n")), key=len, default="")
    one_line = " ".join(para.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3].rstrip() + "..."


def invoice_id(text: str) -> str | None:
    m = _INVOICE.search(text)
    return m.group(0).upper() if m else None


def amount(text: str) -> float | None:
    m = _AMOUNT.search(text)
    return float(m.group(1).replace(",", "")) if m else None


def other_email(text: str, own: str) -> str | None:
    """An email address in ``text`` that is not the sender's own."""
    for m in _EMAIL.finditer(text):
        if m.group(0).lower() != own.lower():
            return m.group(0).lower()
    return None


def wants_refund(text: str) -> bool:
    return bool(_REFUND.search(text))


def wants_password_reset(text: str) -> bool:
    return bool(_PASSWORD.search(text))


def wants_email_change(text: str) -> bool:
    return bool(_EMAIL_CHANGE.search(text))


def asks_status(text: str) -> bool:
    return bool(_STATUS_QUESTION.search(text))


def product(text: str) -> str | None:
    for word, name in _PRODUCTS:
        if re.search(rf"\b{word}", text):
            return name
    return None
