"""Image input through the API: a storage key is usable only by its owner (a result of
their own job, or their upload), image URLs only from hosts the workers accept (refused
at intake with the worker's own sentence), uploads checked by content; the one-call
POST /v1/images; the caller's gallery."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.auth import api_user_id
from master.requests import worker_input
from stillhouse.ids import new_owner
from stillhouse.inputs import owner_tag
from stillhouse.intake import GenerationRequest, Refusal
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import JobStatus
from stillhouse.schemas.worker_io import ErrorInfo, InputImage
from stillhouse.services import Services
from tests.api.conftest import OTHER_KEY
from tests.bot.harness import finish, png, stored_result
from tests.support import free_port, wait_until
from worker.errors import JobFailure
from worker.inputs import check_sources

BOB = {"Authorization": f"Bearer {OTHER_KEY}"}
NOT_YOURS = "You can only use your own images"
ROOT = Path(__file__).resolve().parents[2]


def img2img(image: str) -> dict[str, Any]:
    return {"prompt": "a boat", "workflow": "sd15-img2img", "params": {"image": image}}


def upload(
    client: TestClient,
    data: bytes,
    headers: dict[str, str] | None = None,
    name: str = "photo.png",
    content_type: str = "image/png",
) -> Any:
    return client.post(
        "/v1/uploads", files={"file": (name, data, content_type)}, headers=headers or {}
    )


def encoded(image_format: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "navy").save(buffer, format=image_format)
    return buffer.getvalue()


def finished_key(client: TestClient, services: Services, headers: dict[str, str]) -> str:
    """A txt2img generation of this caller's, finished: the key of its image."""
    created = client.post("/v1/generations", json={"prompt": "a lighthouse"}, headers=headers)
    assert created.status_code == 202, created.text
    [(key, _)] = finish(services, created.json()["id"])
    return str(key)


def img2img_jobs(services: Services) -> list[JobRecord]:
    alice = api_user_id("alice")
    return [
        j for j in services.queue.of_user("api", alice, 50) if j.workflow_name == "sd15-img2img"
    ]


@pytest.mark.parametrize(
    ("image_format", "content_type", "suffix"),
    [("PNG", "image/png", ".png"), ("JPEG", "image/jpeg", ".jpg"), ("WEBP", "image/webp", ".webp")],
)
def test_an_upload_is_recognised_by_its_content_and_stored_in_the_callers_folder(
    client: TestClient, image_format: str, content_type: str, suffix: str
) -> None:
    data = encoded(image_format)
    answer = upload(client, data, name="claims-to-be.gif", content_type="image/gif")
    assert answer.status_code == 201, answer.text
    stored = answer.json()
    assert stored["content_type"] == content_type
    assert (stored["width"], stored["height"]) == (40, 30)
    assert stored["key"].startswith(f"stillhouse/uploads/{owner_tag(api_user_id('alice'))}/")
    assert stored["key"].endswith(suffix)
    fetched = client.get(stored["url"])
    assert fetched.status_code == 200 and fetched.content == data


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"just some text, not an image", 415, "not a PNG, JPEG or WebP image"),
        (encoded("GIF"), 415, "not a PNG, JPEG or WebP image"),
        (png()[:60], 415, "not a PNG, JPEG or WebP image"),
        (b"\0" * (10 * 2**20 + 1), 413, "larger than the upload limit of 10 MiB"),
        (encoded("PNG", (5000, 4000)), 422, "5000x4000; the limit is 16,777,216 pixels"),
    ],
    ids=["text", "gif", "truncated", "too-large", "too-many-pixels"],
)
def test_an_upload_that_is_not_a_usable_image_is_refused_with_a_sentence(
    client: TestClient, api_services: Services, data: bytes, status: int, says: str
) -> None:
    answer = upload(client, data)
    assert answer.status_code == status
    assert list(answer.json()) == ["detail"] and says in answer.json()["detail"]
    assert not (api_services.settings.images_dir() / "stillhouse" / "uploads").exists()


