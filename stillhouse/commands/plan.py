"""`stillhouse plan`: GPUs, masters, shards, databases, storage, egress and monthly cost
for the load you expect (stillhouse.planning)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stillhouse.planning import DEFAULT_TABLE, Load, Plan, load_table, parse_mix, plan, report
from stillhouse.simulation import Curve, Fleet, Simulation, arrivals, describe, simulate


@click.command("plan")
@click.option("--daily-users", type=float, required=True, help="people using it each day")
@click.option(
    "--requests", "requests_per_user", type=float, required=True, help="requests a user makes a day"
)
@click.option(
    "--images",
    "images_per_request",
    type=int,
    default=1,
    show_default=True,
    help="images a request makes",
)
@click.option(
    "--peak-factor",
    type=float,
    default=3.0,
    show_default=True,
    help="peak rate over the day's average",
)
@click.option("--mix", default="sd15-512:20:1", show_default=True, help="model:steps:share,…")
@click.option("--gpu", default="H100 PRO", show_default=True, help="a GPU of the table")
@click.option(
    "--utilisation", type=float, default=0.8, show_default=True, help="target GPU utilisation"
)
@click.option(
    "--guilds", type=int, default=1, show_default=True, help="Discord servers the bot is in"
)
@click.option(
    "--retention-days", type=int, default=30, show_default=True, help="how long images are kept"
)
@click.option(
    "--gpu-table",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML: [models.*] and [gpus.*] instead of the built-in table",
)
@click.option(
    "--simulate",
    "shape",
    type=click.Choice(["day", "burst", "steady"]),
    help="also replay arrivals job by job against the workers: a day's shape around the "
    "average rate (busiest at the peak factor), a burst on the average rate, or steady",
)
@click.option(
    "--duration",
    "duration_s",
    type=float,
    help="seconds to replay [default: a day for `day`, an hour otherwise]",
)
@click.option("--burst", help="RATE:START_S:SECONDS added to the average rate (with `burst`)")
@click.option("--workers", type=int, help="max workers [default: the plan's GPUs at the peak]")
@click.option("--min-workers", type=int, default=0, show_default=True, help="always warm")
@click.option("--cold-start", "cold_start_s", type=float, default=20.0, show_default=True)
@click.option("--idle-timeout", "idle_timeout_s", type=float, default=5.0, show_default=True)
@click.option(
    "--scale-after",
    "scale_after_s",
    type=float,
    default=4.0,
    show_default=True,
    help="seconds a job waits before the endpoint starts a worker (RunPod's queue delay)",
)
@click.option(
    "--backend-cap",
    type=int,
    default=0,
    show_default=True,
    help="STILLHOUSE_MASTER__BACKEND_MAX_IN_FLIGHT (0: none)",
)
@click.option(
    "--service-cv",
    type=float,
    default=0.1,
    show_default=True,
    help="spread of a job's GPU time (coefficient of variation)",
)
@click.option("--arrivals", "spacing", type=click.Choice(["poisson", "even"]), default="poisson")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="the plan as JSON")
def plan_command(
    daily_users: float,
    requests_per_user: float,
    images_per_request: int,
    peak_factor: float,
    mix: str,
    gpu: str,
    utilisation: float,
    guilds: int,
    retention_days: int,
    gpu_table: Path | None,
    shape: str | None,
    duration_s: float | None,
    burst: str | None,
    workers: int | None,
    min_workers: int,
    cold_start_s: float,
    idle_timeout_s: float,
    scale_after_s: float,
    backend_cap: int,
    service_cv: float,
    spacing: str,
    seed: int,
    as_json: bool,
) -> None:
    """Capacity and monthly cost for a load (figures: docs/sizing.md)."""
    try:
        table = load_table(gpu_table) if gpu_table else DEFAULT_TABLE
        load = Load(
            daily_users=daily_users,
            requests_per_user=requests_per_user,
            images_per_request=images_per_request,
            peak_factor=peak_factor,
            mix=parse_mix(mix),
            gpu=gpu,
            utilisation=utilisation,
            guilds=guilds,
            retention_days=retention_days,
        )
        result = plan(load, table)
        burst_fields = parse_burst(burst, shape)
        replay = None
        if shape is not None:
            curve = Curve(
                shape=shape,
                rate_per_s=result.requests_per_s,
                duration_s=duration_s or (86_400.0 if shape == "day" else 3_600.0),
                peak_factor=peak_factor,
                arrivals=spacing,
                seed=seed,
                **burst_fields,
            )
            fleet = Fleet(
                max_workers=workers or result.gpus_peak,
                min_workers=min_workers,
                cold_start_s=cold_start_s,
                idle_timeout_s=idle_timeout_s,
                scale_after_s=scale_after_s,
            )
            replay = (curve, fleet, replayed(curve, fleet, result, backend_cap, service_cv, seed))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise click.UsageError(str(exc)) from None
    if as_json:
        answer = {"load": load.model_dump(), "plan": result.model_dump()}
        if replay is not None:
            answer["simulation"] = replay[2].model_dump()
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(report(load, result))
    if replay is not None:
        curve, fleet, run = replay
        click.echo(describe(curve, fleet, backend_cap, result.gpu_s_per_request, run))
        price = table.gpus[load.gpu].flex_per_s
        click.echo(
            f"GPU cost of the replayed {curve.duration_s:,.0f} s: "
            f"${run.billed_gpu_s * price:,.2f} billed (cold starts and idle tails included) "
            f"against ${run.busy_gpu_s * price:,.2f} for the jobs alone"
        )


def replayed(
    curve: Curve, fleet: Fleet, result: Plan, backend_cap: int, service_cv: float, seed: int
) -> Simulation:
    """The replay of `curve` with each job taking the plan's GPU seconds."""
    return simulate(
        arrivals(curve),
        result.gpu_s_per_request,
        fleet,
        backend_cap=backend_cap,
        service_cv=service_cv,
        seed=seed,
    )


def parse_burst(text: str | None, shape: str | None) -> dict[str, float]:
    """`--burst RATE:START_S:SECONDS` as the curve's fields."""
    if shape != "burst":
        if text:
            raise ValueError("--burst goes with --simulate burst")
        return {}
    if not text:
        raise ValueError("--simulate burst needs --burst RATE:START_S:SECONDS")
    try:
        rate, start, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"expected --burst RATE:START_S:SECONDS, got {text!r}") from None
    return {"burst_rate_per_s": rate, "burst_start_s": start, "burst_s": seconds}
