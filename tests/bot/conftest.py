"""Bot fixtures: the bot's services on the real test databases (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete

from stillhouse.config import PromptHelpSettings, Settings, make_settings
from stillhouse.db.models import (
    BannedUser,
    GuildSettingsRow,
    Switch,
    UserQuota,
    UserSettingsRow,
)
from stillhouse.filters import ContentFilter, FilterFile, FilterRules
from stillhouse.hints import SENDS, InProcessHints
from stillhouse.locks import InProcessLocks
from stillhouse.moderation import Moderation
from stillhouse.preferences import GuildSettings, UserSettings
from stillhouse.queue import GenerationQueue, SendQueue
from stillhouse.queue.fences import MessageFence
from stillhouse.queue.insights import QueueInsights
from stillhouse.services import Services
from stillhouse.storage.local import LocalStorage
from stillhouse.workflows.loader import WorkflowCatalog
from tests.bot.harness import OPERATOR, guilds
from tests.doubles.discord import DiscordEmulator
from tests.doubles.openai_chat import OpenAIChatDouble

REPO = Path(__file__).resolve().parents[2]
GUILD_WITH_OWN_RULES = 4242


def bot_settings(
    url: str,
    tmp_path: Path,
    intake: dict[str, object],
    *,
    api: dict[str, object] | None = None,
    storage: dict[str, object] | None = None,
    **bot: object,
) -> Settings:
    """Settings for a front on `url`, with the shipped workflows."""
    return make_settings(
        database={"url": url},
        data_dir=tmp_path / "data",
        intake=intake,
        bot={"token": "test-bot-token", **bot},
        api=api or {},
        storage=storage or {},
    )


def empty_moderation(engine: Engine) -> None:
    """No bans, quotas, switches or server settings left by an earlier test."""
    with engine.begin() as conn:
        for table in (BannedUser, UserQuota, Switch, GuildSettingsRow, UserSettingsRow):
            conn.execute(delete(table))


def make_services(engine: Engine, settings: Settings) -> Services:
    """Services on an existing engine, with in-process locks and local storage."""
    rules = FilterFile(
        words=["gore"],
        patterns=[r"\bnsfw\b"],
        guilds={GUILD_WITH_OWN_RULES: FilterRules(words=["spoilers"])},
    )
    hints = InProcessHints()
    return Services(
        settings=settings,
        engine=engine,
        queue=GenerationQueue(engine, settings.queue, told=partial(hints.bump, SENDS)),
        sends=SendQueue(engine, settings.queue),
        fence=MessageFence(engine, settings.queue),
        insights=QueueInsights(engine),
        moderation=Moderation(engine),
        guilds=GuildSettings(engine),
        users=UserSettings(engine),
        locks=InProcessLocks(),
        storage=LocalStorage(settings.images_dir(), settings.storage),
        catalog=WorkflowCatalog.load(settings.workflows.dir),
        content_filter=ContentFilter(rules),
        hints=hints,
    )


@pytest.fixture
def services(engine: Engine, database_url: str, tmp_path: Path) -> Services:
    """The bot's services on an empty database (each backend in turn)."""
    empty_moderation(engine)
    settings = bot_settings(database_url, tmp_path, {"per_minute": 5, "max_active_jobs": 3})
    return make_services(engine, settings)


@pytest.fixture
def maria_services(mariadb_engine: Engine, mariadb_url: str, tmp_path: Path) -> Services:
    """The bot's services on MariaDB, with fast loops for end-to-end tests."""
    empty_moderation(mariadb_engine)
    settings = bot_settings(
        mariadb_url,
        tmp_path,
        {"per_minute": 1000, "max_active_jobs": 100},
        delivery_interval_s=0.05,
        progress_interval_s=0.1,
        admin_ids=str(OPERATOR),
    )
    return make_services(mariadb_engine, settings)


@pytest.fixture
def emu() -> Iterator[DiscordEmulator]:
    """The Discord emulator with the guilds of tests.bot.harness, discord.py pointed at it."""
    with DiscordEmulator(guilds=guilds()) as emulator, emulator.patched():
        yield emulator


def enable_prompt_help(services: Services, double: OpenAIChatDouble, **options: object) -> Services:
    """Services whose bot (built after this) has prompt help at the double; `options`
    are PromptHelpSettings fields (`vision=True`, `timeout_s=...`)."""
    given = {"url": double.url, "model": double.model, "timeout_s": 2.0, **options}
    services.settings.prompt_help = PromptHelpSettings.model_validate(given)
    return services


@pytest.fixture
def prompt_help_services(maria_services: Services, openai_chat: OpenAIChatDouble) -> Services:
    """maria_services with prompt help at `openai_chat` (text-only, 2 s whole-call limit)."""
    return enable_prompt_help(maria_services, openai_chat)
