"""/admin with two guilds: a server's managers act on their own server only; acting on
every server, and per-user quotas, belong to the bot's operators (BOT__ADMIN_IDS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot import messages
from stillhouse.moderation import EVERYWHERE, INTAKE_PAUSED
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    OPERATOR,
    OTHER_CHANNEL,
    OTHER_GUILD,
    OTHER_MANAGER,
    OTHER_USER,
    USER,
    running_bot,
)
from tests.doubles.discord import DiscordEmulator

NOT_A_MANAGER = "Only this server's managers can use /admin here."


class Fronts:
    """/admin and /serve in either guild, answered through the emulator."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    def admin(self, caller: int, sub: str, guild: int = GUILD, **options: object) -> str:
        channel = CHANNEL if guild == GUILD else OTHER_CHANNEL
        ix = self.emu.slash_command(
            guild, channel, caller, "admin", subcommand=sub, options=options
        )
        response = ix.wait_response()
        assert response["data"]["flags"] == 64, "admin answers are ephemeral"
        return str(response["data"]["content"])

    def serve(self, user: int = USER, guild: int = GUILD) -> str:
        channel = CHANNEL if guild == GUILD else OTHER_CHANNEL
        ix = self.emu.slash_command(guild, channel, user, "serve", options={"prompt": "x"})
        return str(ix.wait_response()["data"]["content"])


@pytest.fixture
def fronts(emu: DiscordEmulator, maria_services: Services) -> Iterator[Fronts]:
    with running_bot(maria_services, emu):
        yield Fronts(emu)


def test_a_manager_pauses_and_resumes_their_own_server_only(
    fronts: Fronts, maria_services: Services
) -> None:
    assert "paused in this server" in fronts.admin(MANAGER, "pause", note="new GPUs")
    assert "paused here for now (new GPUs)" in fronts.serve(guild=GUILD)
    assert fronts.serve(guild=OTHER_GUILD).startswith("Queued")
    moderation = maria_services.moderation
    assert moderation.switch_for(INTAKE_PAUSED, GUILD).enabled
    assert not moderation.switch_for(INTAKE_PAUSED, OTHER_GUILD).enabled
    assert not moderation.switch(INTAKE_PAUSED, EVERYWHERE).enabled

    assert fronts.admin(MANAGER, "resume") == messages.resumed(False)
    assert fronts.serve(guild=GUILD).startswith("Queued")


def test_a_manager_bans_in_their_own_server_only(fronts: Fronts) -> None:
    assert "banned in this server: spam" in fronts.admin(MANAGER, "ban", user=USER, reason="spam")
    assert "cannot make requests" in fronts.serve(USER, GUILD)
    assert fronts.serve(USER, OTHER_GUILD).startswith("Queued")
    # The other server's manager cannot lift it: their unban acts on their server.
    assert "not banned here" in fronts.admin(OTHER_MANAGER, "unban", OTHER_GUILD, user=USER)
    assert "cannot make requests" in fronts.serve(USER, GUILD)
    assert "no longer banned in this server" in fronts.admin(MANAGER, "unban", user=USER)
    assert fronts.serve(USER, GUILD).startswith("Queued")


def test_stats_of_a_server_count_that_server_only(fronts: Fronts) -> None:
    for _ in range(2):
        assert fronts.serve(guild=GUILD).startswith("Queued")
    assert fronts.serve(guild=OTHER_GUILD).startswith("Queued")
    mine = fronts.admin(MANAGER, "stats")
    theirs = fronts.admin(OTHER_MANAGER, "stats", OTHER_GUILD)
    assert mine.startswith("This server") and "Queued: 2" in mine
    assert theirs.startswith("This server") and "Queued: 1" in theirs
    everywhere = fronts.admin(OPERATOR, "stats", everywhere=True)
    assert everywhere.startswith("Every server") and "Queued: 3" in everywhere


def test_managers_cannot_touch_another_server_or_every_server(
    fronts: Fronts, maria_services: Services
) -> None:
    # Manage Server in one guild gives nothing in another (Discord lets a server's own
    # permission settings open /admin to anyone, so the bot checks too).
    for sub, options in (
        ("pause", {}),
        ("resume", {}),
        ("stats", {}),
        ("ban", {"user": OTHER_USER, "reason": "x"}),
        ("unban", {"user": OTHER_USER}),
    ):
        assert fronts.admin(OTHER_MANAGER, sub, GUILD, **options) == NOT_A_MANAGER, sub
        assert fronts.admin(USER, sub, GUILD, **options) == NOT_A_MANAGER, sub
        everywhere = {**options, "everywhere": True}
        assert fronts.admin(MANAGER, sub, GUILD, **everywhere) == messages.OPERATORS_ONLY, sub
    assert fronts.admin(MANAGER, "quota", user=OTHER_USER, daily_jobs=0) == messages.OPERATORS_ONLY
    moderation = maria_services.moderation
    assert not any(
        moderation.switch_for(INTAKE_PAUSED, guild).enabled for guild in (GUILD, OTHER_GUILD)
    )
    assert moderation.ban_of(OTHER_USER, GUILD) is None
    assert fronts.serve(OTHER_USER).startswith("Queued")


def test_operators_act_on_every_server_and_set_quotas(fronts: Fronts) -> None:
    assert "paused everywhere" in fronts.admin(OPERATOR, "pause", everywhere=True)
    assert "paused for now" in fronts.serve(guild=GUILD)
    assert "paused for now" in fronts.serve(guild=OTHER_GUILD)
    # A server's manager cannot lift the operators' pause for their server.
    assert fronts.admin(MANAGER, "resume") == messages.STILL_PAUSED_EVERYWHERE
    assert "paused for now" in fronts.serve(guild=GUILD)
    assert fronts.admin(OPERATOR, "resume", everywhere=True) == messages.resumed(True)
    assert fronts.serve(guild=OTHER_GUILD).startswith("Queued")

    assert "banned everywhere" in fronts.admin(
        OPERATOR, "ban", OTHER_GUILD, user=USER, reason="abuse", everywhere=True
    )
    assert "cannot make requests" in fronts.serve(USER, GUILD)
    assert "cannot make requests" in fronts.serve(USER, OTHER_GUILD)
    assert "no longer banned anywhere" in fronts.admin(
        OPERATOR, "unban", user=USER, everywhere=True
    )

    assert "0 requests per 24 hours" in fronts.admin(
        OPERATOR, "quota", user=OTHER_USER, daily_jobs=0
    )
    assert "used your 0 requests" in fronts.serve(OTHER_USER)
    assert "default quota" in fronts.admin(OPERATOR, "quota", user=OTHER_USER)
    assert fronts.serve(OTHER_USER).startswith("Queued")
    # An operator acts on a server they do not manage, as that server's manager would.
    assert "paused in this server" in fronts.admin(OPERATOR, "pause", OTHER_GUILD)
    assert fronts.serve(guild=GUILD).startswith("Queued")
