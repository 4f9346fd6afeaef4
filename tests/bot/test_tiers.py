"""Tiers: each window's quota refuses with a sentence naming the window and when its next
place frees; a tier comes from the operators (/admin tier) or from a role in the server
(/server tier-role, for tiers servers may give), the higher-ranked winning; a tier's head
start puts its jobs ahead of those that came shortly before, not of older ones."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.messages import OPERATORS_ONLY
from stillhouse.db.models import GenerationJob
from stillhouse.intake import Refusal
from stillhouse.queue.timing import utcnow
from stillhouse.services import Services
from stillhouse.tiers import SPANS, Tier, Tiers
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    OPERATOR,
    USER,
    queued_id,
    running_bot,
)
from tests.bot.test_intake import request, requester
from tests.doubles.discord import DiscordEmulator, GuildSpec

ROLE = 1_300_000_000_000_000_901
TIERS = Tiers(
    default="free",
    tiers={
        "free": Tier(per_minute=100),
        "hour": Tier(per_minute=100, per_hour=2),
        "day": Tier(per_minute=100, per_day=2),
        "week": Tier(per_minute=100, per_week=2),
        "month": Tier(per_minute=100, per_month=2),
        "supporter": Tier(title="Supporter", rank=1, head_start_s=60, servers_may_grant=True),
        "staff": Tier(title="Staff", rank=2, head_start_s=300),
    },
)


REQUEST_IDS = itertools.count(5_000)


def submit(services: Services, user_id: int = 42) -> str:
    bound = services.intake.prepare(request(), GUILD)
    asking = requester(interaction_id=next(REQUEST_IDS), user_id=user_id)
    return services.intake.submit(bound, asking).enqueued.job.public_id


def age(services: Services, public_id: str, seconds: float) -> None:
    """Make a request (one without a head start) look `seconds` old."""
    then = utcnow() - timedelta(seconds=seconds)
    with services.engine.begin() as conn:
        conn.execute(
            update(GenerationJob)
            .where(GenerationJob.public_id == public_id)
            .values(created_at=then, run_after=then)
        )


@pytest.mark.parametrize(
    ("window", "span_s", "frees"),
    [
        ("hour", 3600, "10 min"),
        ("day", 86_400, "60 min"),
        ("week", 7 * 86_400, "60 min"),
        ("month", 30 * 86_400, "60 min"),
    ],
)
def test_each_windows_quota_refuses_naming_the_window_and_when_it_frees(
    services: Services, window: str, span_s: int, frees: str
) -> None:
    services.intake.tiers = TIERS
    services.moderation.set_tier(42, window, set_by=OPERATOR)
    first = submit(services)
    services.queue.cancel(first)  # finished: only the quota counts it
    services.queue.cancel(submit(services))
    free_in = 600 if window == "hour" else 3600
    age(services, first, span_s - free_in)
    with pytest.raises(Refusal) as refused:
        submit(services)
    assert str(refused.value) == (
        f"You have used your 2 requests for the {window} ({SPANS[window]}). "
        f"The next one frees in {frees}."
    )
    assert refused.value.kind == "limited"
    submit(services, user_id=43)  # the default tier: no such quota
    age(services, first, span_s + 1)  # it left the window
    services.queue.cancel(submit(services))


def test_a_tiers_head_start_passes_recent_jobs_but_not_older_ones(services: Services) -> None:
    services.intake.tiers = TIERS
    services.moderation.set_tier(7, "supporter", set_by=OPERATOR)
    old = submit(services, user_id=43)
    age(services, old, 120)  # came 2 min ago: before the head start reaches
    recent = submit(services, user_id=43)
    boosted = submit(services, user_id=7)
    claimed = [j.public_id for j in services.queue.claim("m", 3)]
    assert claimed == [old, boosted, recent]


@pytest.fixture
def role_emu() -> Iterator[DiscordEmulator]:
    spec = GuildSpec(
        id=GUILD,
        channel_ids=[CHANNEL],
        member_ids=[USER],
        admin_ids={MANAGER},
        role_members={ROLE: {USER}},
    )
    with DiscordEmulator(guilds=[spec]) as emulator, emulator.patched():
        yield emulator


def test_tiers_come_from_the_operators_and_from_a_servers_roles_the_higher_winning(
    role_emu: DiscordEmulator, maria_services: Services
) -> None:
    emu = role_emu
    maria_services.intake.tiers = TIERS

    def command(caller: int, name: str, sub: str, **options: object) -> str:
        ix = emu.slash_command(GUILD, CHANNEL, caller, name, subcommand=sub, options=options)
        return str(ix.wait_response()["data"]["content"])

    def served_head_start() -> float:
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "x"})
        job = maria_services.queue.get(queued_id(ix))
        assert job is not None
        return (job.created_at - job.run_after).total_seconds()

    with running_bot(maria_services, emu):
        assert served_head_start() == 0
        refused = command(MANAGER, "server", "tier-role", role=ROLE, tier="staff")
        assert refused == "“staff” is not a tier servers can give (they can give: supporter)."
        said = command(MANAGER, "server", "tier-role", role=ROLE, tier="supporter")
        assert said == f"Members of <@&{ROLE}> have the supporter tier here."
        assert served_head_start() == pytest.approx(60)
        info = emu.slash_command(GUILD, CHANNEL, USER, "info").wait_response()["data"]["content"]
        assert info.startswith("**Your tier: Supporter**")

        assert command(MANAGER, "admin", "tier", user=USER, tier="staff") == OPERATORS_ONLY
        assert command(OPERATOR, "admin", "tier", user=USER, tier="staff") == (
            f"<@{USER}> has the staff tier."
        )
        assert served_head_start() == pytest.approx(300)  # staff ranks above supporter
        assert "back on the free tier" in command(OPERATOR, "admin", "tier", user=USER)
        assert served_head_start() == pytest.approx(60)
