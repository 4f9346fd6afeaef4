"""/cancel, /queue, /workflows, /admin and live progress, through the emulator."""

from __future__ import annotations

from stillhouse.ids import new_owner
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, OTHER_USER, USER, queued_id, running_bot
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until

EPHEMERAL = 64


def content(ix: Interaction) -> str:
    return str(ix.wait_response()["data"]["content"])


def test_cancel_and_queue_show_and_stop_only_your_own_requests(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        first = queued_id(emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"}))
        second = queued_id(
            emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "b"})
        )
        listing = emu.slash_command(GUILD, CHANNEL, USER, "queue")
        assert first in content(listing) and second in content(listing)
        assert listing.wait_response()["data"]["flags"] == EPHEMERAL

        theirs = emu.slash_command(GUILD, CHANNEL, OTHER_USER, "cancel", options={"job": first})
        assert "Only the person who asked" in content(theirs)
        mine = emu.slash_command(GUILD, CHANNEL, USER, "cancel")  # the latest: `second`
        assert content(mine) == f"Cancelled `{second}`."
        job = maria_services.queue.get(second)
        assert job is not None and job.status is JobStatus.CANCELLED
        other = maria_services.queue.get(first)
        assert other is not None and other.status is JobStatus.QUEUED


def test_the_cancel_button_on_the_queued_message(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "a"})
        public_id = queued_id(ix)
        assert ix.original is not None
        pressed = emu.click(ix.original, f"sh:x:{public_id}", USER)
        assert content(pressed) == "Cancelled."
        wait_until(lambda: ix.original and "was cancelled" in ix.original.content, 20)


def test_workflows_lists_what_serve_offers(emu: DiscordEmulator, maria_services: Services) -> None:
    with running_bot(maria_services, emu):
        text = content(emu.slash_command(GUILD, CHANNEL, USER, "workflows"))
        assert "`sd15-txt2img`" in text and "`flux-schnell-txt2img`" in text
        assert "upscale-2x" not in text  # a button's workflow, not one to /serve


def test_the_queued_message_shows_progress_while_the_job_runs(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options={"prompt": "slow"})
        public_id = queued_id(ix)
        [job] = maria_services.queue.claim(new_owner("test-master"), 1)
        assert job.public_id == public_id
        maria_services.queue.mark_running(job, "gpu-1")
        maria_services.queue.set_progress(job, 0.5, "step 10/20")
        wait_until(
            lambda: ix.original and "50% step 10/20" in ix.original.content, 5, what="progress"
        )
