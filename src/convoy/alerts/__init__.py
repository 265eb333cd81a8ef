"""Alerts on learned baselines, not only thresholds.

:class:`BaselineAlerts` is an interceptor: give it to an engine and it learns, per agent
and per tenant, an EWMA mean and deviation of each metric (:data:`METRICS`: error rate,
latency, tokens per session, tokens per minute), then fires an alert when a metric rises
out of its band and clears it when the metric is back, with hysteresis
(:class:`BaselinePolicy`). Alerts are logged (``convoy.alerts``), kept in the store
(``convoy alerts``) and POSTed to webhooks (:class:`Webhook`), durably.
"""

from __future__ import annotations

from convoy.alerts._baseline import Baseline, BaselinePolicy
from convoy.alerts._interceptor import BaselineAlerts
from convoy.alerts._metrics import METRICS, Metric
from convoy.alerts._webhook import Webhook, alert_json

__all__ = ["METRICS", "Baseline", "BaselineAlerts", "BaselinePolicy", "Metric", "Webhook",
           "alert_json"]
