"""The one percentile function shared by step timings, the CLI and chaos reports."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convoy._stats import percentile

samples = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50)
ps = st.floats(min_value=0, max_value=100)


@given(samples, ps, ps)
def test_percentile_is_monotone_in_p(xs: list[float], p: float, q: float) -> None:
    lo, hi = sorted((p, q))
    assert percentile(xs, lo) <= percentile(xs, hi)


@given(samples, ps)
def test_percentile_is_one_of_the_samples(xs: list[float], p: float) -> None:
    assert percentile(xs, p) in xs


@given(samples)
def test_percentile_0_is_the_min_and_100_the_max(xs: list[float]) -> None:
    assert percentile(xs, 0) == min(xs)
    assert percentile(xs, 100) == max(xs)


def test_percentile_of_no_samples_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_percentile_is_nearest_rank() -> None:
    xs = [15.0, 20.0, 35.0, 40.0, 50.0]  # the Wikipedia example
    assert [percentile(xs, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile(list(range(1, 101)), 99) == 99


@pytest.mark.parametrize("p", [-1, 100.5, math.nan])
def test_percentile_outside_0_100_is_an_error(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], p)


def test_every_percentile_in_convoy_is_this_one() -> None:
    from convoy.cli._stats import RunStats
    from convoy.interceptors._accounting import Durations

    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    for p in (0, 10, 50, 90, 99, 100):
        stats = RunStats(latencies=list(xs))
        assert Durations(samples=list(xs)).percentile(p) == percentile(xs, p)
        assert stats.latency(p) == percentile(xs, p)


def test_a_run_summary_times_only_the_session_runs_that_ended() -> None:
    """A review: a stopped ``convoy run`` counted the sessions the stop interrupted in its
    latency percentiles (a session cut off after a minute made p99 a minute) and in its
    throughput. They are still counted as run (and their tokens), but not timed: latency
    and throughput are of the runs that ended (completed, failed, parked)."""
    from convoy.cli._stats import RunStats
    from convoy.engine._results import SessionResult

    stats = RunStats()
    stats.add(SessionResult(id="a", status="completed", duration_s=0.5))
    stats.add(SessionResult(id="b", status="waiting", duration_s=0.25))
    stats.add(SessionResult(id="c", status="pending", duration_s=60.0,
                            error={"type": "SessionInterrupted", "message": "stopped"}))
    stats.wall_s = 2.0
    assert stats.ran == 3 and stats.left["interrupted"] == 1
    assert stats.latency(100) == 0.5 and stats.latency(0) == 0.25
    assert stats.throughput == 1.0  # (the two runs that ended, in 2 s)


def test_a_run_summary_counts_a_session_another_engine_finished_as_already_finished() -> None:
    """Two ``convoy run``s on one store: a session the other engine finished after this
    command read it unfinished comes back as its stored result (``already_finished``):
    reported as already finished, not as run here with the other run's usage and time."""
    from convoy.cli._stats import RunStats
    from convoy.engine._results import SessionResult
    from convoy.models._messages import Usage

    stats = RunStats()
    stats.add(SessionResult(id="a", status="completed", duration_s=0.5))
    stats.add(SessionResult(id="b", status="failed", duration_s=2.0, cost=1.0,
                            usage=Usage(10, 20), already_finished=True))
    assert stats.ran == 1 and stats.completed == 1 and stats.skipped == {"failed": 1}
    assert stats.latencies == [0.5] and not stats.failures
    assert (stats.input_tokens, stats.output_tokens, stats.cost) == (0, 0, 0.0)
