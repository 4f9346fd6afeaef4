"""The real bot through the Discord emulator, on MariaDB: /serve to a job, a result row to
the answer (the queued message replaced by the images and buttons), and what each button
does."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from stillhouse.hints import SENDS, InProcessHints
from stillhouse.queue import GenerationQueue
from stillhouse.schemas.states import DeliveryStatus, JobStatus
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    HIDDEN_CHANNEL,
    OTHER_USER,
    USER,
    answers,
    buttons,
    finish,
    image_gone,
    queued_id,
    running_bot,
    shift_clock,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until


def serve(
    emu: DiscordEmulator, prompt: str = "a lighthouse at dawn", **options: int
) -> Interaction:
    return emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": prompt, **options})


def test_serve_queues_a_job_and_its_result_arrives_with_images_and_buttons(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu, count=2, seed=1234)
        public_id = queued_id(ix)
        assert not ix.wait_response()["data"].get("flags")  # public, not ephemeral
        job = maria_services.queue.get(public_id)
        assert job is not None and job.status is JobStatus.QUEUED
        assert job.routing.user_id == USER and job.routing.channel_id == CHANNEL
        assert job.params.root["seed"] == 1234 and job.params.root["count"] == 2

        stored = finish(maria_services, public_id, images=2)
        result = wait_answer(emu, ix, public_id)
        assert result is ix.original and ix.followups == [], "the queued message is replaced"
        assert [a.data for a in result.attachments] == [data for _, data in stored]
        assert {f"sh:u:{public_id}:0", f"sh:v:{public_id}:1", f"sh:r:{public_id}"} <= set(
            buttons(result)
        )
        assert "a lighthouse" in result.content and "seed 1234" in result.content
        first, *_, last = result.revisions
        assert first.content.startswith("Queued") and f"sh:x:{public_id}" in first.component_ids
        assert last.attachment_names == (f"{public_id}-1.png", f"{public_id}-2.png")
        [row] = maria_services.sends.for_job(job.id)
        wait_until(lambda: maria_services.sends.get(row.id).status is DeliveryStatus.SENT)
        sent = maria_services.sends.get(row.id)
        assert sent is not None and sent.discord_message_id == result.id


def test_reroll_upscale_and_delete_do_what_they_say(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu, seed=77)
        public_id = queued_id(ix)
        [(key, _)] = finish(maria_services, public_id)
        result = wait_answer(emu, ix, public_id)

        reroll = emu.click(result, f"sh:r:{public_id}", USER)
        rerolled = maria_services.queue.get(queued_id(reroll))
        assert rerolled is not None and rerolled.workflow_name == "sd15-txt2img"
        assert rerolled.params.root["prompt"] == "a lighthouse at dawn"
        assert rerolled.params.root["seed"] != 77

        upscale = emu.click(result, f"sh:u:{public_id}:0", USER)
        upscaled = maria_services.queue.get(queued_id(upscale))
        assert upscaled is not None and upscaled.workflow_name == "upscale-2x"
        assert [i.storage_key for i in upscaled.inputs] == [key]

        stranger = emu.click(result, f"sh:d:{public_id}", OTHER_USER)
        answer = stranger.wait_response()["data"]
        assert answer["flags"] == 64 and "Only the person who asked" in answer["content"]
        assert not emu.message(result.id).deleted

        emu.click(result, f"sh:d:{public_id}", USER)
        wait_until(lambda: emu.message(result.id).deleted, 5, what="the result deleted")
        wait_until(lambda: image_gone(maria_services, key), 5, what="the image deleted")


def test_a_result_after_the_token_lifetime_is_posted_in_the_channel_with_a_mention(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu)
        public_id = queued_id(ix)
        emu.advance(16 * 60)  # Discord now refuses the token...
        shift_clock(maria_services, timedelta(minutes=16))  # ...and the bot knows it
        finish(maria_services, public_id)
        posted = wait_until(lambda: emu.channel_messages(CHANNEL), 5, what="a channel post")
        [message] = posted
        assert message.content.startswith(f"<@{USER}>") and message.mentions_user_ids == [USER]
        assert message.attachments and f"sh:r:{public_id}" in buttons(message)
        assert message.nonce == f"sh-{public_id}", "a repeat would return this message"
        assert ix.followups == []


def test_an_interaction_that_reaches_the_bot_late_is_still_deferred_within_3_s(
    emu: DiscordEmulator, maria_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord's 3 s count from the interaction's making: one delivered 1.5 s late, whose
    queueing is slow, is deferred before they run out (a 2 s budget counted from the
    bot's first look would answer at 3.5 s: "Unknown interaction"), then answered."""
    seen = threading.Event()
    submit = maria_services.intake.submit

    def slow_until_seen(*args: Any, **kwargs: Any) -> Any:
        seen.wait(10)  # the database answers only once the test saw the deferral
        return submit(*args, **kwargs)

    monkeypatch.setattr(maria_services.intake, "submit", slow_until_seen)
    emu.interaction_lag_s = 1.5
    with running_bot(maria_services, emu):
        ix = serve(emu)
        response = ix.wait_response()
        seen.set()
        assert response["type"] == 5, "deferred (the emulator refuses callbacks after 3 s)"
        public_id = queued_id(ix)
        assert maria_services.queue.get(public_id) is not None


