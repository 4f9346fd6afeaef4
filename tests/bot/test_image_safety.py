"""Image safety by Discord's rules, through the emulator with the real discord.py: NSFW
words need an age-restricted channel; a generated image the image check flags is withheld
or sent as a spoiler outside one, as the server chose; when the check does not answer,
the server's fail-closed or fail-open choice applies, and it is logged. The check is the
real HTTP client (stillhouse.safety.HttpImageCheck) against its double."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stillhouse.filters import ContentFilter, FilterFile
from stillhouse.safety import HttpImageCheck
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    USER,
    finish,
    queued_id,
    running_bot,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, GuildSpec, Interaction, Message
from tests.doubles.image_check import ImageCheckDouble

NSFW_CHANNEL = CHANNEL + 77


@pytest.fixture
def safety_emu() -> Iterator[DiscordEmulator]:
    spec = GuildSpec(
        id=GUILD,
        channel_ids=[CHANNEL],
        nsfw_channel_ids=[NSFW_CHANNEL],
        member_ids=[USER],
        admin_ids={MANAGER},
    )
    with DiscordEmulator(guilds=[spec]) as emulator, emulator.patched():
        yield emulator


@pytest.fixture
def checker() -> Iterator[ImageCheckDouble]:
    with ImageCheckDouble().running() as double:
        yield double


@pytest.fixture
def safe(
    safety_emu: DiscordEmulator, maria_services: Services, checker: ImageCheckDouble
) -> Iterator[Services]:
    maria_services.intake.nsfw_filter = ContentFilter(FilterFile(words=["nude", "nsfw"]))
    maria_services.image_check = HttpImageCheck(checker.url, threshold=0.8, timeout_s=2)
    with running_bot(maria_services, safety_emu):
        yield maria_services


def serve(emu: DiscordEmulator, prompt: str, channel: int = CHANNEL) -> Interaction:
    return emu.slash_command(GUILD, channel, USER, "serve", options={"prompt": prompt})


def made(
    emu: DiscordEmulator, services: Services, colors: list[str], channel: int = CHANNEL
) -> Message:
    """A request whose images come out in these colours (red: the check flags it)."""
    ix = serve(emu, "a harbour", channel)
    public_id = queued_id(ix)
    finish(services, public_id, colors=colors)
    return wait_answer(emu, ix, public_id)


def server_images(emu: DiscordEmulator, **options: str) -> str:
    ix = emu.slash_command(GUILD, CHANNEL, MANAGER, "server", subcommand="images", options=options)
    return str(ix.wait_response()["data"]["content"])


def test_nsfw_words_are_refused_outside_age_restricted_channels_only(
    safety_emu: DiscordEmulator, safe: Services
) -> None:
    refused = serve(safety_emu, "a NUDE statue").wait_response()["data"]["content"]
    assert refused == (
        "Your prompt contains “nude”: Discord allows adult content only in age-restricted "
        "channels, and this one is not."
    )
    allowed = serve(safety_emu, "a nude statue", NSFW_CHANNEL)
    assert allowed.wait_response()["data"]["content"].startswith("Queued")


def test_a_flagged_image_is_withheld_or_spoilered_as_the_server_chose(
    safety_emu: DiscordEmulator, safe: Services, checker: ImageCheckDouble
) -> None:
    answer = made(safety_emu, safe, ["red", "teal"])
    assert [a.filename for a in answer.attachments] == [answer.attachments[0].filename]
    assert answer.attachments[0].filename.endswith("-2.png")  # the teal one
    assert "1 image withheld: the image check flagged it" in answer.content

    said = server_images(safety_emu, flagged="spoiler")
    assert said.startswith("Images outside age-restricted channels: flagged ones sent as spoilers")
    answer = made(safety_emu, safe, ["red"])
    [shown] = answer.attachments
    assert shown.filename.startswith("SPOILER_") and "withheld" not in answer.content

    # In an age-restricted channel the check is not asked: the image is shown as it is.
    before = checker.checked
    answer = made(safety_emu, safe, ["red"], NSFW_CHANNEL)
    [shown] = answer.attachments
    assert not shown.filename.startswith("SPOILER_") and checker.checked == before


def test_when_the_check_is_down_the_server_chooses_fail_closed_or_open_and_it_is_logged(
    safety_emu: DiscordEmulator,
    safe: Services,
    checker: ImageCheckDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    checker.down = True
    caplog.set_level(logging.WARNING, logger="bot.screening")
    answer = made(safety_emu, safe, ["teal"])  # the default: fail closed
    assert answer.attachments == []
    assert "1 image withheld: the image check is not answering" in answer.content
    said = server_images(safety_emu, unchecked="send")
    assert "ones the image check could not look at sent" in said
    answer = made(safety_emu, safe, ["teal"])
    assert len(answer.attachments) == 1  # fail open
    unavailable = [r for r in caplog.records if getattr(r, "action", "") == "safety.unavailable"]
    assert [getattr(r, "policy", None) for r in unavailable] == ["withhold", "send"]
