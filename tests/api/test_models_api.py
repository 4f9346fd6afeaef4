"""The API's `model` and `loras`: resolved through the operators' models catalog for the
caller (their user id opens a LoRA private to them), chained into the queued graph with
their trigger words; a private LoRA is refused as forbidden (403) in a sentence that
names neither its file nor any id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import make_app
from api.auth import api_user_id
from stillhouse.services import Services
from tests.api.conftest import KEY, OTHER_KEY
from tests.bot.conftest import bot_settings, empty_moderation, make_services

PROMPT = {"prompt": "a lighthouse at dawn", "workflow": "sd15-txt2img"}
ALICE = api_user_id("alice")


@pytest.fixture
def services(engine: Engine, database_url: str, tmp_path: Path) -> Services:
    """Two API keys and a catalog with a public LoRA, one private to alice and a model."""
    empty_moderation(engine)
    catalog = tmp_path / "models.toml"
    catalog.write_text(
        f"""
[checkpoints.dreamshaper]
title = "DreamShaper 8"
family = "sd15"
file = "dreamshaper_8.safetensors"

[loras.detail]
title = "Add Detail"
family = "sd15"
file = "add_detail.safetensors"

[loras.pixel-art]
title = "Pixel Art"
family = "sd15"
file = "secret-pixel-v3.safetensors"
trigger_words = ["pixel art"]
default_weight = 0.7
access = {{ users = [{ALICE}] }}
"""
    )
    settings = bot_settings(
        database_url,
        tmp_path,
        {"per_minute": 100, "max_active_jobs": 5},
        api={"keys": f"alice:{KEY},bob:{OTHER_KEY}"},
    )
    workflows = settings.workflows.model_copy(update={"models_file": catalog})
    return make_services(engine, settings.model_copy(update={"workflows": workflows}))


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(make_app(services), headers={"Authorization": f"Bearer {KEY}"}) as test:
        yield test


def test_a_lora_private_to_someone_else_is_refused_as_forbidden(client: TestClient) -> None:
    body = {**PROMPT, "loras": [{"name": "pixel art"}]}
    answer = client.post(
        "/v1/generations", json=body, headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert answer.status_code == 403
    assert answer.json() == {
        "detail": "“Pixel Art” is private to certain users; you cannot use it here."
    }
    # Nor through the parameters, where Reroll carries the files.
    hidden = {**PROMPT, "params": {"loras": "secret-pixel-v3.safetensors:1"}}
    answer = client.post(
        "/v1/generations", json=hidden, headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert answer.status_code == 403 and "secret" not in answer.text


def test_the_callers_own_lora_and_a_model_are_chained_into_the_queued_graph(
    client: TestClient, services: Services
) -> None:
    body = {
        **PROMPT,
        "model": "DreamShaper 8",
        "loras": [{"name": "Pixel-Art"}, {"name": "detail", "weight": -0.5}],
    }
    answer = client.post("/v1/generations", json=body)
    assert answer.status_code == 202, answer.text
    params = answer.json()["params"]
    assert params["loras"] == "secret-pixel-v3.safetensors:0.7,add_detail.safetensors:-0.5"
    assert params["model"] == "dreamshaper_8.safetensors"
    assert params["prompt"] == "a lighthouse at dawn, pixel art"
    job = services.queue.get(answer.json()["id"])
    assert job is not None
    graph = job.graph.root
    loaders = [n for n in graph.values() if n.class_type == "LoraLoader"]
    assert [n.inputs["lora_name"] for n in loaders] == [
        "secret-pixel-v3.safetensors",
        "add_detail.safetensors",
    ]
    assert graph["4"].inputs["ckpt_name"] == "dreamshaper_8.safetensors"


def test_unknown_names_and_out_of_range_weights_are_422_sentences(client: TestClient) -> None:
    unknown = client.post("/v1/generations", json={**PROMPT, "loras": [{"name": "ad detail"}]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        "There is no LoRA “ad detail” you can use here. Did you mean “Add Detail”? "
        "See the list of LoRAs."
    )
    heavy = client.post(
        "/v1/generations", json={**PROMPT, "loras": [{"name": "detail", "weight": 5}]}
    )
    assert heavy.status_code == 422 and "less than or equal to 2" in heavy.json()["detail"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["LoraIn"]["properties"]) == {"name", "weight"}
    assert {"model", "loras"} <= set(schema["GenerationIn"]["properties"])
