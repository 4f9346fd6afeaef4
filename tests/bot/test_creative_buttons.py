"""The buttons under an SDXL result, pressed through the real discord.py and the Discord
emulator: Vary (Subtle, Strong), Upscale (2x, Creative), Zoom Out, Variations, Remix
(a form), Enhance and Vary (Region) each queue a job that stays SDXL, with the source's
prompt and checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.queue.records import JobRecord
from stillhouse.services import Services
from tests.bot.conftest import bot_settings, empty_moderation, enable_prompt_help, make_services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    OTHER_USER,
    USER,
    buttons,
    finish,
    queued_id,
    running_bot,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator, Interaction, Message
from tests.doubles.openai_chat import OpenAIChatDouble
from tests.support import wait_until

PROMPT = "a lighthouse at dawn"
PROMPTED = PROMPT + ", neon"  # the LoRA's trigger word, added
ENHANCED = ", golden hour lighting, wide shot, highly detailed"  # the chat double's rewrite
SDXL_FAMILY = {
    "sdxl-txt2img",
    "sdxl-img2img",
    "sdxl-variations",
    "sdxl-upscale-creative",
    "sdxl-outpaint",
    "sdxl-inpaint",
}
JUGGERNAUT = "juggernaut_xl_v9.safetensors"
MODELS = """
[checkpoints.juggernaut]
title = "Juggernaut XL"
family = "sdxl"
file = "juggernaut_xl_v9.safetensors"

[loras.glow]
title = "Neon Glow"
family = "sdxl"
file = "glow-xl.safetensors"
trigger_words = ["neon"]

