"""`stillhouse plan --simulate`: replay an arrival curve against a fleet of serverless GPU
workers, one job at a time, and report the waits.

The model is the system's own path. Jobs wait in the generation queue (FIFO) until the
masters may send them: with `backend_cap` set (STILLHOUSE_MASTER__BACKEND_MAX_IN_FLIGHT),
no more than that many are sent and unfinished at once. A sent job waits at the endpoint
for a free worker. Workers are RunPod's: `min_workers` stay warm; above them, when a sent
job has waited `scale_after_s` (RunPod's queue-delay scaler) the endpoint starts another
worker, which takes `cold_start_s` before its first job and stops after `idle_timeout_s`
without work. A job holds its worker for its service time (the planner's GPU seconds, or a
given figure), spread by `service_cv` (a gamma distribution; 0 = fixed).

Two waits come out, each as p50 / p99 / max: in the queue (created -> sent, what the soak
and the master's `stillhouse_queue_wait_seconds` measure) and until a GPU starts the job
(created -> started, what a user waits before progress moves)."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

SECONDS_PER_DAY = 86_400
# Beyond this many jobs the replay takes minutes and gigabytes: simulate a cell instead
# (daily users and workers divided by the same factor; waits only shrink as both grow).
MAX_JOBS = 3_000_000


class Fleet(BaseModel):
    """The endpoint's workers and how it scales them (RunPod's settings of that name)."""

    max_workers: int = Field(ge=1)
    min_workers: int = Field(default=0, ge=0)
    cold_start_s: float = Field(default=20.0, ge=0)
    idle_timeout_s: float = Field(default=5.0, ge=0)
    scale_after_s: float = Field(default=4.0, ge=0)


class Curve(BaseModel):
    """Arrivals: `steady` at `rate_per_s` for `duration_s`; `day`, a day's shape around
    `rate_per_s` on average whose busiest moment is `peak_factor` times it; `burst`, the
    steady rate with `burst_rate_per_s` from `burst_start_s` for `burst_s`. `even` spaces
    arrivals evenly (as the soak sends them), `poisson` draws them at random (`seed`)."""

    shape: Literal["steady", "day", "burst"] = "steady"
    rate_per_s: float = Field(gt=0)
    duration_s: float = Field(default=3600.0, gt=0)
    peak_factor: float = Field(default=3.0, ge=1)
    burst_rate_per_s: float = Field(default=0.0, ge=0)
    burst_start_s: float = Field(default=0.0, ge=0)
    burst_s: float = Field(default=0.0, ge=0)
    arrivals: Literal["even", "poisson"] = "poisson"
    seed: int = 0


class Waits(BaseModel):
    """Seconds, over every job."""

    mean: float
    p50: float
    p99: float
    max: float


class Simulation(BaseModel):
    """What the replay saw."""

    jobs: int
    span_s: float  # first arrival to last job done
    queue_wait: Waits  # created -> sent to the endpoint
    gpu_wait: Waits  # created -> a worker starts it
    workers_at_most: int
    cold_starts: int
    billed_gpu_s: float  # from each worker's start to its stop (idle tail included)
    busy_gpu_s: float
    # Of the fleet's billed time, the share spent on jobs.
    utilisation: float


def rate_function(curve: Curve) -> tuple[Callable[[float], float], float]:
    """The arrival rate at time t and its highest value."""
    if curve.shape == "steady":
        return (lambda _t: curve.rate_per_s), curve.rate_per_s
    if curve.shape == "burst":
        end = curve.burst_start_s + curve.burst_s

        def bursty(t: float) -> float:
            inside = curve.burst_start_s <= t < end
            return curve.rate_per_s + (curve.burst_rate_per_s if inside else 0.0)

        return bursty, curve.rate_per_s + curve.burst_rate_per_s
    kappa = day_kappa(curve.peak_factor)
    mean = _mean_exp_cos(kappa)

    def daily(t: float) -> float:
        # Busiest at 20:00 (people after work), quietest at 08:00; period one day.
        phase = 2 * math.pi * (t / SECONDS_PER_DAY - 20 / 24)
        return curve.rate_per_s * math.exp(kappa * math.cos(phase)) / mean

    return daily, curve.rate_per_s * curve.peak_factor


def _mean_exp_cos(kappa: float) -> float:
    steps = 2000
    return sum(math.exp(kappa * math.cos(2 * math.pi * k / steps)) for k in range(steps)) / steps


def day_kappa(peak_factor: float) -> float:
    """The concentration of the day's shape exp(k cos) whose peak over mean is
    `peak_factor` (bisection; the ratio grows with k)."""
    if peak_factor <= 1:
        return 0.0
    low, high = 0.0, 50.0
    for _ in range(60):
        middle = (low + high) / 2
        if math.exp(middle) / _mean_exp_cos(middle) < peak_factor:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def arrivals(curve: Curve) -> list[float]:
    """Arrival times in [0, duration_s)."""
    rate, highest = rate_function(curve)
    expected = highest * curve.duration_s
    if expected > MAX_JOBS:
        raise ValueError(
            f"about {expected:,.0f} jobs to replay one by one, over the {MAX_JOBS:,} a "
            "simulation takes: simulate a cell of the load (divide the daily users and the "
            "workers by the same factor) or a shorter --duration"
        )
    times: list[float] = []
    if curve.arrivals == "even":
        # The k-th job when the rate's integral reaches k (the first at 0, as the soak
        # sends them), the rate taken as constant over steps of 0.1 s.
        step, done, k, steps = 0.1, 0.0, 0, math.ceil(curve.duration_s / 0.1)
        for index in range(steps):
            t, here = index * step, rate(index * step)
            reached = done + here * step
            while here > 0 and k < reached:
                times.append(t + (k - done) / here)
                k += 1
            done = reached
        return [t for t in times if t < curve.duration_s]
    draw = random.Random(curve.seed)
    t = 0.0
    while True:  # thinning: candidates at the highest rate, kept at rate(t)/highest
        t += draw.expovariate(highest)
        if t >= curve.duration_s:
            return times
        if draw.random() * highest < rate(t):
            times.append(t)


def _waits(values: list[float]) -> Waits:
    ordered = sorted(values)
    last = len(ordered) - 1
    return Waits(
        mean=sum(ordered) / len(ordered),
        p50=ordered[last // 2],
        p99=ordered[min(last, math.ceil(0.99 * last))],
        max=ordered[-1],
    )


class _Endpoint:
    """The workers of one serverless endpoint: warm ones, started ones, stopped ones."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.free: list[tuple[float, int]] = []  # (free from, worker id)
        self.started_at: dict[int, float] = {}
        for worker in range(fleet.min_workers):  # warm from the start, never stopped
            self.free.append((0.0, worker))
            self.started_at[worker] = 0.0
        self.next_id = fleet.min_workers
        self.most = fleet.min_workers
        self.cold_starts = 0
        self.billed = 0.0

    def take(self, sent: float) -> tuple[float, int]:
        """A worker for a job sent at `sent`: when it starts the job, and which one."""
        fleet = self.fleet
        # Workers idle past their timeout stopped in the meantime.
        while self.free and self._stopped_by(self.free[0], sent):
            idle_from, worker = heapq.heappop(self.free)
            self.billed += idle_from + fleet.idle_timeout_s - self.started_at.pop(worker)
        soonest = self.free[0][0] if self.free else math.inf
        if soonest > sent + fleet.scale_after_s and len(self.started_at) < fleet.max_workers:
            began = sent + fleet.scale_after_s  # the scaler saw the job wait
            self.started_at[self.next_id] = began
            heapq.heappush(self.free, (began + fleet.cold_start_s, self.next_id))
            self.next_id, self.cold_starts = self.next_id + 1, self.cold_starts + 1
            self.most = max(self.most, len(self.started_at))
        idle_from, worker = heapq.heappop(self.free)
        return max(sent, idle_from), worker

    def _stopped_by(self, entry: tuple[float, int], moment: float) -> bool:
        idle_from, worker = entry
        return worker >= self.fleet.min_workers and idle_from + self.fleet.idle_timeout_s < moment

    def release(self, worker: int, end: float) -> None:
        heapq.heappush(self.free, (end, worker))

    def close(self, last_end: float) -> None:
        """Every worker left stops after its idle tail (the warm ones too)."""
        for idle_from, worker in self.free:
            tail = max(idle_from, last_end) + self.fleet.idle_timeout_s
            self.billed += tail - self.started_at[worker]


