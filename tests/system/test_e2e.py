"""Every real part that runs here, wired as deployed: the bot (real discord.py, through the
Discord emulator) and the API as their own processes, MariaDB, memcached, moto's S3, two
masters, the RunPod-compatible endpoint with real runpod worker processes running our
handler against the ComfyUI double. 50 /serve and 50 API requests each arrive once, with
their images; no configured secret (nor any interaction token) appears in any process's
log, and one request can be followed across the processes by its id."""

from __future__ import annotations

import io
import json
import secrets
import sys

import pytest
import requests
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from stillhouse.schemas.states import DeliveryStatus, JobStatus
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, OTHER_USER, USER, queued_id, wait_answer
from tests.conftest import MemcachedServer
from tests.doubles.discord import DiscordEmulator
from tests.master.cluster import Cluster
from tests.master.outcomes import assert_exactly_one_visible_outcome
from tests.support import free_port, wait_until
from tests.system.harness import front_env

REQUESTS = 50
WORKERS = 4
DEADLINE_S = 240
DB_PASSWORD = "db-pass-" + secrets.token_hex(8)
S3_SECRET = "s3-secret-" + secrets.token_hex(8)
API_KEY = "api-key-" + secrets.token_hex(12)


JSON_LOGS = {"STILLHOUSE_LOG__FORMAT": "json"}  # as deployed: one request followed by a field


def e2e_front_env(cluster: Cluster, name: str) -> dict[str, str]:
    """The shared front settings, with the API key the test uses."""
    return {**front_env(cluster, name), "STILLHOUSE_API__KEYS": f"e2e:{API_KEY}", **JSON_LOGS}


def lines_about(log: str, public_id: str) -> list[dict[str, object]]:
    """The JSON log lines whose `public_id` field is this request's."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line a library printed itself
        if isinstance(record, dict) and record.get("public_id") == public_id:
            found.append(record)
    return found


def with_password(url: str) -> str:
    """The MariaDB URL as a user with a password (every process uses this one)."""
    parsed = make_url(url)
    engine = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP USER IF EXISTS 'stillhouse_e2e'@'%'"))
        conn.execute(text(f"CREATE USER 'stillhouse_e2e'@'%' IDENTIFIED BY '{DB_PASSWORD}'"))
        conn.execute(text(f"GRANT ALL ON `{parsed.database}`.* TO 'stillhouse_e2e'@'%'"))
    engine.dispose()
    return parsed.set(username="stillhouse_e2e", password=DB_PASSWORD).render_as_string(
        hide_password=False
    )


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.slow
def test_serve_and_api_requests_each_arrive_once_through_every_real_part(
    emu: DiscordEmulator,
    cluster: Cluster,
    memcached: MemcachedServer,
    mariadb_engine: Engine,
    maria_services: Services,
) -> None:
    cluster.memcached = memcached.address
    cluster.database_url = with_password(cluster.database_url)
    cluster.storage = cluster.storage.model_copy(
        update={"s3_secret_access_key": SecretStr(S3_SECRET)}  # moto takes any secret
    )
    for n in range(WORKERS):
        cluster.start_worker(f"w{n}", env=JSON_LOGS)
    cluster.master_env.update(JSON_LOGS)
    for name in ("m0", "m1"):
        cluster.start_master(name)
    bot_env = {
        **e2e_front_env(cluster, "bot"),
        "STILLHOUSE_BOT__TOKEN": emu.token,
        "STILLHOUSE_BOT__DELIVERY_INTERVAL_S": "0.1",
    }
    bot = [sys.executable, "-m", "tests.bot.bot_process", emu.api_base, emu.gateway_url]
    cluster.spawn("bot", bot, bot_env)
    port = free_port()
    api_env = {**e2e_front_env(cluster, "api"), "STILLHOUSE_API__PORT": str(port)}
    cluster.spawn("api", [sys.executable, "-m", "stillhouse", "api"], api_env)
    api = f"http://127.0.0.1:{port}"

    emu.wait_ready(sessions=1, timeout_s=60)
    wait_until(lambda: emu.commands.get(None), 60, what="the bot's commands synced")
    wait_until(lambda: _answers(f"{api}/v1/health"), 60, what="the API")

    served = [
        emu.slash_command(
            GUILD,
            CHANNEL,
            (USER, OTHER_USER)[n % 2],
            "serve",
            options={"prompt": f"lighthouse {n}", "mode": "fast"},
        )
        for n in range(REQUESTS)
    ]
    key = {"Authorization": f"Bearer {API_KEY}"}
    posted = [
        requests.post(
            f"{api}/v1/generations", json={"prompt": f"harbour {n}"}, headers=key, timeout=10
        )
        for n in range(REQUESTS)
    ]
    assert all(r.status_code == 202 for r in posted), [r.text for r in posted][:3]
    api_ids = [r.json()["id"] for r in posted]
    serve_ids = [queued_id(ix) for ix in served]

    cluster.wait_for_outcomes(maria_services.queue, mariadb_engine, timeout_s=DEADLINE_S)
    jobs = assert_exactly_one_visible_outcome(mariadb_engine, serve_ids + api_ids)
    assert set(jobs.values()) == {JobStatus.SUCCEEDED}
    for ix, public_id in zip(served, serve_ids, strict=True):
        result = wait_answer(emu, ix, public_id, 60)
        assert result is ix.original and ix.followups == []
        [image] = result.attachments
        assert png_size(image.data) == (512, 512)
    assert emu.channel_messages(CHANNEL) == []
    for public_id in api_ids:
        view = requests.get(f"{api}/v1/generations/{public_id}", headers=key, timeout=10).json()
        assert view["status"] == "succeeded"
        [image] = view["images"]
        assert png_size(requests.get(image["url"], timeout=10).content) == (512, 512)
    for public_id in serve_ids + api_ids:
        job = maria_services.queue.get(public_id)
        assert job is not None
        [row] = maria_services.sends.for_job(job.id)
        assert row.status is DeliveryStatus.SENT

    logs = {name: cluster.log(name) for name in cluster.processes}
    secret_values = [DB_PASSWORD, S3_SECRET, API_KEY, emu.token, "test-client-key"]
    secret_values += [ix.token for ix in served]
    leaks = [(name, v[:12]) for name, log in logs.items() for v in secret_values if v in log]
    assert not leaks, f"secrets in logs: {leaks}"
    # One request, followed through every process by the one field `public_id`: the bot
    # queued and delivered it, a master submitted and settled it, a worker ran it.
    followed = serve_ids[0]
    actions = {
        name: {str(r["action"]) for r in lines_about(log, followed)} for name, log in logs.items()
    }
    assert {"intake.enqueue", "bot.deliver.sent"} <= actions["bot"], actions["bot"]
    masters = actions["m0"] | actions["m1"]
    assert {"job.submit", "job.succeeded"} <= masters, masters
    workers = set().union(*(seen for name, seen in actions.items() if name.startswith("w")))
    assert "worker.done" in workers, workers
    api_request = lines_about(logs["api"], api_ids[0])
    assert any(r["action"] == "intake.enqueue" for r in api_request), api_request


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
