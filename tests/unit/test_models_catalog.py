"""The models catalog: the operators' file read with errors that name the field, models
found however users spell them, private ones kept to the servers, roles and users they
are for (with a sentence that names no file and no id), and a request's checkpoint and
LoRAs resolved into what the binder takes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stillhouse.config import WorkflowSettings
from stillhouse.models_catalog import (
    Asker,
    LoraRequest,
    ModelCatalog,
    ModelKind,
    ModelRefused,
    ModelsFileError,
    choose,
)
from stillhouse.schemas.manifest import Family, ParamValue
from stillhouse.workflows.binder import bind
from stillhouse.workflows.loader import WorkflowCatalog
from stillhouse.workflows.loras import LoraChoice

WORKFLOWS = WorkflowCatalog.load()
SD15, SDXL = WORKFLOWS.get("sd15-txt2img"), WORKFLOWS.get("sdxl-txt2img")
SERVER, ROLE, FRIEND, STRANGER = 111, 222, 333, 444
CATALOG_TOML = f"""
[checkpoints.dreamshaper]
title = "DreamShaper 8"
family = "sd15"
file = "dreamshaper_8.safetensors"
url = "https://example.com/dreamshaper_8.safetensors"

[checkpoints.juggernaut]
title = "Juggernaut XL"
family = "sdxl"
file = "juggernaut-xl.safetensors"
access = {{ users = [{FRIEND}] }}

[loras.detail]
title = "Add Detail"
family = "sd15"
file = "add_detail.safetensors"
default_weight = 0.6

[loras.pixel-art]
title = "Pixel Art"
family = "sd15"
file = "secret-pixel-v3.safetensors"
url = "https://example.com/secret-pixel-v3.safetensors"
trigger_words = ["pixel art", "8-bit"]
default_weight = 0.9
preview = "https://example.com/pixel.png"
access = {{ servers = [{SERVER}] }}

[loras.ink]
title = "Ink Wash"
family = "sd15"
file = "ink.safetensors"
access = {{ roles = [{ROLE}], users = [{FRIEND}] }}