def test_someone_elses_result_is_refused_like_a_key_that_does_not_exist(
    client: TestClient, api_services: Services
) -> None:
    theirs = finished_key(client, api_services, BOB)
    job_id = theirs.split("/")[1]
    for key in (
        theirs,
        f"stillhouse/{job_id}/NoSuchImageNoSuchImage.png",  # their job, made-up image
        "stillhouse/AAAAAAAAAAAAAAAA/NoSuchImageNoSuchImage.png",  # no such job
        "someone/else/entirely.png",
    ):
        answer = client.post("/v1/generations", json=img2img(key))
        assert answer.status_code == 403, answer.text
        assert answer.json() == {"detail": answer.json()["detail"]}
        assert answer.json()["detail"].startswith(NOT_YOURS)
    assert img2img_jobs(api_services) == []


def test_a_result_of_the_callers_own_is_accepted(
    client: TestClient, api_services: Services
) -> None:
    mine = finished_key(client, api_services, {})
    answer = client.post("/v1/generations", json=img2img(mine))
    assert answer.status_code == 202, answer.text
    job = api_services.queue.get(answer.json()["id"])
    assert job is not None and [i.storage_key for i in job.inputs] == [mine]


def test_someone_elses_upload_is_refused(client: TestClient, api_services: Services) -> None:
    theirs = upload(client, png(), BOB).json()["key"]
    answer = client.post("/v1/generations", json=img2img(theirs))
    assert answer.status_code == 403 and answer.json()["detail"].startswith(NOT_YOURS)
    one_call = client.post("/v1/images", json=img2img(theirs))
    assert one_call.status_code == 403
    assert img2img_jobs(api_services) == []


def test_an_own_upload_is_accepted_and_the_worker_gets_a_signed_url_for_it(
    client: TestClient, api_services: Services
) -> None:
    data = png(80, 60, "olive")
    key = upload(client, data).json()["key"]
    answer = client.post("/v1/generations", json=img2img(key))
    assert answer.status_code == 202, answer.text
    job = api_services.queue.get(answer.json()["id"])
    assert job is not None and [i.storage_key for i in job.inputs] == [key]
    [given] = worker_input(job, api_services.settings, api_services.storage).inputs
    assert given.name.startswith("image-") and "signature=" in str(given.url)
    fetched = client.get(str(given.url))
    assert fetched.status_code == 200 and fetched.content == data


def worker_sentence(url: str, services: Services) -> str:
    """What a worker says of an input at `url`."""
    with pytest.raises(JobFailure) as refused:
        check_sources([InputImage(name="in.png", url=url)], services.settings)
    return refused.value.info.message


def test_an_image_url_the_workers_would_refuse_is_refused_at_intake_with_their_sentence(
    client: TestClient, api_services: Services
) -> None:
    url = "https://evil.example/cat.png"
    sentence = worker_sentence(url, api_services)
    assert sentence == "input images may not come from evil.example"
    for body in (
        {"prompt": "a boat", "workflow": "sd15-img2img", "image_url": url},
        img2img(url),
    ):
        answer = client.post("/v1/generations", json=body)
        assert answer.status_code == 422 and answer.json() == {"detail": sentence}
    with pytest.raises(Refusal) as refused:
        api_services.intake.prepare(
            GenerationRequest(workflow="sd15-img2img", values={"prompt": "x", "image": url})
        )
    assert str(refused.value) == sentence and refused.value.kind == "invalid"
    discord = "https://cdn.discordapp.com/attachments/1/2/cat.png"
    assert client.post("/v1/generations", json=img2img(discord)).status_code == 202
    assert img2img_jobs(api_services)[0].inputs[0].url is not None


def in_the_background(
    outcome: Callable[[Services, JobRecord], None], services: Services
) -> Future[None]:
    """A stand-in master: claims the next job when it is queued and settles it."""

    def run() -> None:
        claimed = wait_until(lambda: services.queue.claim(new_owner("test-master"), 1), 20)
        outcome(services, claimed[0])

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def completes(services: Services, job: JobRecord) -> None:
    services.queue.complete(job, stored_result(services.storage, job.public_id, images=2)[0])


def fails(services: Services, job: JobRecord) -> None:
    error = ErrorInfo(type="invalid_input", message="input image is not an image", retryable=False)
    services.queue.fail(job, error)


