"""/loras through the emulator with the real discord.py: each user sees the models and
LoRAs they may use where they ask (public ones, those of the server, of one of their
roles, or their own), privately, filtered by family; and the autocomplete bodies /serve
uses for its `model` and comma-separated `loras` options."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.commands.models import lora_choices, lora_requests, model_choices
from stillhouse.intake import GenerationRequest, Refusal
from stillhouse.models_catalog import Asker, LoraRequest, ModelCatalog
from stillhouse.schemas.manifest import Family
from stillhouse.services import Services
from tests.bot.conftest import bot_settings, empty_moderation, make_services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    OTHER_GUILD,
    OTHER_USER,
    USER,
    guilds,
    running_bot,
)
from tests.doubles.discord import DiscordEmulator

ROLE = 1_300_000_000_000_000_301
CATALOG = f"""
[checkpoints.dreamshaper]
title = "DreamShaper 8"
family = "sd15"
file = "dreamshaper_8.safetensors"

[loras.detail]
title = "Add Detail"
family = "sd15"
file = "add_detail.safetensors"
trigger_words = ["detailed"]
default_weight = 0.6
preview = "https://example.com/detail.png"

[loras.glow]
title = "Neon Glow"
family = "sdxl"
file = "glow-xl.safetensors"

[loras.pixel-art]
title = "Pixel Art"
family = "sd15"
file = "secret-pixel.safetensors"
access = {{ servers = [{GUILD}] }}

[loras.ink]
title = "Ink Wash"
family = "sd15"
file = "secret-ink.safetensors"
access = {{ roles = [{ROLE}] }}
"""


def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(CATALOG)
    return path


@pytest.fixture
def services(mariadb_engine: Engine, mariadb_url: str, tmp_path: Path) -> Services:
    empty_moderation(mariadb_engine)
    settings = bot_settings(mariadb_url, tmp_path, {"per_minute": 1000})
    workflows = settings.workflows.model_copy(update={"models_file": catalog_file(tmp_path)})
    return make_services(mariadb_engine, settings.model_copy(update={"workflows": workflows}))


@pytest.fixture
def emu() -> Iterator[DiscordEmulator]:
    """The harness's guilds, USER holding ROLE in the first."""
    specs = guilds()
    specs[0] = dataclasses.replace(specs[0], role_members={ROLE: {USER}})
    with DiscordEmulator(guilds=specs) as emulator, emulator.patched():
        yield emulator


def loras_said(emu: DiscordEmulator, guild: int, channel: int, user: int, **options: object) -> str:
    ix = emu.slash_command(guild, channel, user, "loras", options=options)
    data = ix.wait_response()["data"]
    assert data["flags"] == 64, "/loras answers privately"
    return str(data["content"])


def test_loras_lists_what_each_user_may_use_where_they_ask(
    emu: DiscordEmulator, services: Services
) -> None:
    with running_bot(services, emu):
        with_role = loras_said(emu, GUILD, CHANNEL, USER)
        without_role = loras_said(emu, GUILD, CHANNEL, OTHER_USER)
        elsewhere = loras_said(emu, OTHER_GUILD, OTHER_CHANNEL, USER)
        sdxl_only = loras_said(emu, GUILD, CHANNEL, USER, family="sdxl")

    assert with_role.splitlines() == [
        "**Models you can use here**",
        "- **DreamShaper 8** (`dreamshaper`) - SD 1.5",
        "**LoRAs you can use here**",
        "- **Add Detail** (`detail`) - SD 1.5 - trigger words: detailed - weight 0.6 - "
        "[preview](<https://example.com/detail.png>)",
        "- **Ink Wash** (`ink`) - SD 1.5 - weight 1",
        "- **Neon Glow** (`glow`) - SDXL - weight 1",
        "- **Pixel Art** (`pixel-art`) - SD 1.5 - weight 1",
        "Name them in /serve's `model` and `loras` options (`name:weight`, comma-separated).",
    ]
    assert "Pixel Art" in without_role and "Ink Wash" not in without_role  # no role
    # Another server: neither its private LoRA nor the role, which is the first server's.
    assert (
        "Ink Wash" not in elsewhere and "Pixel Art" not in elsewhere and "Add Detail" in elsewhere
    )
    assert sdxl_only.splitlines()[:4] == [
        "**Models you can use here (SDXL)**",
        "- none",
        "**LoRAs you can use here (SDXL)**",
        "- **Neon Glow** (`glow`) - SDXL - weight 1",
    ]
    for said in (with_role, without_role, elsewhere, sdxl_only):
        assert ".safetensors" not in said and str(ROLE) not in said and str(GUILD) not in said


