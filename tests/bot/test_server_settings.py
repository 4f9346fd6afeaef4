"""/server with two guilds: each server's channels, defaults and filter words affect that
server only, set by its managers; the operators' filter applies in both; every refusal
is a sentence. (Other shard processes: test_server_settings_shards.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stillhouse.queue.records import JobRecord
from stillhouse.schemas.guilds import MAX_PATTERNS
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    MANAGER,
    OPERATOR,
    OTHER_CHANNEL,
    OTHER_GUILD,
    OTHER_MANAGER,
    SECOND_CHANNEL,
    USER,
    queued_id,
    running_bot,
)
from tests.doubles.discord import DiscordEmulator

HOME = {GUILD: CHANNEL, OTHER_GUILD: OTHER_CHANNEL}


class Server:
    """/server and /serve in either guild, answered through the emulator."""

    def __init__(self, emu: DiscordEmulator, services: Services) -> None:
        self.emu = emu
        self.services = services

    def server(self, caller: int, sub: str, guild: int = GUILD, **options: object) -> str:
        ix = self.emu.slash_command(
            guild, HOME[guild], caller, "server", subcommand=sub, options=options
        )
        response = ix.wait_response()
        assert response["data"]["flags"] == 64, "/server answers are ephemeral"
        return str(response["data"]["content"])

    def serve(
        self,
        guild: int = GUILD,
        channel: int | None = None,
        prompt: str = "a lighthouse",
        **more: object,
    ) -> tuple[str, JobRecord | None]:
        ix = self.emu.slash_command(
            guild, channel or HOME[guild], USER, "serve", options={"prompt": prompt, **more}
        )
        text = str(ix.wait_response()["data"]["content"])
        if not text.startswith("Queued"):
            return text, None
        return text, self.services.queue.get(queued_id(ix))


@pytest.fixture
def fronts(emu: DiscordEmulator, maria_services: Services) -> Iterator[Server]:
    with running_bot(maria_services, emu):
        yield Server(emu, maria_services)


def test_a_server_takes_requests_only_in_the_channels_its_managers_allow(fronts: Server) -> None:
    said = fronts.server(MANAGER, "channel", channel=SECOND_CHANNEL, allowed=True)
    assert said == f"/serve works only in <#{SECOND_CHANNEL}>."
    refused, job = fronts.serve(GUILD, CHANNEL)
    assert refused == f"Requests are not taken in this channel. Try <#{SECOND_CHANNEL}>."
    assert job is None
    assert fronts.serve(GUILD, SECOND_CHANNEL)[1] is not None
    assert fronts.serve(OTHER_GUILD)[1] is not None  # the other server: every channel

    # Taking the last allowed channel away opens every channel again.
    said = fronts.server(MANAGER, "channel", channel=SECOND_CHANNEL, allowed=False)
    assert said == "/serve works in every channel of this server."
    assert fronts.serve(GUILD, CHANNEL)[1] is not None
    refused_text = fronts.server(MANAGER, "channel", channel=CHANNEL, allowed=False)
    assert "To keep it out of some, allow the channels where it should work" in refused_text


def test_a_servers_defaults_apply_there_and_the_users_own_choice_wins(fronts: Server) -> None:
    said = fronts.server(
        MANAGER, "defaults", workflow="sdxl-txt2img", mode="fast", aspect="portrait"
    )
    assert said == "Defaults: workflow sdxl-txt2img, mode fast, aspect portrait."
    _, job = fronts.serve(GUILD)
    assert job is not None and job.workflow_name == "sdxl-txt2img"
    params = job.params.root
    assert (params["width"], params["height"], params["steps"]) == (832, 1216, 15)

    # A user who names a workflow, mode or aspect gets theirs.
    _, chosen = fronts.serve(GUILD, workflow="sd15-txt2img", mode="quality", aspect="landscape")
    assert chosen is not None and chosen.workflow_name == "sd15-txt2img"
    assert (chosen.params.root["width"], chosen.params.root["steps"]) == (768, 30)

    _, elsewhere = fronts.serve(OTHER_GUILD)  # the bot's own defaults
    assert elsewhere is not None and elsewhere.workflow_name == "sd15-txt2img"
    assert elsewhere.params.root["width"] == 512

    said = fronts.server(MANAGER, "defaults", reset=True)
    assert (
        said == "Defaults: workflow sd15-txt2img (the bot's default), mode the workflow's own, "
        "aspect the workflow's own."
    )
    _, back = fronts.serve(GUILD)
    assert back is not None and back.workflow_name == "sd15-txt2img"


def test_a_default_workflow_must_be_one_serve_can_use(fronts: Server) -> None:
    said = fronts.server(MANAGER, "defaults", workflow="sd15-variations")
    assert said == "There is no workflow “sd15-variations” for /serve. See /workflows."
    said = fronts.server(MANAGER, "defaults", workflow="sd15-img2img")
    assert said == (
        "Stable Diffusion 1.5, from your image needs an image, so it cannot be a default."
    )
    assert "workflow sd15-txt2img (the bot's default)" in fronts.server(MANAGER, "show")


def test_a_servers_filter_words_refuse_prompts_there_only(fronts: Server) -> None:
    said = fronts.server(MANAGER, "filter-add", text="Lighthouse")
    assert said.startswith("Prompts matching the word “Lighthouse” are refused here.")
    refused, _ = fronts.serve(GUILD, prompt="a LIGHTHOUSE at dusk")
    assert refused == "Your prompt contains “lighthouse”, which is not allowed here."
    assert fronts.serve(GUILD, prompt="lighthouses at dusk")[1] is not None  # whole words
    assert fronts.serve(OTHER_GUILD, prompt="a lighthouse at dusk")[1] is not None

    fronts.server(MANAGER, "filter-add", text=r"\bcastle\w*", pattern=True)
    assert "not allowed here" in fronts.serve(GUILD, prompt="castles by the sea")[0]
    # The operators' list (the filter file's "gore") applies in both servers as before.
    for guild in (GUILD, OTHER_GUILD):
        assert "“gore”" in fronts.serve(guild, prompt="gore")[0]

    said = fronts.server(MANAGER, "filter-remove", text="Lighthouse")
    assert said.startswith("“Lighthouse” is no longer refused here.")
    assert fronts.serve(GUILD, prompt="a lighthouse at dusk")[1] is not None
    assert "is not on this server's list" in fronts.server(MANAGER, "filter-remove", text="nope")


def test_a_pattern_that_could_take_minutes_to_check_is_refused_in_words(fronts: Server) -> None:
    said = fronts.server(MANAGER, "filter-add", text="(a+)+$", pattern=True)
    assert said.startswith("“(a+)+$” repeats a group that itself repeats (like (a+)+)")
    said = fronts.server(MANAGER, "filter-add", text="[unclosed", pattern=True)
    assert said.startswith("“[unclosed” is not a regular expression")
    assert "adds no words or patterns" in fronts.server(MANAGER, "show")


def test_a_server_cannot_add_more_patterns_than_the_limit(fronts: Server) -> None:
    for n in range(MAX_PATTERNS):
        fronts.server(MANAGER, "filter-add", text=f"word{n}x", pattern=True)
    said = fronts.server(MANAGER, "filter-add", text="onemore", pattern=True)
    assert said == f"A server can add {MAX_PATTERNS} patterns at most."


def test_only_a_servers_managers_and_the_operators_change_its_settings(
    fronts: Server, maria_services: Services
) -> None:
    said = fronts.server(USER, "channel", channel=SECOND_CHANNEL, allowed=True)
    assert said == "Only this server's managers can use /server here."
    # Another server's manager acting from their server changes their own server only.
    fronts.server(OTHER_MANAGER, "filter-add", guild=OTHER_GUILD, text="boats")
    assert maria_services.guilds.get(GUILD).filter_words == []
    assert maria_services.guilds.get(OTHER_GUILD).filter_words == ["boats"]
    # An operator may act in any server.
    fronts.server(OPERATOR, "filter-add", text="ships")
    assert maria_services.guilds.get(GUILD).filter_words == ["ships"]
    shown = fronts.server(MANAGER, "show")
    assert shown.splitlines() == [
        "/serve works in: every channel.",
        "Defaults: workflow sd15-txt2img (the bot's default), mode the workflow's own, "
        "aspect the workflow's own.",
        "This server also refuses words “ships”.",
        "Images outside age-restricted channels: flagged ones withheld; ones the image check "
        "could not look at withheld. (The bot's operators set no image check: no image is "
        "checked now.)",
    ]
