"""Whatever a user types into /serve, the real bot answers: an accepted request is queued,
anything else gets an ephemeral explanation, nothing is queued for it, and no exception
escapes into discord.py's logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, USER, running_bot
from tests.doubles.discord import AttachmentSpec, DiscordEmulator

EPHEMERAL = 64
SAMPLE_TEXT = ["a lighthouse at dawn", "GORE everywhere", "totally nsfw", "x" * 6000, " ", ""]


def prompts() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=300), st.sampled_from(SAMPLE_TEXT))


def attachments() -> st.SearchStrategy[AttachmentSpec]:
    return st.builds(
        AttachmentSpec,
        filename=st.sampled_from(["cat.png", "notes.txt", "x.webp", "ünïcødé.jpg"]),
        data=st.sampled_from([b"\x89PNG\r\n\x1a\n" + b"\0" * 32, b"hello", b"\0" * 4096]),
        content_type=st.sampled_from(["image/png", "text/plain", "image/webp", "image/gif"]),
    )


def serve_options() -> st.SearchStrategy[dict[str, Any]]:
    optional = {
        "negative_prompt": prompts(),
        "workflow": st.sampled_from(["sd15-txt2img", "sdxl-txt2img", "upscale-2x", "nope", ""]),
        "aspect": st.sampled_from(["square", "portrait", "landscape", "panorama"]),
        "count": st.integers(-5, 12),
        "seed": st.integers(-(2**40), 2**40),
        "mode": st.sampled_from(["fast", "quality", "turbo"]),
    }
    return st.fixed_dictionaries({"prompt": prompts()}, optional=optional)


def test_any_serve_options_are_answered_and_bad_ones_queue_nothing(
    emu: DiscordEmulator, maria_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    answered = {"queued": 0, "refused": 0}
    with running_bot(maria_services, emu):

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(options=serve_options(), image=st.none() | attachments())
        def one_request(options: dict[str, Any], image: AttachmentSpec | None) -> None:
            ix = emu.slash_command(
                GUILD,
                CHANNEL,
                USER,
                "serve",
                options=options,
                attachments={"image": image} if image else None,
            )
            data = ix.wait_response(timeout_s=10)["data"]
            job = maria_services.queue.get_by_interaction(ix.id)
            if str(data.get("content", "")).startswith("Queued"):
                answered["queued"] += 1
                assert job is not None and job.params.root["prompt"] == options["prompt"]
            else:
                answered["refused"] += 1
                assert data.get("flags") == EPHEMERAL, data
                assert len(str(data.get("content", ""))) > 10
                assert job is None

        one_request()
    assert answered["queued"] > 0 and answered["refused"] > 0, answered
    escaped = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not escaped, [r.getMessage() for r in escaped]


def test_an_attachment_that_is_not_an_image_or_too_large_is_explained(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    cases = {
        "attach a PNG, JPEG or WebP": AttachmentSpec("notes.txt", b"hello", "text/plain"),
        "the limit is 10 MiB": AttachmentSpec("huge.png", b"\0" * (11 * 2**20), "image/png"),
    }
    with running_bot(maria_services, emu):
        for says, image in cases.items():
            ix = emu.slash_command(
                GUILD,
                CHANNEL,
                USER,
                "serve",
                options={"prompt": "a boat", "workflow": "sd15-img2img"},
                attachments={"image": image},
            )
            data = ix.wait_response()["data"]
            assert data["flags"] == EPHEMERAL and says in data["content"], data
            assert maria_services.queue.get_by_interaction(ix.id) is None
