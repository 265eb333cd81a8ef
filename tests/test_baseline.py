"""The learned baseline itself: warm-up, firing and clearing with hysteresis, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convoy import UserError
from convoy.alerts import Baseline, BaselinePolicy

POLICY = BaselinePolicy(alpha=0.2, k=3.0, warmup=5, fire_after=2, clear_after=2)


def run(values: list[float], policy: BaselinePolicy = POLICY) -> list[tuple[int, str]]:
    b = Baseline()
    events = []
    for i, x in enumerate(values):
        change = b.observe(x, policy)
        if change == "fired":
            b.alert_id = i
        elif change in ("cleared", "relearned"):
            b.alert_id = None
        if change:
            events.append((i, change))
    return events


def test_fires_after_consecutive_observations_above_the_band_and_clears_with_hysteresis(
        ) -> None:
    steady = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0]
    assert run(steady) == []
    assert run([*steady, 5.0, 1.0, 5.0]) == []  # not consecutive: no alert
    assert run([*steady, 5.0, 5.0]) == [(8, "fired")]
    # 1.18 is inside the band (≤ 1.236) but not the clear band (≤ 1.131): the count of
    # observations back in restarts; then two in a row: cleared.
    assert run([*steady, 5.0, 5.0, 1.0, 1.18, 1.0, 1.0]) == [(8, "fired"), (12, "cleared")]


def test_nothing_fires_during_the_warm_up() -> None:
    assert run([1.0, 100.0, 100.0, 100.0]) == []


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=80))
def test_alerts_alternate_and_never_fire_before_the_warm_up(values: list[float]) -> None:
    events = run(values)
    assert [e for _, e in events] == ["fired", "cleared"] * (len(events) // 2) + \
        ["fired"] * (len(events) % 2)
    assert all(i >= POLICY.warmup for i, _ in events)


@pytest.mark.parametrize("bad", [{"alpha": 0}, {"alpha": 1.5}, {"k": 0}, {"clear_k": 4.0},
                                 {"warmup": -1}, {"fire_after": 0}, {"clear_after": 0},
                                 {"min_deviation": -1}])
def test_a_bad_policy_is_one_clear_error(bad: dict[str, float]) -> None:
    with pytest.raises(UserError, match="BaselinePolicy"):
        BaselinePolicy(**bad)  # type: ignore[arg-type]


def test_a_level_that_lasts_is_learned_as_the_new_normal_and_a_later_rise_fires_again(
        ) -> None:
    """A lasting change (a new model, a longer prompt) used to keep its alert open for
    good, learning nothing, so a worse change later could not fire: after
    ``relearn_after`` observations with its alert open, the alert clears as relearned and
    the baseline learns the new level (a new warm-up), and a rise from there fires."""
    policy = BaselinePolicy(alpha=0.2, k=3.0, warmup=5, fire_after=2, clear_after=2,
                            relearn_after=10)
    steady = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0]
    shifted = [2.0, 2.1, 1.9] * 10
    events = run([*steady, *shifted, 6.0, 6.0], policy)
    # fired at the second 2.x (index 8), relearned 10 observations on, fired again at 6.0
    assert events == [(8, "fired"), (18, "relearned"), (38, "fired")], events
    # off (None): the alert stays open however long the level lasts
    off = BaselinePolicy(alpha=0.2, k=3.0, warmup=5, fire_after=2, clear_after=2,
                         relearn_after=None)
    assert run([*steady, *shifted * 10], off) == [(8, "fired")]


def test_the_error_rate_is_never_relearned_by_default() -> None:
    """A lasting rise of the error rate is an outage, not a new normal: its alert stays
    open until the errors stop (unless its policy says otherwise)."""
    from convoy.alerts import BaselineAlerts

    alerts = BaselineAlerts()
    assert alerts.policies["error_rate"].relearn_after is None
    assert alerts.policies["latency"].relearn_after == BaselinePolicy().relearn_after == 100
    mine = BaselineAlerts(policies={"error_rate": BaselinePolicy(relearn_after=50)})
    assert mine.policies["error_rate"].relearn_after == 50


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_bad_relearn_after_is_one_clear_error(bad: object) -> None:
    with pytest.raises(UserError, match="relearn_after"):
        BaselinePolicy(relearn_after=bad)  # type: ignore[arg-type]
