"""/describe through the emulator with the real discord.py and the real prompt help
client against the OpenAI-compatible endpoint's double: up to three prompts for an
attached image, to the person who asked only; the image reaches the model inline; when
prompt help is off, its model reads no images, the endpoint stalls or the file is no
image, a sentence says so."""

from __future__ import annotations

import base64
import time

import pytest

from stillhouse.services import Services
from tests.bot.conftest import enable_prompt_help
from tests.bot.harness import CHANNEL, GUILD, USER, png, running_bot
from tests.doubles.discord import AttachmentSpec, DiscordEmulator, Interaction
from tests.doubles.openai_chat import OpenAIChatDouble
from tests.support import wait_until

EPHEMERAL = 64
IMAGE = png(color="navy")


def describe(emu: DiscordEmulator, image: AttachmentSpec | None = None) -> Interaction:
    attached = image or AttachmentSpec("barn.png", IMAGE, "image/png")
    return emu.slash_command(GUILD, CHANNEL, USER, "describe", attachments={"image": attached})


def answer(ix: Interaction, timeout_s: float = 10) -> str:
    """What the user finally reads: the reply, or the follow-up after a deferral."""
    first = ix.wait_response(timeout_s)
    assert first["data"]["flags"] == EPHEMERAL, "/describe answers are private"
    if first["type"] == 4:
        return str(first["data"]["content"])
    shown = wait_until(
        lambda: ix.original and ix.original.content, timeout_s, what="the deferred answer"
    )
    assert ix.original is not None and ix.original.ephemeral
    return str(shown)


def test_a_vision_model_suggests_three_prompts_for_the_attached_image(
    emu: DiscordEmulator, maria_services: Services, openai_chat: OpenAIChatDouble
) -> None:
    openai_chat.vision = True
    openai_chat.answer = lambda _: (
        "Here are three prompts:\n1. a red barn, watercolour\n2. a barn at dawn, photo\n"
        "3. a barn in fog, oil painting\n4. one too many"
    )
    with running_bot(enable_prompt_help(maria_services, openai_chat, vision=True), emu):
        said = answer(describe(emu))
    assert said == (
        "Prompts for this image (use one with /serve):\n"
        "1. `a red barn, watercolour`\n"
        "2. `a barn at dawn, photo`\n"
        "3. `a barn in fog, oil painting`"
    )
    [asked] = openai_chat.requests
    [url] = asked.image_urls()
    assert url == "data:image/png;base64," + base64.b64encode(IMAGE).decode()


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("off", "Prompt help is not set up here."),
        ("text only", "Prompt help here cannot see images: its model reads text only."),
    ],
)
def test_without_a_model_that_sees_images_describe_says_why_at_once(
    emu: DiscordEmulator,
    maria_services: Services,
    openai_chat: OpenAIChatDouble,
    setup: str,
    says: str,
) -> None:
    if setup == "text only":
        enable_prompt_help(maria_services, openai_chat)
    with running_bot(maria_services, emu):
        ix = describe(emu)
        assert ix.wait_response()["type"] == 4  # answered, not deferred
        assert answer(ix) == says
    assert openai_chat.requests == []


def test_a_stalled_endpoint_is_explained_within_its_limit(
    emu: DiscordEmulator, maria_services: Services, openai_chat: OpenAIChatDouble
) -> None:
    openai_chat.vision, openai_chat.stall = True, True
    services = enable_prompt_help(maria_services, openai_chat, vision=True, timeout_s=1.0)
    with running_bot(services, emu):
        started = time.monotonic()
        ix = describe(emu)
        assert ix.wait_response()["type"] == 5  # deferred: the model may take a while
        said = answer(ix)
        elapsed = time.monotonic() - started
    assert said == "Prompt help timed out after 1 s; try again in a moment."
    assert elapsed < 1.0 + 2.0, f"took {elapsed:.2f} s"


def test_a_file_that_is_no_image_is_refused_without_asking_the_model(
    emu: DiscordEmulator, maria_services: Services, openai_chat: OpenAIChatDouble
) -> None:
    openai_chat.vision = True
    with running_bot(enable_prompt_help(maria_services, openai_chat, vision=True), emu):
        said = answer(describe(emu, AttachmentSpec("notes.txt", b"hello", "text/plain")))
    assert said == "notes.txt is text/plain; attach a PNG, JPEG or WebP image."
    assert openai_chat.requests == []
