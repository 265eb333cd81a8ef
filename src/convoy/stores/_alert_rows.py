"""The alert tables' statements and row converters, shared by the SQLite and PostgreSQL
stores (``{p}`` is the driver's parameter mark)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from convoy.stores._protocol import (
    AlertDelivery,
    AlertRow,
    DeliveryRow,
    DeliveryStatus,
    NewAlert,
)
from convoy.stores._rows import RowCheck, row_name

ALERT_COLS = ("id,tenant,scope,subject,metric,status,value,mean,deviation,threshold,opened,"
              "cleared,cleared_value,detail")
_A = ",".join(f"a.{c}" for c in ALERT_COLS.split(","))
#: A delivery joined with its alert (``o``: the outbox, ``a``: the alert).
DELIVERY_COLS = f"o.id,o.url,o.event,o.attempts,o.idem_key,{_A}"
#: A claim's condition on the delivery ``{o}``: no earlier event of its alert is pending for
#: its webhook (a ``cleared`` never overtakes a ``fired`` whose attempts failed so far). A
#: given-up event holds back none. (Found by the index ``alert_outbox_order``.)
IN_ORDER = ("NOT EXISTS (SELECT 1 FROM alert_outbox e WHERE e.alert_id={o}.alert_id AND "
            "e.url={o}.url AND e.id<{o}.id AND e.delivered IS NULL AND e.next_at IS NOT NULL)")
#: Where a delivery stands (:class:`DeliveryRow`).
STATUS_COLS = "id,alert_id,url,event,attempts,delivered,next_at,last_error,idem_key"
#: An alert, unless its series has one open (the unique index ``alerts_open_series``):
#: then nothing is inserted and no row returned.
INSERT_ALERT = ("INSERT INTO alerts(tenant,scope,subject,metric,status,value,mean,deviation,"
                "threshold,opened,detail) VALUES({p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p}) "
                "ON CONFLICT(tenant,scope,subject,metric) WHERE status='open' DO NOTHING "
                "RETURNING id")
#: The open alert of a series (tenant, scope, subject, metric).
OPEN_OF_SERIES = ("SELECT id FROM alerts WHERE tenant={p} AND scope={p} AND subject={p} AND "
                  "metric={p} AND status='open'")
#: The webhook URLs an alert's ``fired`` event was queued for, with its key, oldest first.
FIRED_KEYS = ("SELECT url, idem_key FROM alert_outbox WHERE alert_id={p} AND event='fired' "
              "ORDER BY id")
QUEUE = ("INSERT INTO alert_outbox(alert_id,url,event,next_at,idem_key) "
         "VALUES({p},{p},{p},{p},{p})")
CLEAR = ("UPDATE alerts SET status='cleared', cleared={p}, cleared_value={p} "
         "WHERE id={p} AND status='open'")
#: An open alert (of a tenant, with ``{tenant}`` filled in) cleared by hand: no observation
#: brought it back, so it has no cleared value.
CLOSE = ("UPDATE alerts SET status='cleared', cleared={p}, cleared_value=NULL "
         "WHERE id={p} AND status='open'{tenant}")
#: The webhook URLs an alert's ``fired`` event was queued for.
FIRED_URLS = ("SELECT DISTINCT url FROM alert_outbox WHERE alert_id={p} AND event='fired' "
              "ORDER BY url")
RESULT = ("UPDATE alert_outbox SET attempts={p}, delivered={p}, next_at={p}, last_error={p} "
          "WHERE id={p}")
#: :data:`RESULT` fenced by the claim: its lease's end is still the row's ``next_at``.
CLAIMED = " AND delivered IS NULL AND next_at={p}"


def result(mark: str, claimed_until: float | None, values: tuple[Any, ...]
           ) -> tuple[str, tuple[Any, ...]]:
    """The :data:`RESULT` statement and its parameters (``values``: attempts, delivered,
    next_at, error, id), fenced by the claim when ``claimed_until`` is given."""
    if claimed_until is None:
        return RESULT.format(p=mark), values
    return (RESULT + CLAIMED).format(p=mark), (*values, claimed_until)
#: Given-up events (of a tenant's alerts, with ``{tenant}`` filled in) due again.
REDELIVER = ("UPDATE alert_outbox SET next_at={p}, attempts=0 WHERE delivered IS NULL AND "
             "next_at IS NULL{tenant}")
REDELIVER_TENANT = " AND alert_id IN (SELECT id FROM alerts WHERE tenant={p})"
#: The URLs with undelivered (pending or given-up) events (of a tenant's alerts, with
#: ``{tenant}`` filled in with :data:`REDELIVER_TENANT`).
UNDELIVERED_URLS = ("SELECT DISTINCT url FROM alert_outbox WHERE delivered IS NULL{tenant} "
                    "ORDER BY url")
#: The undelivered events of one webhook URL (of a tenant's alerts, as above), deleted.
DROP = "DELETE FROM alert_outbox WHERE delivered IS NULL AND url={p}{tenant}"


def queued(alert_id: int, event: str, webhooks: Sequence[str], due: float
           ) -> list[tuple[Any, ...]]:
    """The :data:`QUEUE` rows of one event: one per webhook, all with one idempotency key,
    random, so no other store (nor this one recreated) ever gives an event the same."""
    key = f"convoy-alert-{alert_id}-{event}-{uuid.uuid4().hex}"
    return [(alert_id, url, event, due, key) for url in webhooks]


def adopted(alert_id: int, webhooks: Sequence[str], fired: Sequence[Sequence[Any]],
            due: float) -> list[tuple[Any, ...]]:
    """The :data:`QUEUE` rows that give an adopted alert's ``fired`` event to the webhooks
    of ``webhooks`` it was not queued for (``fired``: its :data:`FIRED_KEYS` rows), due at
    ``due``: the same event, so its key (a new one if it was queued for none)."""
    have = {url for url, _ in fired}
    missing = [url for url in dict.fromkeys(webhooks) if url not in have]
    if not missing:
        return []
    if not fired:
        return queued(alert_id, "fired", missing, due)
    key = fired[0][1] or f"convoy-alert-{alert_id}-fired"  # (a legacy key: as it was sent)
    return [(alert_id, url, "fired", due, key) for url in missing]


def cleared_rows(alert_id: int, webhooks: Sequence[str], fired: Sequence[Sequence[Any]],
                 at: float) -> list[tuple[Any, ...]]:
    """The :data:`QUEUE` rows of an alert's ``cleared`` event (due at ``at``), for the
    clearing engine's ``webhooks`` and each URL its ``fired`` event was queued for
    (``fired``: its :data:`FIRED_KEYS` rows; another engine's, that adopted it), once each.
    A webhook of ``webhooks`` the ``fired`` event was not queued for (the engine linked the
    alert when it started: another engine opened it) gets that event first, as an adopter
    does (:func:`adopted`): never a ``cleared`` event of an alert it never heard of."""
    urls = list(dict.fromkeys([*webhooks, *(url for url, _ in fired)]))
    return [*adopted(alert_id, webhooks, fired, at), *queued(alert_id, "cleared", urls, at)]


_COLS = ALERT_COLS.split(",")
#: The columns of an alert row by what they must hold when read.
_CHECKS = RowCheck(tuple((_COLS.index(n), n) for n in ("value", "mean", "deviation", "threshold",
                                                "opened", "cleared", "cleared_value")),
           ((0, "id"),),
           tuple((_COLS.index(n), n) for n in ("tenant", "scope", "subject", "metric",
                                                "status", "detail")))


def alert_row(r: Sequence[Any]) -> AlertRow:
    _CHECKS(r, lambda: f"alert {row_name(r[0])}")
    return AlertRow(id=int(r[0]), tenant=r[1], scope=r[2], subject=r[3], metric=r[4],
                    status=r[5], value=r[6], mean=r[7], deviation=r[8], threshold=r[9],
                    opened=r[10], cleared=r[11], cleared_value=r[12], detail=r[13])


def delivery(r: Sequence[Any], claimed_until: float | None = None) -> AlertDelivery:
    # (a key lost by a hand edit: the one Convoy sent before keys were random)
    return AlertDelivery(id=int(r[0]), url=r[1], event=r[2], attempts=int(r[3]),
                         key=r[4] or f"convoy-alert-{r[5]}-{r[2]}", alert=alert_row(r[5:]),
                         claimed_until=claimed_until)


#: The columns of a :data:`STATUS_COLS` row by what they must hold when read.
_STATUS_CHECKS = RowCheck(((5, "delivered"), (6, "next_at")),
                          ((0, "id"), (1, "alert_id"), (4, "attempts")),
                          ((2, "url"), (3, "event"), (7, "last_error"), (8, "idem_key")))


def delivery_row(r: Sequence[Any]) -> DeliveryRow:
    _STATUS_CHECKS(r, lambda: f"webhook delivery {row_name(r[0])} (alert {row_name(r[1])})")
    status: DeliveryStatus = ("delivered" if r[5] is not None else
                              "pending" if r[6] is not None else "given_up")
    return DeliveryRow(id=int(r[0]), alert_id=int(r[1]), url=r[2], event=r[3],
                       status=status, attempts=int(r[4]), delivered=r[5], next_at=r[6],
                       last_error=r[7], key=r[8])


def new_alert_params(a: NewAlert) -> tuple[Any, ...]:
    return (a.tenant, a.scope, a.subject, a.metric, "open", a.value, a.mean, a.deviation,
            a.threshold, a.opened, a.detail)


def series_params(a: NewAlert) -> tuple[Any, ...]:
    """The :data:`OPEN_OF_SERIES` parameters of the series ``a`` is of."""
    return (a.tenant, a.scope, a.subject, a.metric)
