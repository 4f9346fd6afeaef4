"""`stillhouse plan`: capacity and monthly cost from the load you expect (seed 003's
back-of-the-envelope, with this project's own measured per-job costs and an editable GPU
table). The formulas are docs/sizing.md's: GPUs from busy GPU-seconds at a target
utilisation, with the Erlang C wait (M/M/c) at the peak; masters from jobs in flight;
shards from guilds; database writes against the measured queue ceiling; storage and
egress from image sizes.

Which figures are whose: prices are RunPod's published serverless rates
(docs.runpod.io/serverless/pricing, flex and active per second); it/s are approximate
public batch-1 figures for ComfyUI at fp16, not measured here (pass a table of your own
with --gpu-table); the worker's overhead, the writes per request and the queue's ceiling
are this repository's measurements (named below)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from pydantic import BaseModel, Field

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = 30
GB = 1e9

# Measured by this repository (2026-11-30, a 2-core machine): the worker's wall time over
# ComfyUI's own execution against a real ComfyUI (bench/worker_overhead.py) ...
WORKER_OVERHEAD = 0.011
# ... write transactions per request on the hot path (enqueue, claim, submit mark, backend
# id, outcome with its send row, send claim, sent; claims and a master's own writes are
# grouped under load, so this is an upper bound) ...
WRITES_PER_REQUEST = 7
# ... and one MariaDB's ceiling: enqueue -> claim -> complete, three write transactions
# a job, at about 500 jobs/s with 4 client processes (bench/queue_throughput.py: 523 on
# 2026-11-30, clients and server sharing 2 CPUs).
DB_CEILING_WRITES_PER_S = 500.0 * 3


class ModelCost(BaseModel):
    """One model at one resolution: the GPU's fixed work per image besides the sampler
    steps (text encoders, VAE decode) and the PNG it saves."""

    fixed_s: float
    image_bytes: int


class Gpu(BaseModel):
    """A RunPod GPU class: price per second and sampler speed per model."""

    memory_gb: int
    flex_per_s: float
    active_per_s: float
    it_per_s: dict[str, float]


class GpuTable(BaseModel):
    """Models and GPUs the planner knows (replace it with --gpu-table FILE.toml)."""

    models: dict[str, ModelCost]
    gpus: dict[str, Gpu]


DEFAULT_TABLE = GpuTable(
    models={
        "sd15-512": ModelCost(fixed_s=0.05, image_bytes=400_000),
        "sdxl-1024": ModelCost(fixed_s=0.25, image_bytes=1_600_000),
        "flux-1024": ModelCost(fixed_s=0.5, image_bytes=1_600_000),
    },
    gpus={
        "H200 PRO": Gpu(
            memory_gb=141,
            flex_per_s=0.00155,
            active_per_s=0.00124,
            it_per_s={"sd15-512": 48, "sdxl-1024": 13, "flux-1024": 3.5},
        ),
        "H100 PRO": Gpu(
            memory_gb=80,
            flex_per_s=0.00116,
            active_per_s=0.00093,
            it_per_s={"sd15-512": 45, "sdxl-1024": 12, "flux-1024": 3.2},
        ),
        "A100": Gpu(
            memory_gb=80,
            flex_per_s=0.00076,
            active_per_s=0.00060,
            it_per_s={"sd15-512": 30, "sdxl-1024": 7.5, "flux-1024": 2.0},
        ),
        "L40S": Gpu(
            memory_gb=48,
            flex_per_s=0.00053,
            active_per_s=0.00037,
            it_per_s={"sd15-512": 30, "sdxl-1024": 7, "flux-1024": 1.8},
        ),
        "4090 PRO": Gpu(
            memory_gb=24,
            flex_per_s=0.00031,
            active_per_s=0.00021,
            it_per_s={"sd15-512": 30, "sdxl-1024": 8, "flux-1024": 2.0},
        ),
        "A6000": Gpu(
            memory_gb=48,
            flex_per_s=0.00034,
            active_per_s=0.00024,
            it_per_s={"sd15-512": 18, "sdxl-1024": 4.5, "flux-1024": 1.1},
        ),
        "L4": Gpu(
            memory_gb=24,
            flex_per_s=0.00019,
            active_per_s=0.00013,
            it_per_s={"sd15-512": 10, "sdxl-1024": 2.5, "flux-1024": 0.6},
        ),
        "A4000": Gpu(
            memory_gb=16,
            flex_per_s=0.00016,
            active_per_s=0.00011,
            it_per_s={"sd15-512": 7, "sdxl-1024": 1.6},
        ),
    },
)


class Share(BaseModel):
    """A part of the workload: this model at this many steps, this share of requests."""

    model: str
    steps: int = Field(ge=1)
    share: float = Field(gt=0)


class Load(BaseModel):
    """What the plan is for."""

    daily_users: float = Field(gt=0)
    requests_per_user: float = Field(gt=0)
    images_per_request: int = Field(default=1, ge=1)
    peak_factor: float = Field(default=3.0, ge=1)
    mix: list[Share] = Field(default_factory=lambda: [Share(model="sd15-512", steps=20, share=1)])
    gpu: str = "H100 PRO"
    utilisation: float = Field(default=0.8, gt=0, lt=1)
    guilds: int = Field(default=1, ge=1)
    retention_days: int = Field(default=30, ge=0)
    seconds_per_job_outside_gpu: float = Field(default=3.0, ge=0)
    max_in_flight: int = Field(default=64, ge=1)
    storage_per_gb_month: float = 0.023  # S3 Standard, first 50 TB
    egress_per_gb: float = 0.09  # S3 to the internet, first 10 TB a month


class Plan(BaseModel):
    """What it takes."""

    requests_per_s: float
    peak_requests_per_s: float
    gpu_s_per_request: float
    busy_gpus_peak: float
    gpus_peak: int
    waiting_share: float  # of requests at the peak that wait for a GPU
    mean_wait_s: float
    masters: int
    bot_shards: int
    db_writes_per_s_peak: float
    db_ceiling_writes_per_s: float
    databases: int
    storage_tb: float  # kept at once, for the retention
    egress_tb_month: float
    gpu_cost_month: float
    storage_cost_month: float
    egress_cost_month: float
    total_cost_month: float


def erlang_c(servers: int, offered: float) -> float:
    """The chance an arrival waits (M/M/c), from the Erlang B recursion (stable for tens
    of thousands of servers)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    rho = offered / servers
    return blocking / (1 - rho * (1 - blocking))


