"""Chaos: kill -9 every kind of process at random moments while 520 /serve arrive, then
check that every accepted request was answered exactly once.

Real OS processes: 3 masters, 2 bot shard processes (real discord.py) against the Discord
emulator, the RunPod-compatible endpoint in its own process (its jobs survive its own
restarts, as RunPod's do; 20 simulated GPUs of 1 s inside it), a MariaDB server and a
memcached of this test's own. Blows, at random moments of the arrivals: masters killed
(5 at random, 2 inside their submit window: the endpoint kills the master whose /run it
just took), bots killed (3 at random, 1 right after the emulator took its answer and
before the bot could record it), the endpoint killed for 2 s, memcached for 2 s, MariaDB
killed and restarted. STILLHOUSE_CHAOS_SEED repeats a run's plan.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, select

from stillhouse.db.engine import make_engine
from stillhouse.db.models import Delivery, GenerationJob
from stillhouse.schemas.states import DeliveryStatus, JobStatus
from tests.bot.harness import answer_index
from tests.conftest import MemcachedServer, settings_for
from tests.doubles.discord import DiscordEmulator, GuildSpec, Interaction, Message
from tests.doubles.runpod.process import RunPodDoubleProcess
from tests.master.cluster import Cluster
from tests.support import wait_until
from tests.system.chaos import Director, bot_command, plan
from tests.system.harness import front_env, guild_on, simulated_output
from tests.system.services import PrivateMariaDB

REQUESTS = 520
RATE_PER_S = 6.0
GPUS, SERVICE_S = 20, 1.0
MASTERS, SHARDS = 3, 2
USERS = 40
BLOWS = {
    "master": 5,
    "submit-window": 2,
    "bot": 3,
    "after-accept": 1,
    "endpoint": 1,
    "memcached": 1,
    "mariadb": 1,
}
GUILDS = [guild_on(n, SHARDS) for n in range(SHARDS)]
CHANNELS = [g + 101 for g in GUILDS]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def chaos_emu() -> Iterator[DiscordEmulator]:
    specs = [GuildSpec(id=g, channel_ids=[c]) for g, c in zip(GUILDS, CHANNELS, strict=True)]
    with DiscordEmulator(guilds=specs) as emulator:
        yield emulator


def test_kill_every_kind_of_process_and_answer_every_request_exactly_once(
    chaos_emu: DiscordEmulator,
    private_mariadb: PrivateMariaDB,
    memcached: MemcachedServer,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("STILLHOUSE_CHAOS_SEED") or secrets.randbelow(10**6))
    rng = random.Random(seed)
    emu = chaos_emu
    images = tmp_path / "images"
    endpoint = RunPodDoubleProcess(
        tmp_path / "runpod.sqlite3", simulated=(GPUS, SERVICE_S, simulated_output(images))
    ).start()
    engine = make_engine(settings_for(private_mariadb.url))
    storage = {"STILLHOUSE_STORAGE__BACKEND": "local", "STILLHOUSE_STORAGE__LOCAL_DIR": str(images)}
    cluster = Cluster(tmp_path, endpoint, None, private_mariadb.url, memcached.address)  # type: ignore[arg-type]
    cluster.master_env = dict(storage)
    starters = {}
    for n in range(MASTERS):
        name = f"m{n}"
        starters[name] = lambda name=name: cluster.start_master(
            name,
            queue__lease_s="6",
            queue__max_attempts="3",
            master__backend_call_timeout_s="5",
            master__poll_interval_s="0.3",
            log__level="INFO",
        )
    for shard in range(SHARDS):
        name = f"b{shard}"
        env = {
            **front_env(cluster, name),
            **storage,
            "STILLHOUSE_BOT__TOKEN": emu.token,
            "STILLHOUSE_BOT__DELIVERY_INTERVAL_S": "0.1",
            "STILLHOUSE_QUEUE__DELIVERY_LEASE_S": "4",
            "STILLHOUSE_INTAKE__PER_MINUTE": "10000",
            "STILLHOUSE_INTAKE__MAX_ACTIVE_JOBS": "1000",
        }
        command = bot_command(emu, shard, SHARDS)
        starters[name] = lambda name=name, env=env, command=command: cluster.spawn(
            name, command, env
        )
    try:
        for start in starters.values():
            start()
        emu.wait_ready(sessions=SHARDS, timeout_s=90)
        wait_until(lambda: emu.commands.get(None), 60, what="commands synced by shard 0")
        arrivals_s = REQUESTS / RATE_PER_S
        director = Director(
            cluster,
            emu,
            endpoint,
            memcached,
            private_mariadb,
            engine,
            starters,
            rng,
            plan(rng, (5.0, arrivals_s - 5.0), BLOWS),
        )
        began = time.monotonic()
        served: list[Interaction] = []
        for n in range(REQUESTS):
            while (elapsed := time.monotonic() - began) < n / RATE_PER_S:
                director.tick(elapsed)
                time.sleep(0.02)  # the arrival clock (open loop), not a wait for a result
            shard = n % SHARDS
            served.append(
                emu.slash_command(
                    GUILDS[shard],
                    CHANNELS[shard],
                    20_000 + rng.randrange(USERS),
                    "serve",
                    options={"prompt": f"chaos {n}", "mode": "fast"},
                )
            )
        while director.events:
            director.tick(time.monotonic() - began)
            time.sleep(0.05)
        director.finish()
        wait_until(
            lambda: settled(engine, director, time.monotonic() - began),
            240,
            0.5,
            what="every job ended and its answer sent",
        )
        report(seed, director, served, emu, engine, endpoint)
    finally:
        cluster.stop_all()
        endpoint.kill()
        engine.dispose()


def settled(engine: Engine, director: Director, elapsed: float) -> bool:
    """True once every job ended and every send row is sent (restarts go on meanwhile)."""
    director.tick(elapsed)
    try:
        with engine.connect() as conn:
            jobs = Counter(s for (s,) in conn.execute(select(GenerationJob.status)))
            rows = Counter(s for (s,) in conn.execute(select(Delivery.status)))
    except Exception:  # the database may be restarting
        return False
    open_jobs = sum(n for s, n in jobs.items() if not JobStatus(s).is_terminal)
    open_rows = sum(n for s, n in rows.items() if s in ("pending", "sending"))
    return open_jobs == 0 and open_rows == 0 and sum(jobs.values()) > 0


def report(
    seed: int,
    director: Director,
    served: list[Interaction],
    emu: DiscordEmulator,
    engine: Engine,
    endpoint: RunPodDoubleProcess,
) -> None:
    """Print what happened, then check it."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                GenerationJob.public_id,
                GenerationJob.interaction_id,
                GenerationJob.status,
                GenerationJob.lost_submits,
                GenerationJob.attempts,
                GenerationJob.started_at,
            )
        ).all()
        deliveries = Counter(j for (j,) in conn.execute(select(Delivery.job_public_id)))
        sent = Counter(s for (s,) in conn.execute(select(Delivery.status)))
    by_interaction = {r.interaction_id: r for r in rows}
    accepted = [ix for ix in served if ix.id in by_interaction]
    queued_answers = [
        ix
        for ix in served
        if ix.response and str(ix.response["data"].get("content", "")).startswith("Queued")
    ]
    index = answer_index(emu)
    shown = Counter(len(index.get(r.public_id, [])) for r in rows)
    runpod = endpoint.jobs()
    executions = Counter(j["job_id"] for j in runpod if j["started_wall"] is not None)
    completed = {j["job_id"] for j in runpod if j["status"] == "COMPLETED"}
    duplicates = {job: n - 1 for job, n in executions.items() if n > 1}
    lost = {r.public_id: r.lost_submits for r in rows if r.lost_submits}
    statuses = Counter(JobStatus(r.status).value for r in rows)
    failed_done = [r.public_id for r in rows if r.status == "failed" and r.public_id in completed]
    window = submit_window(rows, runpod)
    print(
        f"\nchaos (seed {seed}): {len(served)} /serve, {len(accepted)} accepted "
        f"({len(queued_answers)} answered 'Queued'), jobs {dict(statuses)}\n"
        f"blows: {dict(director.kills)}; submit-window kills by the endpoint "
        f"{len(endpoint.kills())}\n"
        f"send rows per job {dict(Counter(deliveries.values()))}, rows {dict(sent)}; "
        f"visible answers per job {dict(shown)}\n"
        f"GPU executions {sum(executions.values())} for {len(rows)} jobs; duplicates "
        f"{sum(duplicates.values())} on {len(duplicates)} jobs, submits of unknown fate "
        f"{sum(lost.values())} on {len(lost)} jobs; failed with a completed GPU job "
        f"{len(failed_done)}\nsubmit window (RunPod stored the job -> our row holds its id) "
        f"p50 {window[0] * 1000:.0f} ms, p99 {window[1] * 1000:.0f} ms\n" + "\n".join(director.log)
    )
    assert all(ix.id in by_interaction for ix in queued_answers), "a queued request has no job"
    assert len(rows) == len(accepted), "a job without its request"
    assert all(JobStatus(r.status).is_terminal for r in rows)
    assert set(deliveries.values()) == {1} and len(deliveries) == len(rows)
    assert set(sent) == {DeliveryStatus.SENT.value}, "an answer that could not be sent"
    odd = [r for r in rows if len(index.get(r.public_id, [])) != 1]
    assert shown == {1: len(rows)}, "a request answered other than once:\n" + "\n".join(
        explain(r.public_id, r.interaction_id, served, index, engine) for r in odd
    )
    assert failed_done == [], "a job failed although its GPU job completed"
    unattributed = {j: n for j, n in duplicates.items() if lost.get(j, 0) < n}
    assert unattributed == {}, "duplicate GPU runs not counted as submit-window losses"
    assert director.kills["master"] >= 5 and director.kills["bot"] >= 3
    assert director.kills["bot-after-accept"] == 1 and len(endpoint.kills()) >= 1


