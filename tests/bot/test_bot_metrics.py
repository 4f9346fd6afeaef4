"""A bot process's /metrics: interaction-to-answer time, Discord's answers by status (its
429s among them), each shard's gateway latency and the lock calls that failed open."""

from __future__ import annotations

import dataclasses
import re

import requests

from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, USER, finish, queued_id, running_bot, wait_answer
from tests.doubles.discord import DiscordEmulator
from tests.support import free_port, wait_until


def value(page: str, sample: str) -> float | None:
    """The value of the sample line that starts with `sample`, if the page has one."""
    found = re.search(rf"^{re.escape(sample)} ([0-9.e+-]+)$", page, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_the_bot_exports_answer_time_discord_answers_and_gateway_latency(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    port = free_port()
    bot_settings = maria_services.settings.bot.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1"}
    )
    settings = maria_services.settings.model_copy(update={"bot": bot_settings})
    services = dataclasses.replace(maria_services, settings=settings)
    with running_bot(services, emu):
        # The first answer to the request is rate limited once; discord.py waits and retries.
        emu.fail_next("POST", r"/interactions/\d+/[^/]+/callback", 429, retry_after=0.2)
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "counted"})
        public_id = queued_id(ix)
        finish(services, public_id)
        assert wait_answer(emu, ix, public_id).attachments

        def scraped() -> str | None:
            page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return page if value(page, "stillhouse_bot_answer_seconds_count") else None

        page = wait_until(scraped, 10, what="the answer timed")
    assert value(page, "stillhouse_bot_answer_seconds_count") == 1.0
    assert 0 < (value(page, "stillhouse_bot_answer_seconds_sum") or 0) < 30
    assert value(page, 'stillhouse_discord_responses_total{status="429"}') == 1.0
    assert (value(page, 'stillhouse_discord_responses_total{status="200"}') or 0) >= 1
    latency = value(page, 'stillhouse_bot_gateway_latency_seconds{shard="0"}')
    assert latency is not None and 0 <= latency < 5
    assert value(page, "stillhouse_locks_degraded_total") is not None