def gpu_seconds(load: Load, table: GpuTable) -> float:
    """GPU seconds of one request, over the mix, with the worker's measured overhead."""
    gpu = table.gpus[load.gpu]
    total_share = sum(part.share for part in load.mix)
    seconds = 0.0
    for part in load.mix:
        model = table.models[part.model]
        speed = gpu.it_per_s.get(part.model)
        if speed is None:
            raise ValueError(f"{load.gpu} has no speed for {part.model} in the GPU table")
        per_image = part.steps / speed + model.fixed_s
        seconds += part.share / total_share * per_image * load.images_per_request
    return seconds * (1 + WORKER_OVERHEAD)


def plan(load: Load, table: GpuTable = DEFAULT_TABLE) -> Plan:
    """Capacity and monthly cost for `load`."""
    if load.gpu not in table.gpus:
        raise ValueError(f"no GPU {load.gpu!r} in the table (known: {', '.join(table.gpus)})")
    unknown = [p.model for p in load.mix if p.model not in table.models]
    if unknown:
        raise ValueError(f"no model {unknown[0]!r} in the table (known: {', '.join(table.models)})")
    gpu = table.gpus[load.gpu]
    rate = load.daily_users * load.requests_per_user / SECONDS_PER_DAY
    peak = rate * load.peak_factor
    gpu_s = gpu_seconds(load, table)
    busy = peak * gpu_s
    gpus = max(1, math.ceil(busy / load.utilisation))
    waiting = erlang_c(gpus, busy)
    mean_wait = waiting * gpu_s / (gpus - busy) if gpus > busy else math.inf
    in_flight = peak * (gpu_s + load.seconds_per_job_outside_gpu)
    masters = max(2, math.ceil(in_flight / load.max_in_flight))
    writes = peak * WRITES_PER_REQUEST
    ceiling = DB_CEILING_WRITES_PER_S
    total_share = sum(p.share for p in load.mix)
    image_bytes = load.images_per_request * sum(
        p.share / total_share * table.models[p.model].image_bytes for p in load.mix
    )
    daily_bytes = rate * SECONDS_PER_DAY * image_bytes
    storage_gb = daily_bytes * load.retention_days / GB
    egress_gb_month = daily_bytes * DAYS_PER_MONTH / GB  # each image fetched once by a bot
    gpu_cost = rate * gpu_s * SECONDS_PER_DAY * DAYS_PER_MONTH * gpu.flex_per_s
    storage_cost = storage_gb * load.storage_per_gb_month
    egress_cost = egress_gb_month * load.egress_per_gb
    return Plan(
        requests_per_s=rate,
        peak_requests_per_s=peak,
        gpu_s_per_request=gpu_s,
        busy_gpus_peak=busy,
        gpus_peak=gpus,
        waiting_share=waiting,
        mean_wait_s=mean_wait,
        masters=masters,
        bot_shards=math.ceil(load.guilds / 1000),
        db_writes_per_s_peak=writes,
        db_ceiling_writes_per_s=ceiling,
        databases=max(1, math.ceil(writes / ceiling)),
        storage_tb=storage_gb / 1000,
        egress_tb_month=egress_gb_month / 1000,
        gpu_cost_month=gpu_cost,
        storage_cost_month=storage_cost,
        egress_cost_month=egress_cost,
        total_cost_month=gpu_cost + storage_cost + egress_cost,
    )