def test_a_finished_job_wakes_the_bot_instead_of_its_next_look(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    """The outcome's hint wakes the delivery loop: an answer arrives in well under the
    30 s the loop would otherwise idle between looks."""
    hints = InProcessHints()
    told = partial(hints.bump, SENDS)
    settings = maria_services.settings
    woken = dataclasses.replace(
        maria_services,
        queue=GenerationQueue(maria_services.engine, settings.queue, told=told),
        hints=hints,
        settings=settings.model_copy(
            update={"bot": settings.bot.model_copy(update={"delivery_interval_s": 30.0})}
        ),
    )
    with running_bot(woken, emu):
        ix = serve(emu)
        public_id = queued_id(ix)
        started = time.monotonic()
        finish(woken, public_id)
        wait_answer(emu, ix, public_id, timeout_s=10)
        assert time.monotonic() - started < 5, "woken by the hint, not the 30 s look"


def test_a_429_then_200_delivers_once(emu: DiscordEmulator, maria_services: Services) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu)
        public_id = queued_id(ix)
        fault = emu.fail_next("PATCH", r"/messages/@original", 429, retry_after=0.2)
        finish(maria_services, public_id)
        wait_answer(emu, ix, public_id)
        job = maria_services.queue.get(public_id)
        assert job is not None
        [row] = maria_services.sends.for_job(job.id)
        wait_until(lambda: maria_services.sends.get(row.id).status is DeliveryStatus.SENT)
        assert fault.hits == 1, "the 429 was answered"
        assert len(answers(emu, ix, public_id)) == 1 and ix.followups == []


def test_a_403_marks_the_delivery_failed_without_more_messages(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = emu.slash_command(GUILD, HIDDEN_CHANNEL, USER, "serve", options={"prompt": "x"})
        public_id = queued_id(ix)
        shift_clock(maria_services, timedelta(minutes=16))  # token gone: the channel it is
        finish(maria_services, public_id)
        job = maria_services.queue.get(public_id)
        assert job is not None
        [row] = maria_services.sends.for_job(job.id)
        failed = wait_until(
            lambda: maria_services.sends.get(row.id).status is DeliveryStatus.FAILED, 10
        )
        assert failed
        stored = maria_services.sends.get(row.id)
        assert stored is not None and "403" in (stored.last_error or "")
        assert stored.attempts == 1
        assert emu.channel_messages(HIDDEN_CHANNEL) == [] and ix.followups == []
