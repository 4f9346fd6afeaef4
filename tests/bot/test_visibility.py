"""Who sees an answer, as the user asked in /serve: behind a spoiler, or only them (the
request and its answer ephemeral, never posted to the channel, even once the interaction
has ended: then the row ends undelivered and /history still has the images)."""

from __future__ import annotations

from datetime import timedelta

from stillhouse.schemas.states import DeliveryStatus
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    USER,
    finish,
    queued_id,
    running_bot,
    shift_clock,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until


def serve(emu: DiscordEmulator, **options: object) -> Interaction:
    return emu.slash_command(
        GUILD, CHANNEL, USER, "serve", options={"prompt": "a quiet bay", **options}
    )


def test_a_spoiler_request_is_answered_with_its_images_behind_spoilers(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu, spoiler=True)
        public_id = queued_id(ix)
        finish(maria_services, public_id, images=2)
        answer = wait_answer(emu, ix, public_id)
        names = [a.filename for a in answer.attachments]
        assert names == [f"SPOILER_{public_id}-1.png", f"SPOILER_{public_id}-2.png"]


def test_a_private_request_and_its_answer_are_seen_by_the_requester_alone(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu, private=True)
        assert ix.wait_response()["data"]["flags"] == 64
        public_id = queued_id(ix)
        finish(maria_services, public_id)
        answered = wait_until(
            lambda: ix.original if ix.original and ix.original.attachments else None,
            10,
            what="the private answer",
        )
        assert answered.ephemeral and f"`{public_id}`" in answered.content
        assert emu.channel_messages(CHANNEL) == []


def test_a_private_answer_is_never_posted_to_the_channel_once_the_interaction_ended(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve(emu, private=True)
        public_id = queued_id(ix)
        shift_clock(maria_services, timedelta(minutes=20))  # the token is gone
        finish(maria_services, public_id)
        job = maria_services.queue.get(public_id)
        assert job is not None

        def ended() -> bool:
            [row] = maria_services.sends.for_job(job.id)
            return row.status is DeliveryStatus.FAILED

        wait_until(ended, 10, what="the row ended undelivered")
        assert emu.channel_messages(CHANNEL) == []
        assert ix.original is not None and not ix.original.attachments
        history = emu.slash_command(GUILD, CHANNEL, USER, "history")
        assert f"`{public_id}`" in history.wait_response()["data"]["content"]
