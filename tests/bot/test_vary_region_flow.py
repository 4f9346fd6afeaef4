"""Vary Region end to end, on MariaDB with the real bot and the Discord emulator: a
submission from the web editor becomes a job of the user's in the channel, and its
result is posted there by the bot, with a mention, like any answer whose interaction
has ended."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.config import make_settings
from stillhouse.edit_links import edit_link
from stillhouse.intake import GenerationRequest, Requester
from stillhouse.services import Services
from tests.bot.conftest import empty_moderation, make_services
from tests.bot.harness import CHANNEL, GUILD, USER, finish, running_bot
from tests.doubles.discord import DiscordEmulator, Message
from tests.support import wait_until

EDIT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edit_workflows"


@pytest.fixture
def edit_services(mariadb_engine: Engine, mariadb_url: str, tmp_path: Path) -> Services:
    """The bot's services with Vary Region on, fast loops and the test workflows."""
    empty_moderation(mariadb_engine)
    settings = make_settings(
        database={"url": mariadb_url},
        data_dir=tmp_path / "data",
        intake={"per_minute": 100, "max_active_jobs": 10},
        bot={"token": "test-bot-token", "delivery_interval_s": 0.05, "progress_interval_s": 0.1},
        api={"edit_link_secret": "vary-region-flow-secret-0123456789ab"},
        storage={"public_base_url": "http://testserver/files"},
        workflows={"dir": str(EDIT_FIXTURES)},
    )
    return make_services(mariadb_engine, settings)


def mask(size: tuple[int, int]) -> bytes:
    image = Image.new("L", size, 0)
    image.paste(255, (10, 10, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_vary_region_result_is_posted_in_the_channel_with_a_mention(
    emu: DiscordEmulator, edit_services: Services
) -> None:
    services = edit_services
    bound = services.intake.prepare(
        GenerationRequest(workflow="edit-source-sd15", values={"prompt": "a cat on a sofa"})
    )
    asked = Requester(
        source="discord", user_id=USER, guild_id=GUILD, channel_id=CHANNEL, shard_id=0
    )
    source = services.intake.submit(bound, asked).enqueued.job.public_id
    with running_bot(services, emu):
        finish(services, source)  # its answer goes to the channel too (no interaction)
        url = edit_link(services.settings, source, 0, USER, GUILD, CHANNEL, 0)
        assert url is not None
        with TestClient(make_app(services)) as web:
            sent = web.post(
                url.removeprefix(services.settings.api.base_url()),
                data={"prompt": "a red hat"},
                files={"mask": ("mask.png", mask((64, 48)), "image/png")},
            )
        assert sent.status_code == 202, sent.text
        inpaint = sent.json()["id"]
        [(_, image)] = finish(services, inpaint, colors=["red"])

        def posted() -> list[Message]:
            return [
                m
                for m in emu.channel_messages(CHANNEL)
                if f"`{inpaint}`" in m.content and m.attachments
            ]

        [message] = wait_until(posted, 15, what="the Vary Region answer in the channel")
    assert message.content.startswith(f"<@{USER}> ")
    assert message.mentions_user_ids == [USER], "the user is pinged"
    assert [a.data for a in message.attachments] == [image]
