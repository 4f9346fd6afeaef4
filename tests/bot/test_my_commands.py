"""/settings, /history and /info through the emulator with the real discord.py: a user's
own defaults (above the server's, below what /serve names), their recent images with a
button that shows one again to them only, and where they stand (limits, GPU time, their
requests and places); and the GPU time a server's managers see with /admin usage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stillhouse.ids import new_owner
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.worker_io import Timings
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    OPERATOR,
    OTHER_CHANNEL,
    OTHER_GUILD,
    OTHER_USER,
    USER,
    queued_id,
    running_bot,
    stored_result,
)
from tests.doubles.discord import DiscordEmulator, Interaction
from tests.support import wait_until


class Me:
    """A user's commands, answered through the emulator."""

    def __init__(self, emu: DiscordEmulator, services: Services) -> None:
        self.emu = emu
        self.services = services

    def ask(self, name: str, user: int = USER, **options: object) -> Interaction:
        ix = self.emu.slash_command(GUILD, CHANNEL, user, name, options=options)
        assert ix.wait_response()["data"]["flags"] == 64, f"/{name} answers are private"
        return ix

    def text(self, name: str, user: int = USER, **options: object) -> str:
        return str(self.ask(name, user, **options).wait_response()["data"]["content"])

    def serve(self, prompt: str = "a lighthouse", **options: object) -> JobRecord:
        ix = self.emu.slash_command(
            GUILD, CHANNEL, USER, "serve", options={"prompt": prompt, **options}
        )
        job = self.services.queue.get(queued_id(ix))
        assert job is not None
        return job

    def finish(self, *jobs: JobRecord, gpu_ms: float = 1500.0) -> None:
        """A master and its GPU: the jobs succeed, ComfyUI having run `gpu_ms` each."""
        queue = self.services.queue
        held = queue.claim(new_owner("test-master"), 50)
        assert {j.id for j in jobs} <= {j.id for j in held}
        for job in (j for j in held if j.id in {k.id for k in jobs}):
            result, _ = stored_result(self.services.storage, job.public_id)
            timed = result.model_copy(update={"timings": Timings(execute_ms=gpu_ms)})
            queue.complete(job, timed)


@pytest.fixture
def me(emu: DiscordEmulator, maria_services: Services) -> Iterator[Me]:
    with running_bot(maria_services, emu):
        yield Me(emu, maria_services)


def test_a_users_defaults_come_after_what_they_name_and_before_the_servers(me: Me) -> None:
    assert me.text("settings") == "You use this server's and the bot's defaults."
    said = me.text("settings", workflow="sdxl-txt2img", aspect="landscape")
    assert said == (
        "Your defaults for /serve: workflow sdxl-txt2img, aspect landscape "
        "(what you name in /serve wins)."
    )
    # The server's managers chose quality and portrait: the user's aspect wins, the
    # server's mode applies where the user chose none.
    me.services.guilds.change(
        GUILD, MANAGER, lambda c: c.model_copy(update={"mode": "quality", "aspect": "portrait"})
    )
    job = me.serve()
    params = job.params.root
    assert job.workflow_name == "sdxl-txt2img"
    assert (params["width"], params["height"], params["steps"]) == (1216, 832, 35)
    named = me.serve(workflow="sd15-txt2img", aspect="square", mode="fast")
    assert named.workflow_name == "sd15-txt2img"
    assert (named.params.root["width"], named.params.root["steps"]) == (512, 12)

    assert "needs an image, so it cannot be a default" in me.text(
        "settings", workflow="sd15-img2img"
    )
    assert me.text("settings", reset=True) == "You use this server's and the bot's defaults."
    assert me.serve().workflow_name == "sd15-txt2img"


def test_history_lists_a_users_images_and_open_shows_one_to_them_only(me: Me) -> None:
    assert me.text("history") == "You have no images yet. Make some with /serve."
    first, second = me.serve("a red door"), me.serve("a blue boat")
    me.finish(first, second)
    ix = me.ask("history")
    lines = ix.wait_response()["data"]["content"].splitlines()
    assert lines[0].startswith("Your latest images")
    assert lines[1].endswith(f"“a blue boat” - `{second.public_id}`")  # newest first
    assert lines[2].endswith(f"“a red door” - `{first.public_id}`")
    listing = ix.original
    assert listing is not None

    opened = me.emu.click(listing, f"sh:o:{first.public_id}", USER)
    answer = opened.wait_response()["data"]
    assert answer["flags"] == 64 and "a red door" in answer["content"]
    shown = wait_until(lambda: opened.original)
    assert [a.filename for a in shown.attachments] == [f"{first.public_id}-1.png"]

    refused = me.emu.click(listing, f"sh:o:{second.public_id}", OTHER_USER)
    assert refused.wait_response()["data"]["content"] == "Only the person who asked can open this."


def test_info_shows_limits_gpu_time_and_places(me: Me) -> None:
    done = me.serve("made")
    me.finish(done, gpu_ms=2400)
    waiting = me.serve("waiting")
    text = me.text("info")
    assert text.startswith("**Your tier: default**")
    assert "- the last 60 seconds: 2 of 1000 used, 998 left" in text
    assert "- the last 24 hours: 2 used, no limit" in text
    assert "- waiting or running at once: 1 of 100 used, 99 left" in text
    assert "- today: 2.4 s for 1 request" in text
    assert "- this month: 2.4 s for 1 request" in text
    assert f"`{waiting.public_id}` - next up" in text
    # Another user's figures are theirs alone.
    other = me.text("info", OTHER_USER)
    assert "- today: 0.0 s for 0 requests" in other and waiting.public_id not in other


def test_admin_usage_sums_gpu_time_per_server_and_names_the_heaviest_users(
    me: Me, emu: DiscordEmulator
) -> None:
    here = me.serve("mine")
    other = emu.slash_command(
        OTHER_GUILD, OTHER_CHANNEL, OTHER_USER, "serve", options={"prompt": "x"}
    )
    there = me.services.queue.get(queued_id(other))
    assert there is not None
    me.finish(here, there, gpu_ms=1200)

    def usage(caller: int, guild: int, **options: object) -> str:
        channel = CHANNEL if guild == GUILD else OTHER_CHANNEL
        ix = emu.slash_command(guild, channel, caller, "admin", subcommand="usage", options=options)
        return str(ix.wait_response()["data"]["content"])

    assert usage(MANAGER, GUILD).splitlines() == [
        "GPU time in this server (UTC): today 1.2 s for 1 request, this month 1.2 s for 1 request.",
        f"Most this month: <@{USER}> 1.2 s (1).",
    ]
    everywhere = usage(OPERATOR, GUILD, everywhere=True)
    assert everywhere.startswith("GPU time in every server (UTC): today 2.4 s for 2 requests")
    assert f"<@{USER}> 1.2 s (1)" in everywhere and f"<@{OTHER_USER}> 1.2 s (1)" in everywhere
    assert "operators" in usage(MANAGER, GUILD, everywhere=True)
