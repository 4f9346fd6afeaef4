"""A bot process's loops survive what nobody planned for: an unexpected error in the
delivery loop is logged and counted on /metrics, and delivery goes on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
import requests

from stillhouse.queue import SendQueue
from stillhouse.queue.records import DeliveryRecord
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, USER, finish, queued_id, running_bot, wait_answer
from tests.doubles.discord import DiscordEmulator
from tests.support import free_port, wait_until


class FlakySends(SendQueue):
    """A send queue whose first claim hits a bug."""

    failed = 0

    def claim(
        self, owner: str, limit: int = 10, partitions: Sequence[int] | None = None
    ) -> list[DeliveryRecord]:
        if not self.failed:
            self.failed += 1
            raise RuntimeError("a bug nobody planned for")
        return super().claim(owner, limit, partitions)


def test_an_unexpected_error_in_delivery_is_logged_counted_and_survived(
    emu: DiscordEmulator, maria_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    bot_settings = maria_services.settings.bot.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1"}
    )
    settings = maria_services.settings.model_copy(update={"bot": bot_settings})
    sends = FlakySends(maria_services.engine, settings.queue)
    services = dataclasses.replace(maria_services, settings=settings, sends=sends)
    with running_bot(services, emu):
        wait_until(lambda: sends.failed, 10, what="the bug hit")
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "still here"})
        public_id = queued_id(ix)
        finish(services, public_id)
        assert wait_answer(emu, ix, public_id).attachments, "delivery stopped"
        sent = 'stillhouse_bot_deliveries_total{outcome="sent"} 1.0'

        def scraped() -> str | None:
            page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return page if sent in page else None  # recorded just after Discord answered

        page = wait_until(scraped, 10, what="the delivery counted")
    assert 'stillhouse_loop_errors_total{loop="delivery"} 1.0' in page
    assert any("claiming send rows failed" in r.message for r in caplog.records)