def simulate(
    times: Sequence[float],
    service_s: float,
    fleet: Fleet,
    backend_cap: int = 0,
    service_cv: float = 0.0,
    seed: int = 0,
    release_lag_s: float = 0.0,
) -> Simulation:
    """Replay `times` (sorted arrival times) through the queue, the cap and the fleet.
    `release_lag_s`: how long a job holds its place under the cap besides waiting at the
    endpoint and running (its way to the endpoint, its result's way back to the database)."""
    if not times:
        raise ValueError("no arrivals to simulate")
    if fleet.min_workers > fleet.max_workers:
        raise ValueError("min_workers is above max_workers")
    draw = random.Random(seed)
    shape = 1 / service_cv**2 if service_cv > 0 else 0.0
    endpoint = _Endpoint(fleet)
    unfinished: list[float] = []  # when each job sent and not done frees its place
    queue_waits: list[float] = []
    gpu_waits: list[float] = []
    sent = last_end = busy = 0.0
    for arrived in times:
        sent = max(arrived, sent)  # FIFO: never before the job ahead of it
        while backend_cap and len(unfinished) >= backend_cap:
            sent = max(sent, heapq.heappop(unfinished))
        start, worker = endpoint.take(sent)
        length = draw.gammavariate(shape, service_s / shape) if shape else service_s
        endpoint.release(worker, start + length)
        if backend_cap:
            heapq.heappush(unfinished, start + length + release_lag_s)
        busy += length
        last_end = max(last_end, start + length)
        queue_waits.append(sent - arrived)
        gpu_waits.append(start - arrived)
    endpoint.close(last_end)
    return Simulation(
        jobs=len(times),
        span_s=last_end - times[0],
        queue_wait=_waits(queue_waits),
        gpu_wait=_waits(gpu_waits),
        workers_at_most=endpoint.most,
        cold_starts=endpoint.cold_starts,
        billed_gpu_s=endpoint.billed,
        busy_gpu_s=busy,
        utilisation=busy / endpoint.billed if endpoint.billed else 0.0,
    )