[loras.glow]
title = "Neon Glow"
family = "sdxl"
file = "glow-xl.safetensors"
"""


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    path = tmp_path / "models.toml"
    path.write_text(CATALOG_TOML)
    return ModelCatalog.load(WorkflowSettings(models_file=path), WORKFLOWS)


def names(models: list[Any]) -> list[str]:
    return [m.name for m in models]


def test_without_a_file_the_catalog_holds_the_workflows_default_checkpoints() -> None:
    built_in = ModelCatalog.load(WorkflowSettings(), WORKFLOWS)
    files = {m.file: m.family for m in built_in.checkpoints.values()}
    for workflow in (SD15, SDXL, WORKFLOWS.get("flux-schnell-txt2img")):
        manifest = workflow.manifest
        assert manifest.checkpoint is not None
        default = manifest.parameters[manifest.checkpoint].default
        assert files[str(default)] is manifest.family
    assert built_in.loras == {}
    sd15 = built_in.find(ModelKind.CHECKPOINT, "Stable Diffusion 1.5")
    assert sd15 is not None and sd15.access.public and sd15.url is not None


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ({"family": "sd3"}, "loras.x.family: Input should be 'sd15', 'sdxl' or 'flux'"),
        ({"url": "http://example.com/x"}, "loras.x.url: String should match pattern"),
        ({"default_weight": 3}, "loras.x.default_weight: Input should be less than or equal to 2"),
        ({"file": "../escape.safetensors"}, "loras.x.file: String should match pattern"),
        ({"colour": "red"}, "loras.x.colour: Extra inputs are not permitted"),
        ({"access": {"guilds": [1]}}, "loras.x.access.guilds: Extra inputs are not permitted"),
        ({"name": "y"}, "loras.x: `name` is the table's key; leave it out"),
        ({"trigger_words": ["a, b"]}, "loras.x.trigger_words: Value error"),
    ],
)
def test_a_bad_entry_is_reported_with_the_field_that_is_wrong(
    edit: dict[str, object], said: str
) -> None:
    entry: dict[str, object] = {"family": "sd15", "file": "x.safetensors", **edit}
    with pytest.raises(ModelsFileError) as refused:
        ModelCatalog.from_data({"loras": {"x": entry}}, "models.toml")
    message = str(refused.value)
    assert message.startswith("models.toml: ")
    assert said.removesuffix(": Value error") in message, message


def test_names_that_read_the_same_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    twins = {
        "pixel-art": {"family": "sd15", "file": "a.safetensors"},
        "other": {"title": "Pixel_Art", "family": "sd15", "file": "b.safetensors"},
    }
    with pytest.raises(ModelsFileError, match=r"loras\.other: its name or title reads the same"):
        ModelCatalog.from_data({"loras": twins})
    with pytest.raises(ModelsFileError, match=r"checkpoints\.a b: a name is letters"):
        ModelCatalog.from_data({"checkpoints": {"a b": {"family": "sd15", "file": "a.ckpt"}}})
    broken = tmp_path / "models.toml"
    broken.write_text("[loras.x\n")
    with pytest.raises(ModelsFileError, match=re.escape(f"models file {broken}: not valid TOML")):
        ModelCatalog.from_file(broken)
    with pytest.raises(ModelsFileError, match=r"models file .*missing\.toml"):
        ModelCatalog.from_file(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "typed", ["Pixel Art", "pixel-art", "PIXEL_ART", " pixelart ", "pixel.art"]
)
def test_a_model_is_found_by_name_or_title_however_it_is_spelt(
    catalog: ModelCatalog, typed: str
) -> None:
    found = catalog.find(ModelKind.LORA, typed)
    assert found is not None and found.name == "pixel-art"


def test_a_model_is_found_by_its_file_and_not_across_kinds(catalog: ModelCatalog) -> None:
    assert catalog.find(ModelKind.LORA, "add_detail.safetensors") == catalog.loras["detail"]
    assert catalog.find(ModelKind.CHECKPOINT, "detail") is None
    assert catalog.find(ModelKind.LORA, "") is None


def test_a_private_lora_is_refused_with_a_sentence_and_no_ids_or_files(
    catalog: ModelCatalog,
) -> None:
    elsewhere = Asker(user_id=STRANGER, guild_id=999, role_ids=frozenset({5}))
    with pytest.raises(ModelRefused) as refused:
        catalog.resolve(ModelKind.LORA, "pixel art", elsewhere, Family.SD15)
    said = str(refused.value)
    assert said == "“Pixel Art” is private to some servers' members; you cannot use it here."
    assert refused.value.kind == "forbidden"
    with pytest.raises(ModelRefused) as refused:
        catalog.resolve(ModelKind.LORA, "ink", elsewhere)
    assert str(refused.value) == (
        "“Ink Wash” is private to members with certain roles or certain users; "
        "you cannot use it here."
    )
    for number in (SERVER, ROLE, FRIEND, 999):
        assert str(number) not in said


@pytest.mark.parametrize(
    "asker",
    [
        Asker(user_id=STRANGER, guild_id=SERVER),  # in the server
        Asker(user_id=FRIEND),  # named user, anywhere
        Asker(user_id=STRANGER, guild_id=999, role_ids=frozenset({ROLE})),  # with the role
    ],
)
def test_a_server_a_role_or_a_user_opens_the_private_model_it_names(
    catalog: ModelCatalog, asker: Asker
) -> None:
    usable = set(names(catalog.usable_loras(asker)))
    assert usable >= {"detail", "glow"}
    expected = {
        "pixel-art": asker.guild_id == SERVER,
        "ink": asker.user_id == FRIEND or ROLE in asker.role_ids,
    }
    for name, allowed in expected.items():
        assert (name in usable) is allowed
        if allowed:
            assert catalog.resolve(ModelKind.LORA, name, asker).name == name


def test_nobody_in_particular_gets_the_public_models_only(catalog: ModelCatalog) -> None:
    assert names(catalog.usable_loras(None)) == ["detail", "glow"]  # by title
    assert names(catalog.usable_loras(None, Family.SDXL)) == ["glow"]
    assert names(catalog.usable_checkpoints(Asker(user_id=FRIEND))) == [
        "dreamshaper",
        "juggernaut",
    ]
    assert names(catalog.usable_checkpoints(None)) == ["dreamshaper"]


def test_an_unknown_name_suggests_close_ones_the_user_may_use_only(
    catalog: ModelCatalog,
) -> None:
    with pytest.raises(ModelRefused) as refused:
        catalog.resolve(ModelKind.LORA, "pixel arts", Asker(user_id=STRANGER))
    # Pixel Art is private to a server the user is not in: not suggested, not named.
    assert str(refused.value) == (
        "There is no LoRA “pixel arts” you can use here. See the list of LoRAs."
    )
    with pytest.raises(ModelRefused) as refused:
        catalog.resolve(ModelKind.LORA, "add detial", None)
    assert str(refused.value) == (
        "There is no LoRA “add detial” you can use here. Did you mean “Add Detail”? "
        "See the list of LoRAs."
    )
    assert refused.value.kind == "invalid"


def test_a_lora_of_another_family_is_refused_naming_both(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelRefused) as refused:
        catalog.resolve(
            ModelKind.LORA, "neon glow", None, Family.SD15, workflow_title="Stable Diffusion 1.5"
        )
    assert str(refused.value) == (
        "“Neon Glow” is a SDXL LoRA and Stable Diffusion 1.5 runs SD 1.5 models; "
        "pick another LoRA or workflow."
    )


def test_choose_puts_the_checkpoint_file_in_place_and_adds_missing_trigger_words(
    catalog: ModelCatalog,
) -> None:
    values: dict[str, ParamValue] = {"prompt": "a castle, 8-BIT"}
    asker = Asker(user_id=STRANGER, guild_id=SERVER)
    chosen = choose(
        catalog,
        SD15,
        values,
        asker,
        model="DreamShaper 8",
        loras=[LoraRequest(name="pixel art"), LoraRequest(name="detail", weight=-0.5)],
    )
    assert chosen == [
        LoraChoice("secret-pixel-v3.safetensors", 0.9, 0.9),
        LoraChoice("add_detail.safetensors", -0.5, -0.5),
    ]
    assert values == {"prompt": "a castle, 8-BIT, pixel art", "model": "dreamshaper_8.safetensors"}


def test_a_rerolled_job_resolves_its_recorded_loras_again_for_whoever_asks(
    catalog: ModelCatalog,
) -> None:
    member = Asker(user_id=STRANGER, guild_id=SERVER)
    first: dict[str, ParamValue] = {"prompt": "a castle"}
    chosen = choose(catalog, SD15, first, member, loras=[LoraRequest(name="pixel-art")])
    bound = bind(SD15, first, loras=chosen)
    params = dict(bound.params.root)
    assert params["loras"] == "secret-pixel-v3.safetensors:0.9"

    again = {k: v for k, v in params.items() if k != "seed" and v is not None}
    rechosen = choose(catalog, SD15, again, member)
    assert rechosen == chosen and "loras" not in again
    assert again["prompt"] == params["prompt"]  # the trigger words are not added twice

    outsider = {k: v for k, v in params.items() if k != "seed" and v is not None}
    with pytest.raises(ModelRefused, match="“Pixel Art” is private"):
        choose(catalog, SD15, outsider, Asker(user_id=STRANGER, guild_id=999))


def test_a_checkpoint_is_checked_like_a_lora_but_the_workflows_own_needs_no_entry(
    catalog: ModelCatalog,
) -> None:
    own = SDXL.manifest.parameters["model"].default
    values: dict[str, ParamValue] = {"prompt": "x", "model": str(own)}
    assert choose(catalog, SDXL, values, None) == [] and values["model"] == own
    with pytest.raises(ModelRefused, match="“Juggernaut XL” is private to certain users"):
        choose(catalog, SDXL, {"prompt": "x", "model": "juggernaut-xl.safetensors"}, None)
    with pytest.raises(ModelRefused, match=r"“DreamShaper 8” is a SD 1\.5 model and Stable"):
        choose(catalog, SDXL, {"prompt": "x"}, None, model="dreamshaper")
    upscale = WORKFLOWS.get("upscale-2x")
    with pytest.raises(ModelRefused, match="does not let you choose a model"):
        choose(catalog, upscale, {}, None, model="dreamshaper")
    with pytest.raises(ModelRefused, match="takes no LoRAs"):
        choose(catalog, upscale, {}, None, loras=[LoraRequest(name="detail")])
    with pytest.raises(ModelRefused, match="takes at most 4 LoRAs"):
        choose(catalog, SD15, {}, None, loras=[LoraRequest(name="detail")] * 5)
    with pytest.raises(ModelRefused, match="“Add Detail” is chosen twice"):
        choose(catalog, SD15, {}, None, loras=[LoraRequest(name="detail")] * 2)


def test_downloads_list_every_model_with_a_url_in_its_folder(catalog: ModelCatalog) -> None:
    fetched = {(m.folder, m.file) for m in catalog.downloads()}
    assert fetched == {
        ("checkpoints", "dreamshaper_8.safetensors"),
        ("loras", "secret-pixel-v3.safetensors"),
    }