def test_one_call_answers_with_the_first_image_once_the_job_completes(
    client: TestClient, api_services: Services
) -> None:
    master = in_the_background(completes, api_services)
    answer = client.post("/v1/images", json={"prompt": "a lighthouse at dawn"})
    master.result(timeout=30)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert set(done) == {"id", "file_key", "public_url"}
    job = api_services.queue.get(done["id"])
    assert job is not None and job.result is not None
    assert done["file_key"] == job.result.images[0].key
    image = client.get(done["public_url"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (64, 48)


def test_one_call_not_done_in_time_answers_202_with_where_to_look(client: TestClient) -> None:
    answer = client.post("/v1/images", params={"wait_s": 0}, json={"prompt": "a lighthouse"})
    assert answer.status_code == 202
    view = answer.json()
    assert (
        view["status"] == "queued" and answer.headers["location"] == f"/v1/generations/{view['id']}"
    )
    assert (
        client.post("/v1/images", params={"wait_s": 301}, json={"prompt": "x"}).status_code == 422
    )


def test_one_call_whose_job_fails_answers_with_the_jobs_error(
    client: TestClient, api_services: Services
) -> None:
    master = in_the_background(fails, api_services)
    answer = client.post("/v1/images", json={"prompt": "a lighthouse at dawn"})
    master.result(timeout=30)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert list(answer.json()) == ["detail"] and detail.endswith("input image is not an image")
    job_id = answer.headers["location"].removeprefix("/v1/generations/")
    job = api_services.queue.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job_id in detail


def test_the_gallery_lists_the_callers_own_generations_newest_first(
    client: TestClient, api_services: Services
) -> None:
    oldest = finished_key(client, api_services, {}).split("/")[1]
    made = [client.post("/v1/generations", json={"prompt": f"p{n}"}).json()["id"] for n in (1, 2)]
    theirs = client.post("/v1/generations", json={"prompt": "bob's"}, headers=BOB).json()["id"]
    first = client.get("/v1/generations", params={"limit": 2}).json()
    assert [g["id"] for g in first["generations"]] == [made[1], made[0]]
    assert first["next_before"] == made[0]
    rest = client.get("/v1/generations", params={"before": first["next_before"]}).json()
    assert [g["id"] for g in rest["generations"]] == [oldest] and rest["next_before"] is None
    [image] = rest["generations"][0]["images"]
    assert client.get(image["url"]).status_code == 200
    bobs = client.get("/v1/generations", headers=BOB).json()["generations"]
    assert [g["id"] for g in bobs] == [theirs]
    assert client.get("/v1/generations", params={"before": theirs}).status_code == 404
    assert client.get("/v1/generations", params={"limit": 51}).status_code == 422


def curl_json(*args: str) -> Any:
    done = subprocess.run(
        ["curl", "-s", "--max-time", "10", *args], capture_output=True, check=True
    )
    return json.loads(done.stdout)


def test_img2img_from_an_upload_runs_end_to_end_in_preview_mode(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "COMFYUI_"))}
    env.pop("DISCORD_TOKEN", None)
    env["STILLHOUSE_DATA_DIR"] = str(tmp_path / "data")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(96, 64, "orange"))
    up = subprocess.Popen(
        [str(Path(sys.executable).with_name("stillhouse")), "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(base), 60, 0.2, what="stillhouse up")
        stored = curl_json("-F", f"file=@{photo}", f"{base}/v1/uploads")
        body = json.dumps(img2img(stored["key"]))
        done = curl_json(
            "-X", "POST", f"{base}/v1/images", "-H", "Content-Type: application/json", "-d", body
        )
        assert set(done) == {"id", "file_key", "public_url"}, done
        view = curl_json(f"{base}/v1/generations/{done['id']}")
        assert view["status"] == "succeeded" and view["workflow"] == "sd15-img2img"
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=30)[0].decode()
    assert up.returncode == 0, output


def _healthy(base: str) -> bool:
    probe = subprocess.run(
        ["curl", "-s", "--max-time", "2", f"{base}/v1/health"], capture_output=True, check=False
    )
    return probe.stdout == b'{"status":"ok"}'