[loras.ink]
title = "Ink Wash"
family = "sdxl"
file = "secret-ink-xl.safetensors"
access = { roles = [1300000000000000399] }
"""


@pytest.fixture
def services(mariadb_engine: Engine, mariadb_url: str, tmp_path: Path) -> Services:
    empty_moderation(mariadb_engine)
    settings = bot_settings(
        mariadb_url,
        tmp_path,
        {"per_minute": 1000, "max_active_jobs": 100},
        api={"edit_link_secret": SecretStr("s" * 32), "public_url": "https://sh.example"},
        delivery_interval_s=0.05,
        progress_interval_s=0.1,
    )
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    workflows = settings.workflows.model_copy(update={"models_file": models})
    return make_services(mariadb_engine, settings.model_copy(update={"workflows": workflows}))


def sdxl_result(emu: DiscordEmulator, services: Services) -> tuple[JobRecord, Message]:
    """/serve with `workflow:sdxl` (a loose name), a catalog checkpoint and a LoRA,
    finished with one image."""
    options = {
        "prompt": PROMPT,
        "workflow": "sdxl",
        "count": 1,
        "model": "Juggernaut XL",
        "loras": "glow:0.7",
    }
    ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options=options)
    public_id = queued_id(ix)
    assert f"“{PROMPTED}”" in ix.wait_response()["data"]["content"], "the prompt is echoed"
    finish(services, public_id)
    result = wait_answer(emu, ix, public_id)
    job = services.queue.get(public_id)
    assert job is not None and job.workflow_name == "sdxl-txt2img"
    assert job.params.root["model"] == JUGGERNAUT
    assert job.params.root["loras"] == "glow-xl.safetensors:0.7"
    return job, result


def pressed(emu: DiscordEmulator, services: Services, result: Message, custom_id: str) -> JobRecord:
    """Click a button that queues a job; the job it queued."""
    ix = emu.click(result, custom_id, USER)
    return queued_job(services, ix)


def queued_job(services: Services, ix: Interaction) -> JobRecord:
    public_id = queued_id(ix)
    job = services.queue.get(public_id)
    assert job is not None, ix.wait_response()
    return job


def test_every_button_under_an_sdxl_result_keeps_sdxl_its_prompt_and_checkpoint(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        source, result = sdxl_result(emu, services)
        j = source.public_id
        offered = set(buttons(result))
        expected = {
            f"sh:s:{j}:0",  # Vary (Subtle)
            f"sh:t:{j}:0",  # Vary (Strong)
            f"sh:g:{j}:0",  # Vary (Region)
            f"sh:u:{j}:0",  # Upscale (2x)
            f"sh:c:{j}:0",  # Upscale (Creative)
            f"sh:z:{j}:0",  # Zoom Out 1.5x
            f"sh:w:{j}:0",  # Zoom Out 2x
            f"sh:h:{j}:0",  # Pan left
            f"sh:l:{j}:0",  # Pan right
            f"sh:r:{j}",
            f"sh:m:{j}",
            f"sh:d:{j}",
        }
        assert expected <= offered, offered
        [image] = source.result.images if source.result else []

        subtle = pressed(emu, services, result, f"sh:s:{j}:0")
        strong = pressed(emu, services, result, f"sh:t:{j}:0")
        assert subtle.workflow_name == strong.workflow_name == "sdxl-img2img"
        assert (subtle.params.root["denoise"], strong.params.root["denoise"]) == (0.35, 0.7)

        creative = pressed(emu, services, result, f"sh:c:{j}:0")
        assert creative.workflow_name == "sdxl-upscale-creative"

        zoom = pressed(emu, services, result, f"sh:z:{j}:0")
        zoom2 = pressed(emu, services, result, f"sh:w:{j}:0")
        assert zoom.workflow_name == zoom2.workflow_name == "sdxl-outpaint"
        assert zoom.params.root["left"] == 16 and zoom2.params.root["left"] == 32  # 64 px wide
        assert zoom2.params.root["top"] == 24  # 48 px high: half of it above

        left = pressed(emu, services, result, f"sh:h:{j}:0")
        down = pressed(emu, services, result, f"sh:j:{j}:0")
        assert left.workflow_name == down.workflow_name == "sdxl-outpaint"
        assert (left.params.root["left"], left.params.root["right"]) == (32, 0)
        assert (down.params.root["bottom"], down.params.root["top"]) == (24, 0)

        for job in (subtle, strong, creative, zoom, zoom2, left, down):
            assert job.params.root["prompt"] == PROMPTED
            assert job.params.root["model"] == JUGGERNAUT
            assert job.params.root["loras"] == "glow-xl.safetensors:0.7"
            loaders = [n for n in job.graph.root.values() if n.class_type == "LoraLoader"]
            assert [n.inputs["lora_name"] for n in loaders] == ["glow-xl.safetensors"]
            assert job.params.root["image"] == image.key
            assert job.workflow_name in SDXL_FAMILY

        # Upscale (2x) runs the model upscaler, which knows no family; its result's
        # buttons still lead back to SDXL.
        press = emu.click(result, f"sh:u:{j}:0", USER)
        upscale = queued_job(services, press)
        assert upscale.workflow_name == "upscale-2x"
        finish(services, upscale.public_id)
        upscaled = wait_answer(emu, press, upscale.public_id)
        assert f"sh:u:{upscale.public_id}:0" not in buttons(upscaled), "not larger again"
        again = pressed(emu, services, upscaled, f"sh:s:{upscale.public_id}:0")
        assert again.workflow_name == "sdxl-img2img" and again.params.root["prompt"] != ""


def test_a_grids_variations_and_enhance_keep_sdxl(
    emu: DiscordEmulator, services: Services, openai_chat: OpenAIChatDouble
) -> None:
    enable_prompt_help(services, openai_chat)
    with running_bot(services, emu):
        options = {"prompt": PROMPT, "workflow": "sdxl", "count": 2, "model": "juggernaut"}
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options=options)
        public_id = queued_id(ix)
        finish(services, public_id, images=2)
        result = wait_answer(emu, ix, public_id)
        variations = pressed(emu, services, result, f"sh:v:{public_id}:1")
        assert variations.workflow_name == "sdxl-variations"
        assert variations.params.root["model"] == JUGGERNAUT
        enhanced = pressed(emu, services, result, f"sh:e:{public_id}")
        assert enhanced.workflow_name == "sdxl-txt2img"
        assert enhanced.params.root["model"] == JUGGERNAUT
        assert enhanced.params.root["prompt"] == PROMPT + ENHANCED


def test_remix_opens_a_form_with_the_prompt_and_options_and_runs_what_is_sent(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        source, result = sdxl_result(emu, services)
        ix = emu.click(result, f"sh:m:{source.public_id}", USER)
        form = ix.wait_response()
        assert form["type"] == 9
        fields = {
            row["components"][0]["custom_id"]: row["components"][0]
            for row in form["data"]["components"]
        }
        assert fields["prompt"]["value"] == PROMPTED
        labels = {row["components"][0]["label"] for row in form["data"]["components"]}
        # The prompt and the workflow's first four options, by the names users read.
        assert labels == {"Prompt", "Negative prompt", "Steps", "Guidance", "Sampler"}
        assert fields["negative_prompt"]["value"] == source.params.root["negative_prompt"]
        sent = emu.submit_form(ix, USER, {"prompt": "a lighthouse at night", "steps": "30"})
        remixed = queued_job(services, sent)
        assert remixed.workflow_name == "sdxl-txt2img"
        # The LoRA carried along brings its trigger word back.
        assert remixed.params.root["prompt"] == "a lighthouse at night, neon"
        assert remixed.params.root["loras"] == "glow-xl.safetensors:0.7"
        assert remixed.params.root["steps"] == 30
        assert remixed.params.root["model"] == JUGGERNAUT
        assert remixed.params.root["seed"] != source.params.root["seed"], "a new seed"


def test_vary_region_links_to_the_editor_whose_inpaint_result_stays_sdxl_and_arrives_here(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        source, result = sdxl_result(emu, services)
        ix = emu.click(result, f"sh:g:{source.public_id}:0", USER)
        answer = ix.wait_response()
        assert answer["type"] == 4 and answer["data"]["flags"] & 64, "only the presser sees it"
        [link] = [
            c["url"]
            for row in answer["data"].get("components", [])
            for c in row["components"]
            if c.get("url")
        ]
        assert link.startswith("https://sh.example/edit/")
        with TestClient(make_app(services)) as web:
            sent = web.post(
                link.removeprefix("https://sh.example"),
                data={"prompt": "a red door"},
                files={"mask": ("mask.png", region_mask(64, 48), "image/png")},
            )
        assert sent.status_code == 202, sent.text
        inpaint = services.queue.get(sent.json()["id"])
        assert inpaint is not None and inpaint.workflow_name == "sdxl-inpaint"
        assert inpaint.params.root["model"] == JUGGERNAUT
        assert inpaint.params.root["loras"] == "glow-xl.safetensors:0.7"
        assert inpaint.params.root["prompt"] == "a red door, neon"
        [(_, image)] = finish(services, inpaint.public_id, colors=["red"])

        def posted() -> list[Message]:
            return [
                m
                for m in emu.channel_messages(CHANNEL)
                if f"`{inpaint.public_id}`" in m.content and m.attachments
            ]

        [message] = wait_until(posted, 15, what="the inpaint result in the channel")
        assert [a.data for a in message.attachments] == [image]


def region_mask(width: int, height: int) -> bytes:
    """White where to repaint: a square in the middle."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (16, 12, 48, 36))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_private_lora_is_refused_to_others_with_a_sentence(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        options = {"prompt": PROMPT, "workflow": "sdxl", "loras": "ink wash:0.5"}
        ix = emu.slash_command(GUILD, CHANNEL, USER, "serve", options=options)
        text = ix.wait_response()["data"]["content"]
        assert "“Ink Wash”" in text and "secret-ink" not in text, text
        assert services.queue.get_by_interaction(ix.id) is None


def test_someone_elses_result_is_not_varied_or_repainted_by_another_user(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        source, result = sdxl_result(emu, services)
        for button in (f"sh:g:{source.public_id}:0", f"sh:s:{source.public_id}:0"):
            ix = emu.click(result, button, OTHER_USER)
            text = ix.wait_response()["data"]["content"]
            assert text.startswith("You can only use your own images"), (button, text)
