"""A workflow's own options in /serve, through the real discord.py: the `options` text
completed as typed, the More options form, and refusals in the names users read."""

from __future__ import annotations

from stillhouse.intake import Attachment, GenerationRequest
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, USER, queued_id, running_bot
from tests.doubles.discord import DiscordEmulator, Interaction


def choices(emu: DiscordEmulator, typed: str, workflow: str = "sdxl") -> list[str]:
    ix = emu.autocomplete(
        GUILD,
        CHANNEL,
        USER,
        "serve",
        focused="options",
        value=typed,
        options={"prompt": "a fox", "workflow": workflow},
    )
    return [c["value"] for c in ix.wait_response()["data"]["choices"]]


def test_options_offers_the_workflows_own_options_then_their_values(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        offered = choices(emu, "")
        assert [o.split("=")[0] for o in offered] == ["steps", "guidance", "sampler", "scheduler"]
        assert choices(emu, "sampler=dpm") == ["sampler=dpmpp_2m", "sampler=dpmpp_2m_sde"]
        # Those given already are not offered again; the next one completes after them.
        assert choices(emu, "steps=30, gu") == ["steps=30, guidance=7"]
        # FLUX takes no sampler: its own options only.
        assert "sampler" not in {o.split("=")[0] for o in choices(emu, "", "flux")}


def serve_sdxl(emu: DiscordEmulator, options: str) -> Interaction:
    """/serve a fox on SDXL with `options`."""
    given = {"prompt": "a fox", "workflow": "sdxl", "options": options}
    return emu.slash_command(GUILD, CHANNEL, USER, "serve", options=given)


def test_options_are_applied_and_refused_by_their_names(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = serve_sdxl(emu, "steps=30, guidance=5.5")
        job = maria_services.queue.get(queued_id(ix))
        assert job is not None
        assert (job.params.root["steps"], job.params.root["cfg"]) == (30, 5.5)

        bad = serve_sdxl(emu, "guidance=4, sharpness=3")
        text = bad.wait_response()["data"]["content"]
        assert text.startswith("Stable Diffusion XL has no option “sharpness” (its options: "), text
        bad = serve_sdxl(emu, "guidance=40")
        text = bad.wait_response()["data"]["content"]
        assert "guidance is 40.0; the maximum is 15" in text, text


def test_more_options_opens_a_form_whose_submission_is_queued(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        ix = emu.slash_command(
            GUILD,
            CHANNEL,
            USER,
            "serve",
            options={
                "prompt": "a fox",
                "workflow": "sdxl",
                "more_options": True,
                "count": 2,
                "seed": 5,
                "mode": "quality",
            },
        )
        form = ix.wait_response()
        assert form["type"] == 9
        inputs = [row["components"][0] for row in form["data"]["components"]]
        assert [i["label"] for i in inputs] == [
            "Prompt",
            "Steps",
            "Guidance",
            "Sampler",
            "Scheduler",
        ]
        assert inputs[0]["value"] == "a fox"
        sent = emu.submit_form(ix, USER, {"prompt": "a red fox", "sampler": "euler"})
        job = maria_services.queue.get(queued_id(sent))
        assert job is not None and job.workflow_name == "sdxl-txt2img"
        params = job.params.root
        assert (params["prompt"], params["sampler"], params["count"], params["seed"]) == (
            "a red fox",
            "euler",
            2,
            5,
        )
        assert params["steps"] == 35, "the quality mode's steps, as the form showed them"


def test_a_picture_attached_to_a_text_workflow_goes_to_its_familys_image_workflow(
    maria_services: Services,
) -> None:
    # At the intake: the emulator serves attachments over plain http, which workers refuse.
    picture = Attachment(
        filename="fox.png",
        url="https://cdn.discordapp.com/attachments/1/2/fox.png",
        size=2048,
        content_type="image/png",
        width=96,
        height=64,
    )
    for typed, expected in (("sdxl", "sdxl-img2img"), ("sd15-txt2img", "sd15-img2img")):
        request = GenerationRequest(workflow=typed, values={"prompt": "a lion"}, image=picture)
        bound = maria_services.intake.prepare(request)
        assert bound.workflow == expected
        assert bound.params.root["prompt"] == "a lion"
        [source] = bound.inputs
        assert str(source.url) == picture.url