def explain(
    public_id: str,
    interaction_id: int,
    served: list[Interaction],
    index: dict[str, list[Message]],
    engine: Engine,
) -> str:
    """Everything about one request that was not answered exactly once."""
    [ix] = [i for i in served if i.id == interaction_id]
    with engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.job_public_id == public_id)).first()
    original = ix.original
    lines = [
        f"{public_id}: response {ix.response}",
        f"  answers {[(m.id, m.via, m.content[:60]) for m in index.get(public_id, [])]}",
        f"  send row {row}",
    ]
    if original is not None:
        lines.append(f"  original ephemeral={original.ephemeral} deleted={original.deleted}")
        lines += [f"    {r}" for r in original.revisions]
    return "\n".join(lines)


def submit_window(rows: Sequence[Row[Any]], runpod: list[dict[str, Any]]) -> tuple[float, float]:
    """p50 and p99 of the time between RunPod storing a job's one submit and our row
    recording its id (mark_running's clock), over jobs submitted once."""
    created: dict[str, list[float]] = {}
    for job in runpod:
        created.setdefault(job["job_id"], []).append(job["created_wall"])
    gaps = sorted(
        r.started_at.timestamp() - created[r.public_id][0]
        for r in rows
        if r.started_at is not None and len(created.get(r.public_id, [])) == 1
    )
    if not gaps:
        return 0.0, 0.0
    return gaps[len(gaps) // 2], gaps[min(len(gaps) - 1, round(0.99 * (len(gaps) - 1)))]
