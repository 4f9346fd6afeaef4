"""The HTTP API on both databases: keys, creating, reading, cancelling and following
generations, refusals as status codes with sentences, images behind signed URLs."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.ids import new_owner
from stillhouse.moderation import INTAKE_PAUSED
from stillhouse.schemas.states import DeliveryStatus, JobStatus
from stillhouse.services import Services
from tests.api.conftest import KEY, OTHER_KEY
from tests.bot.conftest import bot_settings, make_services
from tests.bot.harness import finish, stored_result

PROMPT = {"prompt": "a lighthouse at dawn"}


def test_a_key_is_required_when_keys_are_configured(
    client: TestClient, api_services: Services
) -> None:
    with TestClient(make_app(api_services)) as anonymous:
        missing = anonymous.post("/v1/generations", json=PROMPT)
    wrong = client.post(
        "/v1/generations", json=PROMPT, headers={"Authorization": "Bearer wrong-key-0123456789"}
    )
    for answer in (missing, wrong):
        assert answer.status_code == 401
        assert "API key is required" in answer.json()["detail"]
    as_header = client.post("/v1/generations", json=PROMPT, headers={"X-API-Key": OTHER_KEY})
    assert as_header.status_code == 202


def test_a_generation_is_queued_and_read_back_by_its_owner_only(
    client: TestClient, api_services: Services
) -> None:
    answer = client.post("/v1/generations", json={**PROMPT, "count": 2, "seed": 5})
    assert answer.status_code == 202
    created = answer.json()
    assert created["status"] == "queued" and created["position"] == 0
    assert created["params"]["seed"] == 5 and created["params"]["count"] == 2
    read = client.get(f"/v1/generations/{created['id']}").json()
    assert read["id"] == created["id"] and read["status"] == "queued"
    theirs = client.get(
        f"/v1/generations/{created['id']}", headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert theirs.status_code == 404
    job = api_services.queue.get(created["id"])
    assert job is not None and job.routing.source == "api" and job.routing.user_id < 0


def test_an_idempotency_key_makes_a_retry_return_the_same_generation(
    client: TestClient,
) -> None:
    first = client.post("/v1/generations", json=PROMPT, headers={"Idempotency-Key": "abc"})
    again = client.post("/v1/generations", json=PROMPT, headers={"Idempotency-Key": "abc"})
    other = client.post("/v1/generations", json=PROMPT, headers={"Idempotency-Key": "xyz"})
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]


def test_refusals_are_status_codes_with_a_sentence(
    client: TestClient, api_services: Services
) -> None:
    cases = [
        ({**PROMPT, "count": 9}, 422, "less than or equal to 4"),
        ({**PROMPT, "workflow": "nope"}, 422, "No workflow named 'nope'"),
        ({"prompt": "so much gore"}, 422, "“gore”"),
        ({**PROMPT, "params": {"steps": 500}}, 422, "steps is 500; the maximum is 60"),
        # A picture with a text-to-image request goes to its family's image workflow,
        # whose workers fetch only from the hosts they accept.
        (
            {**PROMPT, "image_url": "https://example.com/a.png"},
            422,
            "input images may not come from example.com",
        ),
    ]
    for body, status, says in cases:
        answer = client.post("/v1/generations", json=body)
        assert answer.status_code == status, answer.text
        assert says in answer.text
    api_services.moderation.set_switch(INTAKE_PAUSED, True, "maintenance")
    paused = client.post("/v1/generations", json=PROMPT)
    assert paused.status_code == 503 and "paused" in paused.json()["detail"]
    api_services.moderation.set_switch(INTAKE_PAUSED, False)
    assert sum(api_services.queue.counts().values()) == 0


def test_too_many_unfinished_requests_is_a_429(client: TestClient) -> None:
    for _ in range(5):
        assert client.post("/v1/generations", json=PROMPT).status_code == 202
    answer = client.post("/v1/generations", json=PROMPT)
    assert answer.status_code == 429 and "already have 5 requests" in answer.json()["detail"]


def test_a_finished_generation_lists_its_images_behind_signed_urls(
    client: TestClient, api_services: Services
) -> None:
    created = client.post("/v1/generations", json=PROMPT).json()
    [(key, data)] = finish(api_services, created["id"])
    done = client.get(f"/v1/generations/{created['id']}").json()
    assert done["status"] == "succeeded" and [i["key"] for i in done["images"]] == [key]
    image = client.get(done["images"][0]["url"])
    assert image.status_code == 200 and image.content == data
    assert Image.open(io.BytesIO(image.content)).size == (64, 48)
    tampered = client.get(done["images"][0]["url"].replace("signature=", "signature=0"))
    assert tampered.status_code == 403
    job = api_services.queue.get(created["id"])
    assert job is not None
    [row] = api_services.sends.for_job(job.id)
    assert row.status is DeliveryStatus.SENT  # no bot will try to deliver an API result


def test_a_repeated_request_with_a_fixed_seed_is_answered_from_storage_at_once(
    client: TestClient, api_services: Services
) -> None:
    asked = {**PROMPT, "seed": 11}
    first = client.post("/v1/generations", json=asked).json()
    [(key, _)] = finish(api_services, first["id"])
    again = client.post("/v1/generations", json=asked)
    assert again.status_code == 202
    answer = again.json()
    assert answer["status"] == "succeeded" and answer["reused_from"] == first["id"]
    assert [i["key"] for i in answer["images"]] == [key] and answer["id"] != first["id"]
    assert client.get(f"/v1/generations/{first['id']}").json()["reused_from"] is None
    fresh = client.post("/v1/generations", json={**asked, "seed": 12}).json()
    assert fresh["status"] == "queued" and fresh["reused_from"] is None


def test_delete_cancels(client: TestClient, api_services: Services) -> None:
    created = client.post("/v1/generations", json=PROMPT).json()
    cancelled = client.delete(f"/v1/generations/{created['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_events_follow_progress_until_done(client: TestClient, api_services: Services) -> None:
    created = client.post("/v1/generations", json=PROMPT).json()
    [job] = api_services.queue.claim(new_owner("test-master"), 1)
    api_services.queue.mark_running(job, "gpu-1")
    api_services.queue.set_progress(job, 0.5, "step 10/20")
    events: list[tuple[str, dict[str, object]]] = []
    with client.stream("GET", f"/v1/generations/{created['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
                if name == "progress":
                    api_services.queue.complete(
                        job, stored_result(api_services.storage, job.public_id)[0]
                    )
                if name == "done":
                    break
    assert [n for n, _ in events] == ["progress", "done"]
    assert events[0][1]["progress"] == 0.5 and events[0][1]["progress_note"] == "step 10/20"
    assert events[1][1]["status"] == JobStatus.SUCCEEDED


def test_a_stream_hears_the_end_at_once_not_at_its_next_look(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        database_url,
        tmp_path,
        {"per_minute": 100},
        api={"keys": f"alice:{KEY}", "events_interval_s": 30},
    )
    services = make_services(engine, settings)
    with TestClient(make_app(services), headers={"Authorization": f"Bearer {KEY}"}) as client:
        created = client.post("/v1/generations", json=PROMPT).json()
        [job] = services.queue.claim(new_owner("test-master"), 1)
        services.queue.mark_running(job, "gpu-1")
        ended_at = 0.0
        with client.stream("GET", f"/v1/generations/{created['id']}/events") as stream:
            for line in stream.iter_lines():
                if line == "event: progress":
                    ended_at = time.monotonic()
                    services.queue.complete(job, stored_result(services.storage, job.public_id)[0])
                if line == "event: done":
                    break
        assert time.monotonic() - ended_at < 5, "done came at the stream's next look (30 s)"


def test_workflows_openapi_and_playground(client: TestClient) -> None:
    listed = {w["name"]: w for w in client.get("/v1/workflows").json()}
    assert "sd15-txt2img" in listed and "upscale-2x" not in listed, "buttons' workflows"
    sdxl_image = listed["sdxl-img2img"]
    assert (sdxl_image["purpose"], sdxl_image["family"], sdxl_image["takes_loras"]) == (
        "img2img",
        "sdxl",
        True,
    )
    spec = client.get("/openapi.json").json()
    assert {"/v1/generations", "/v1/generations/{generation_id}", "/v1/workflows"} <= set(
        spec["paths"]
    )
    page = client.get("/")
    assert page.status_code == 200 and "stillhouse playground" in page.text