def describe(
    curve: Curve, fleet: Fleet, backend_cap: int, service_s: float, run: Simulation
) -> str:
    """The replay as an operator reads it."""
    cap = f", at most {backend_cap} sent at once" if backend_cap else ""
    q, g = run.queue_wait, run.gpu_wait
    return "\n".join(
        [
            f"simulated: {run.jobs:,} jobs ({curve.shape}, {curve.arrivals} arrivals, "
            f"{curve.rate_per_s:g}/s on average over {curve.duration_s:,.0f} s) on "
            f"{fleet.min_workers}-{fleet.max_workers} workers of {service_s:.3f} s a job"
            f"{cap}; cold start {fleet.cold_start_s:g} s, idle timeout "
            f"{fleet.idle_timeout_s:g} s, scale after {fleet.scale_after_s:g} s",
            f"queue wait (created -> sent): p50 {q.p50:.2f} s, p99 {q.p99:.2f} s, "
            f"max {q.max:.2f} s",
            f"wait for a GPU (created -> started): p50 {g.p50:.2f} s, p99 {g.p99:.2f} s, "
            f"max {g.max:.2f} s",
            f"workers at most {run.workers_at_most}, cold starts {run.cold_starts}, "
            f"GPU time billed {run.billed_gpu_s:,.0f} s for {run.busy_gpu_s:,.0f} s of jobs "
            f"({run.utilisation:.0%})",
        ]
    )
