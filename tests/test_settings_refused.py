"""Settings that are not numbers are refused where they are given, in one line (a new
user's trial: NaN, and infinities where they mean nothing, were taken, and misbehaved
later: alerts that never fired, budgets never spent, approvals that expired at once)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from convoy import Approval, Escalation, Price, PriceTable, UserError
from convoy.alerts import BaselinePolicy
from convoy.cost import Budget, ResponseCache
from convoy.models._sim import Latency, SimModel
from convoy.resilience import BreakerPolicy, Rate, RetryPolicy

NAN = math.nan
INF = math.inf

REFUSED: list[tuple[str, Callable[[], Any], str]] = [
    ("k nan", lambda: BaselinePolicy(k=NAN), "BaselinePolicy.k must be a number > 0"),
    ("k inf", lambda: BaselinePolicy(k=INF), "BaselinePolicy.k must be a number > 0"),
    ("warmup nan", lambda: BaselinePolicy(warmup=NAN),
     "BaselinePolicy.warmup must be a whole number >= 0"),
    ("deviation nan", lambda: BaselinePolicy(min_deviation=NAN), "min_deviation"),
    ("usd nan", lambda: Budget(usd=NAN), "budget limits must be numbers >= 0"),
    ("tokens nan", lambda: Budget(tokens=NAN), "budget limits must be numbers >= 0"),
    ("delay nan", lambda: RetryPolicy(initial_delay=NAN), "RetryPolicy delays must be"),
    ("delay inf", lambda: RetryPolicy(initial_delay=INF), "RetryPolicy delays must be"),
    ("max delay nan", lambda: RetryPolicy(max_delay=NAN), "RetryPolicy delays must be"),
    ("rate-limited wait nan", lambda: RetryPolicy(max_rate_limited_wait=NAN),
     "max_rate_limited_wait must be >= 0"),
    ("rpm nan", lambda: Rate(rpm=NAN), "Rate.rpm and Rate.tpm must be finite numbers > 0"),
    ("tpm inf", lambda: Rate(tpm=INF), "Rate.rpm and Rate.tpm must be finite numbers > 0"),
    ("burst nan", lambda: Rate(rpm=60, burst=NAN), "Rate.burst must be a finite number"),
    ("max wait nan", lambda: Rate(rpm=60, max_wait=NAN), "Rate.max_wait must be >= 0"),
    ("open nan", lambda: BreakerPolicy(wait_in_open=NAN), "wait_in_open must be >= 0"),
    ("slow nan", lambda: BreakerPolicy(slow_call_duration=NAN), "slow_call_duration > 0"),
    ("ttl nan", lambda: ResponseCache(ttl=NAN), "ResponseCache needs ttl > 0"),
    ("price nan", lambda: Price(input_per_mtok=NAN, output_per_mtok=1.0),
     "Price.input_per_mtok must be a finite number of USD >= 0, got nan"),
    ("price negative", lambda: PriceTable().set("m", input_per_mtok=-1, output_per_mtok=1),
     "prices for 'm': Price.input_per_mtok must be a finite number of USD >= 0, got -1"),
    ("expires nan", lambda: Approval(expires_after=NAN), "Approval.expires_after must be"),
    ("expires inf", lambda: Approval(expires_after=INF), "Approval.expires_after must be"),
    ("deadline nan", lambda: Approval(deadline=NAN), "Approval.deadline must be a number"),
    ("deadline far", lambda: Approval(deadline=1e12), "pass None (or math.inf) for no"),
    ("escalation nan", lambda: Escalation(deadline=NAN), "Escalation.deadline must be a"),
    ("sim latency inf", lambda: SimModel({"a": ["x"]}, latency=INF),  # (answered never)
     "SimModel latency must be finite seconds >= 0, got value=inf"),
    ("sim latency nan", lambda: SimModel({"a": ["x"]}, latency=Latency(kind="uniform",
                                                                       high=NAN)),
     "SimModel latency must be finite seconds >= 0"),
]


@pytest.mark.parametrize(("make", "message"), [(m, msg) for _, m, msg in REFUSED],
                         ids=[name for name, _, _ in REFUSED])
def test_a_setting_that_is_no_number_is_refused_in_one_line(
        make: Callable[[], Any], message: str) -> None:
    with pytest.raises(UserError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_an_approval_deadline_of_inf_is_none() -> None:
    assert Approval(deadline=INF).deadline is None
    assert Approval(deadline=60).deadline == 60.0


def test_a_duration_is_any_real_number_of_seconds() -> None:
    """A review: ``ctx.sleep(np.int64(5))`` and ``Fraction(3, 2)`` were refused as "not a
    number of seconds" (only ``int`` and ``float`` were taken), and ``10 ** 5000`` raised
    Python's ValueError from the message itself."""
    from decimal import Decimal
    from fractions import Fraction

    from convoy._seconds import sleep_seconds

    assert [sleep_seconds(v, "s") for v in (Fraction(3, 2), Decimal("2.5"), 7)] == \
        [1.5, 2.5, 7.0]
    with pytest.raises(UserError, match=r"got inf; to wait with no end"):
        sleep_seconds(10 ** 5000, "s")
    with pytest.raises(UserError, match="must be a number of seconds, got bool"):
        sleep_seconds(True, "s")  # type: ignore[arg-type]