def test_lora_autocomplete_completes_the_last_item_among_the_users_loras(
    tmp_path: Path,
) -> None:
    catalog = ModelCatalog.from_file(catalog_file(tmp_path))

    def offered(current: str, user: int = USER, roles: tuple[int, ...] = ()) -> list[str]:
        return [
            c.value for c in lora_choices(catalog, Asker(user, GUILD, frozenset(roles)), current)
        ]

    assert offered("") == ["detail", "glow", "pixel-art"]  # no role: no Ink Wash
    assert offered("", roles=(ROLE,)) == ["detail", "ink", "glow", "pixel-art"]
    assert offered("detail:0.8, pix") == ["detail:0.8, pixel-art"]
    assert offered("pixel art:1, ad:0.5") == ["pixel art:1, detail:0.5"]
    assert offered("detail, ") == ["detail, glow", "detail, pixel-art"]  # named once only
    choice = lora_choices(catalog, Asker(USER, GUILD), "detail:0.8, neon", family=None)[0]
    assert choice.name == "detail:0.8, Neon Glow (SDXL)"
    assert offered("", user=USER) == offered("")  # the same for any user without access
    assert lora_choices(catalog, Asker(USER, OTHER_GUILD), "pix") == []
    assert [c.value for c in lora_choices(catalog, Asker(USER, GUILD), "", family=Family.SDXL)] == [
        "glow"
    ]
    long = ", ".join(["x" * 30] * 3)
    assert lora_choices(catalog, Asker(USER, GUILD), long + ", det") == []  # over 100 characters


def test_model_autocomplete_and_the_loras_option_as_the_intake_takes_it(
    tmp_path: Path,
) -> None:
    catalog = ModelCatalog.from_file(catalog_file(tmp_path))
    choices = model_choices(catalog, Asker(USER, GUILD), "dream")
    assert [(c.name, c.value) for c in choices] == [("DreamShaper 8 (SD 1.5)", "dreamshaper")]
    assert model_choices(catalog, Asker(USER, GUILD), "", family=Family.SDXL) == []
    assert lora_requests("detail:0.8, Pixel Art ,ink:-1") == [
        LoraRequest(name="detail", weight=0.8),
        LoraRequest(name="Pixel Art"),
        LoraRequest(name="ink", weight=-1),
    ]
    assert lora_requests(None) == [] and lora_requests(" , ") == []
    with pytest.raises(Refusal, match=r"The weight of “detail” must be between -2 and 2\."):
        lora_requests("detail:3")


def test_the_intake_opens_a_private_lora_to_its_role_and_its_server_only(
    services: Services,
) -> None:
    intake = services.intake
    request = GenerationRequest(
        workflow="sd15-txt2img",
        values={"prompt": "a fox"},
        loras=[LoraRequest(name="ink", weight=0.5)],
    )
    with pytest.raises(Refusal) as refused:
        intake.prepare(request, GUILD, asker=Asker(user_id=USER))
    assert refused.value.kind == "forbidden"
    assert str(refused.value) == (
        "“Ink Wash” is private to members with certain roles; you cannot use it here."
    )
    bound = intake.prepare(request, GUILD, asker=Asker(user_id=USER, role_ids=frozenset({ROLE})))
    assert bound.params.root["loras"] == "secret-ink.safetensors:0.5"
    # A server's own LoRA: asked in that server, by anyone; elsewhere, refused.
    servers = request.model_copy(update={"loras": [LoraRequest(name="pixel art")]})
    assert intake.prepare(servers, GUILD).params.root["loras"] == "secret-pixel.safetensors:1"
    with pytest.raises(Refusal, match="private to some servers' members"):
        intake.prepare(servers, OTHER_GUILD, asker=Asker(user_id=USER))
