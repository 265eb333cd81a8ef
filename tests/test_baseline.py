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
        elif change == "cleared":
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