def load_table(path: Path) -> GpuTable:
    """A GPU table from TOML: `[models.<name>]` and `[gpus.<name>]` as in DEFAULT_TABLE."""
    return GpuTable.model_validate(tomllib.loads(path.read_text()))


def parse_mix(text: str) -> list[Share]:
    """`sd15-512:20:0.7,sdxl-1024:30:0.3` -> the shares (model:steps:share)."""
    shares = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            model, steps, share = item.split(":")
            shares.append(Share(model=model, steps=int(steps), share=float(share)))
        except ValueError:
            raise ValueError(f"expected model:steps:share, got {item!r}") from None
    if not shares:
        raise ValueError("the mix is empty")
    return shares


def report(load: Load, result: Plan) -> str:
    """The plan as an operator reads it."""
    money = "${:,.0f}".format
    lines = [
        f"load: {load.daily_users:,.0f} daily users x {load.requests_per_user:g} requests "
        f"= {result.requests_per_s:,.1f} requests/s on average, "
        f"{result.peak_requests_per_s:,.1f} at the peak (x{load.peak_factor:g})",
        f"GPU time: {result.gpu_s_per_request:.3f} s a request on {load.gpu} "
        f"(incl. the worker's measured {WORKER_OVERHEAD:.1%})",
        f"GPUs at the peak: {result.gpus_peak:,} ({result.busy_gpus_peak:,.1f} busy at "
        f"{load.utilisation:.0%}); {result.waiting_share:.1%} of requests wait for one, "
        f"{result.mean_wait_s:.3f} s on average",
        f"masters: {result.masters:,} (jobs in flight / {load.max_in_flight}, at least 2)",
        f"bot shards: {result.bot_shards:,} (one per 1,000 of {load.guilds:,} guilds)",
        f"database write transactions: {result.db_writes_per_s_peak:,.0f}/s at the peak "
        f"against {result.db_ceiling_writes_per_s:,.0f}/s measured on one small database: "
        f"{result.databases:,} database{'s' if result.databases != 1 else ''} "
        "(STILLHOUSE_QUEUE__PARTITIONS)",
        f"storage: {result.storage_tb:,.2f} TB kept ({load.retention_days} days); "
        f"egress {result.egress_tb_month:,.2f} TB a month",
        f"monthly cost: GPUs {money(result.gpu_cost_month)} (flex, busy seconds only), "
        f"storage {money(result.storage_cost_month)}, egress {money(result.egress_cost_month)}"
        f" = {money(result.total_cost_month)}",
    ]
    return "\n".join(lines)
