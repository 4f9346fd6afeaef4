"""`stillhouse plan --simulate`: the replay against queueing theory's closed forms, the
serverless fleet's cold starts and idle stops, the masters' cap, the day's shape, and the
command line. (Its prediction for the soak is checked by the soak itself.)"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from stillhouse.cli import cli
from stillhouse.planning import erlang_c
from stillhouse.simulation import Curve, Fleet, arrivals, day_kappa, rate_function, simulate


def test_poisson_arrivals_and_random_service_wait_as_erlang_c_says() -> None:
    # M/M/5 at 80 %: 2 jobs/s of 2 s on average. Erlang C: 55 % wait, 1.11 s on average,
    # and P(wait > t) = C exp(-(c mu - lambda) t) puts the p99 at 8.0 s.
    times = arrivals(Curve(rate_per_s=2, duration_s=150_000, seed=7))
    run = simulate(times, 2.0, Fleet(max_workers=5, min_workers=5), service_cv=1.0, seed=7)
    waiting = erlang_c(5, 4.0)
    assert run.gpu_wait.mean == pytest.approx(waiting * 2 / (5 - 4), rel=0.08)
    assert run.gpu_wait.p99 == pytest.approx(math.log(waiting / 0.01) / (2.5 - 2), rel=0.08)
    # Just over half of the jobs wait, so the median wait is short: ln(C / 0.5) / 0.5.
    assert run.gpu_wait.p50 == pytest.approx(math.log(waiting / 0.5) / 0.5, abs=0.05)
    assert run.queue_wait.max == 0.0  # no cap: sent as soon as queued


def test_an_overloaded_fleet_makes_each_job_wait_longer_by_the_excess() -> None:
    # 28 jobs/s evenly against 40 workers of 1.5 s (26.7 jobs/s): the backlog grows by
    # 1.33 jobs a second, so the last of 10,000 waits (10,000 / 26.7 - 10,000 / 28) s.
    times = arrivals(Curve(rate_per_s=28, duration_s=10_000 / 28, arrivals="even"))
    assert len(times) == 10_000 and times[1] == pytest.approx(1 / 28)
    run = simulate(times, 1.5, Fleet(max_workers=40, min_workers=40))
    expected_last = 10_000 * 1.5 / 40 - 10_000 / 28
    assert run.gpu_wait.max == pytest.approx(expected_last, rel=0.01)
    assert run.gpu_wait.p50 == pytest.approx(expected_last / 2, rel=0.02)
    assert run.span_s == pytest.approx(10_000 * 1.5 / 40, rel=0.01)


def test_the_masters_cap_keeps_the_backlog_in_the_queue_not_at_the_endpoint() -> None:
    times = arrivals(Curve(rate_per_s=28, duration_s=10_000 / 28, arrivals="even"))
    fleet = Fleet(max_workers=40, min_workers=40)
    capped = simulate(times, 1.5, fleet, backend_cap=120)
    free = simulate(times, 1.5, fleet)
    # The same GPUs, so the same wait for one; 80 jobs beyond the workers wait at the
    # endpoint (80 / 26.7 jobs/s = 3 s), the rest in our queue.
    assert capped.gpu_wait.max == pytest.approx(free.gpu_wait.max, rel=0.01)
    assert capped.gpu_wait.p99 - capped.queue_wait.p99 == pytest.approx(3.0, abs=0.05)
    assert capped.queue_wait.p50 > 0 and free.queue_wait.max == 0.0
    # A result's way back holds each place 0.5 s longer: every job sent 0.5 s later.
    lagging = simulate(times, 1.5, fleet, backend_cap=120, release_lag_s=0.5)
    assert lagging.queue_wait.p99 == pytest.approx(capped.queue_wait.p99 + 0.5, abs=0.05)


def test_a_cold_fleet_starts_a_worker_after_the_scale_delay_and_stops_it_when_idle() -> None:
    fleet = Fleet(max_workers=3, cold_start_s=20, idle_timeout_s=5, scale_after_s=4)
    first = simulate([0.0], 1.0, fleet)
    assert first.gpu_wait.max == pytest.approx(24.0)  # noticed at 4 s, ready at 24 s
    assert first.cold_starts == 1
    assert first.billed_gpu_s == pytest.approx(20 + 1 + 5)  # start, job, idle tail
    # Jobs a minute apart: each finds the last worker stopped and waits for a new one.
    sparse = simulate([0.0, 60.0, 120.0], 1.0, fleet)
    assert sparse.cold_starts == 3 and sparse.gpu_wait.p50 == pytest.approx(24.0)
    # One warm worker takes them all at once.
    warm = simulate([0.0, 60.0, 120.0], 1.0, fleet.model_copy(update={"min_workers": 1}))
    assert warm.cold_starts == 0 and warm.gpu_wait.max == 0.0
    # A burst of 30 jobs of 10 s: the endpoint starts workers up to its max, no further.
    burst = simulate([0.0] * 30, 10.0, fleet)
    assert burst.workers_at_most == 3 and burst.cold_starts == 3


def test_the_days_shape_peaks_at_the_peak_factor_and_keeps_the_average() -> None:
    curve = Curve(shape="day", rate_per_s=1.0, duration_s=86_400, peak_factor=3, seed=1)
    rate, highest = rate_function(curve)
    assert highest == pytest.approx(3.0)
    assert rate(20 * 3600) == pytest.approx(3.0, rel=1e-3)  # busiest at 20:00
    assert rate(8 * 3600) < 0.3  # quietest at 08:00
    assert day_kappa(1.0) == 0.0
    times = arrivals(curve)
    assert len(times) == pytest.approx(86_400, rel=0.02)
    evening = sum(1 for t in times if 19.5 * 3600 <= t < 20.5 * 3600)
    morning = sum(1 for t in times if 7.5 * 3600 <= t < 8.5 * 3600)
    assert evening > 10 * morning


def test_plan_simulate_prints_the_replay_and_its_json() -> None:
    runner = CliRunner()
    base = ["plan", "--daily-users", "20000", "--requests", "10"]
    text = runner.invoke(
        cli, [*base, "--simulate", "burst", "--burst", "20:600:120", "--duration", "1800"]
    )
    assert text.exit_code == 0, text.output
    assert "simulated:" in text.output and "wait for a GPU (created -> started): p50" in text.output
    assert "cold starts" in text.output and "billed" in text.output
    data = runner.invoke(cli, [*base, "--simulate", "steady", "--duration", "600", "--json"])
    assert data.exit_code == 0, data.output
    simulation = json.loads(data.output)["simulation"]
    assert simulation["jobs"] == pytest.approx(20_000 * 10 / 86_400 * 600, rel=0.15)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--simulate", "burst"], "--simulate burst needs --burst RATE:START_S:SECONDS"),
        (["--simulate", "burst", "--burst", "fast"], "expected --burst RATE:START_S:SECONDS"),
        (["--burst", "1:2:3"], "--burst goes with --simulate burst"),
    ],
)
def test_plan_simulate_refuses_a_malformed_burst_in_words(extra: list[str], said: str) -> None:
    result = CliRunner().invoke(cli, ["plan", "--daily-users", "1000", "--requests", "1", *extra])
    assert result.exit_code == 2 and said in result.output


def test_plan_simulate_refuses_a_load_too_large_to_replay_and_says_what_to_do() -> None:
    result = CliRunner().invoke(
        cli, ["plan", "--daily-users", "1e8", "--requests", "10", "--simulate", "day"]
    )
    assert result.exit_code == 2
    assert "simulate a cell of the load" in result.output
