"""The double speaks ComfyUI's protocol as captured: message order and shapes, 400
node_errors, /history, /view; and behaves as ComfyUI 0.3.64's code does where no capture
shows it: its output, input and temp folders, prompts with some invalid outputs,
PreviewImage, and `POST /queue`."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from PIL import Image

from stillhouse.workflows.binder import bind
from stillhouse.workflows.loader import WorkflowCatalog
from tests.doubles.comfy.images import plan
from tests.support import wait_until
from tests.worker.comfy_double import running_double

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"


def capture_types(name: str) -> list[str]:
    lines = (CAPTURES / "captures" / name).read_text().splitlines()
    return [json.loads(line)["type"] for line in lines]


def run_and_record(url: str, graph: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Queue `graph` with a websocket open; every message up to the prompt's end."""
    answer, messages = asyncio.run(_run_and_record(url, graph))
    return answer["prompt_id"], messages


def answer_and_record(
    url: str, graph: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """As run_and_record, with `POST /prompt`'s whole 200 answer."""
    return asyncio.run(_run_and_record(url, graph))


async def _run_and_record(
    url: str, graph: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client_id = uuid.uuid4().hex
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/ws", params={"clientId": client_id}) as ws,
    ):
        messages = [json.loads((await ws.receive(timeout=20)).data)]
        body = {"prompt": graph, "client_id": client_id}
        async with session.post(f"{url}/prompt", json=body) as response:
            response.raise_for_status()
            answer = await response.json()
        while True:
            message = json.loads((await ws.receive(timeout=20)).data)
            messages.append(message)
            if message["type"] in (
                "execution_success",
                "execution_error",
                "execution_interrupted",
            ):
                return answer, messages


def without_status_tail(types: list[str]) -> list[str]:
    return [t for t in types if t != "status"]


def test_a_run_sends_the_captured_messages_in_the_captured_order() -> None:
    graph = json.loads((CAPTURES / "workflows" / "txt2img_256_s4.json").read_text())
    with running_double() as url:
        # Warm the cache as the capture's server was (it had just run the 64 px graph):
        # the loader and both text encoders come from the cache, the rest runs.
        run_and_record(url, json.loads((CAPTURES / "workflows" / "txt2img_64_s1.json").read_text()))
        prompt_id, messages = run_and_record(url, graph)
    expected = capture_types("ws_txt2img_256_s4.jsonl")
    assert without_status_tail([m["type"] for m in messages]) == without_status_tail(expected)
    first_capture = json.loads(
        (CAPTURES / "captures" / "ws_txt2img_256_s4.jsonl").read_text().splitlines()[0]
    )
    assert messages[0]["type"] == "status" and set(messages[0]["data"]) == set(
        first_capture["data"]
    )
    captured = [
        json.loads(line)
        for line in (CAPTURES / "captures" / "ws_txt2img_256_s4.jsonl").read_text().splitlines()
    ]
    for ours, theirs in zip(
        [m for m in messages if m["type"] != "status"],
        [m for m in captured if m["type"] != "status"],
        strict=True,
    ):
        assert set(ours["data"]) == set(theirs["data"]), ours["type"]
        if ours["type"] == "progress_state":
            for node in ours["data"]["nodes"].values():
                assert set(node) == set(next(iter(theirs["data"]["nodes"].values())))
    cached = next(m for m in messages if m["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["4", "6", "7"]
    assert all(m["data"].get("prompt_id") in (None, prompt_id) for m in messages)


def test_an_identical_graph_is_answered_from_the_cache_like_comfyui() -> None:
    graph = json.loads((CAPTURES / "workflows" / "txt2img_64_s1.json").read_text())
    with running_double() as url:
        _, first = run_and_record(url, graph)
        _, again = run_and_record(url, graph)
    assert without_status_tail([m["type"] for m in again]) == without_status_tail(
        capture_types("ws_txt2img_64_s1.jsonl")
    )
    executed = [m for m in first if m["type"] == "executed"]
    re_executed = [m for m in again if m["type"] == "executed"]
    assert re_executed[0]["data"]["output"] == executed[0]["data"]["output"]


def test_history_and_view_have_the_captured_shapes() -> None:
    sample = json.loads((CAPTURES / "captures" / "history_sample.json").read_text())
    theirs = next(iter(sample.values()))
    graph = json.loads((CAPTURES / "workflows" / "txt2img_64_s1.json").read_text())
    with running_double() as url:
        prompt_id, _ = run_and_record(url, graph)
        history = requests.get(f"{url}/history/{prompt_id}", timeout=10).json()
        ours = history[prompt_id]
        image = ours["outputs"]["9"]["images"][0]
        view = requests.get(f"{url}/view", params=image, timeout=10)
        missing = requests.get(f"{url}/view", params={**image, "filename": "nope.png"}, timeout=10)
        unknown = requests.get(f"{url}/history/not-a-prompt", timeout=10).json()
    assert set(ours) == set(theirs)
    assert set(ours["status"]) == set(theirs["status"])
    assert ours["status"]["status_str"] == "success" and ours["status"]["completed"] is True
    assert [m[0] for m in ours["status"]["messages"]] == [
        m[0] for m in theirs["status"]["messages"]
    ]
    assert len(ours["prompt"]) == len(theirs["prompt"]) and ours["prompt"][1] == prompt_id
    assert set(ours["meta"]["9"]) == set(theirs["meta"]["9"])
    assert set(image) == set(theirs["outputs"]["9"]["images"][0])
    assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
    assert b"prompt" in view.content[:200], "ComfyUI embeds the graph in its PNGs"
    assert missing.status_code == 404 and unknown == {}


def test_bad_graphs_get_comfyuis_400_answers() -> None:
    with running_double() as url:
        for name in ("bad_width", "bad_link", "bad_ckpt"):
            graph = json.loads((CAPTURES / "workflows" / f"{name}.json").read_text())
            answer = requests.post(
                f"{url}/prompt", json={"prompt": graph, "client_id": "x"}, timeout=10
            )
            assert answer.status_code == 400
            ours = answer.json()
            text = (CAPTURES / "captures" / f"resp_{name}.txt").read_text()
            theirs = json.loads(text[text.index("{") :])
            assert ours["error"] == theirs["error"]
            assert set(ours["node_errors"]) == set(theirs["node_errors"])
            for node_id, node in theirs["node_errors"].items():
                mine = ours["node_errors"][node_id]
                assert mine["class_type"] == node["class_type"]
                assert mine["dependent_outputs"] == node["dependent_outputs"]
                [error] = mine["errors"]
                [their_error] = node["errors"]
                assert (error["type"], error["message"]) == (
                    their_error["type"],
                    their_error["message"],
                )
                assert error["extra_info"]["input_name"] == their_error["extra_info"]["input_name"]


def test_a_failing_node_sends_execution_error_like_the_capture() -> None:
    captured = [
        json.loads(line)
        for line in (CAPTURES / "captures" / "ws_runtime_error.jsonl").read_text().splitlines()
    ]
    their_error = next(m for m in captured if m["type"] == "execution_error")
    graph = json.loads((CAPTURES / "workflows" / "txt2img_64_s1.json").read_text())
    with running_double("--fail-node", "9", "--fail-message", "disk full") as url:
        prompt_id, messages = run_and_record(url, graph)
        history = requests.get(f"{url}/history/{prompt_id}", timeout=10).json()[prompt_id]
    error = messages[-1]
    assert error["type"] == "execution_error"
    assert set(error["data"]) == set(their_error["data"])
    assert (error["data"]["node_id"], error["data"]["node_type"]) == ("9", "SaveImage")
    assert error["data"]["exception_message"] == "disk full"
    assert history["status"]["status_str"] == "error" and history["status"]["completed"] is False
    assert history["outputs"] == {}


def txt2img(prefix: str = "smoke", seed: int = 42) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads((CAPTURES / "workflows" / "txt2img_64_s1.json").read_text())
    graph["9"]["inputs"]["filename_prefix"] = prefix
    graph["3"]["inputs"]["seed"] = seed
    return graph


def with_second_branch(graph: dict[str, Any], width: int) -> dict[str, Any]:
    """`graph` plus a second latent -> sampler -> decode -> SaveImage ("19") branch."""
    graph = json.loads(json.dumps(graph))
    graph["15"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": width, "height": 64, "batch_size": 1},
    }
    graph["13"] = {
        "class_type": "KSampler",
        "inputs": {**graph["3"]["inputs"], "latent_image": ["15", 0]},
    }
    graph["18"] = {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["4", 2]}}
    graph["19"] = {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "branch", "images": ["18", 0]},
    }
    return graph


def view(url: str, **params: str) -> requests.Response:
    return requests.get(f"{url}/view", params=params, timeout=10)


def history_of(url: str, prompt_id: str) -> dict[str, Any]:
    entries: dict[str, dict[str, Any]] = requests.get(
        f"{url}/history/{prompt_id}", timeout=10
    ).json()
    return entries.get(prompt_id, {})


def test_with_a_base_directory_saved_images_land_in_its_output_folder(tmp_path: Path) -> None:
    earlier = tmp_path / "output" / "job7" / "smoke_00041_.png"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier run's file")
    with running_double("--base-directory", str(tmp_path)) as url:
        prompt_id, messages = run_and_record(url, txt2img("job7/smoke"))
        [image] = history_of(url, prompt_id)["outputs"]["9"]["images"]
        served = view(url, **image)
        _, _ = run_and_record(url, txt2img("job7/smoke", seed=43))
        wrong_type = view(url, **{**image, "type": "input"})
        missing = view(url, **{**image, "filename": "smoke_00099_.png"})
        outside = view(url, **{**image, "subfolder": "../.."})
        dotted = view(url, **{**image, "filename": "../x.png"})
        unknown = view(url, **{**image, "type": "models"})
    # ComfyUI numbers on from what the folder holds, per prefix (get_save_image_path)
    assert image == {"filename": "smoke_00042_.png", "subfolder": "job7", "type": "output"}
    executed = next(m for m in messages if m["type"] == "executed")
    assert executed["data"]["output"]["images"] == [image]
    on_disk = tmp_path / "output" / "job7" / "smoke_00042_.png"
    assert on_disk.read_bytes().startswith(b"\x89PNG")
    assert served.status_code == 200 and served.content == on_disk.read_bytes()
    assert (tmp_path / "output" / "job7" / "smoke_00043_.png").is_file()
    assert (wrong_type.status_code, missing.status_code) == (404, 404)
    assert (outside.status_code, dotted.status_code, unknown.status_code) == (403, 400, 400)


def test_the_temp_folder_is_emptied_when_it_starts(tmp_path: Path) -> None:
    stale = tmp_path / "temp" / "ComfyUI_temp_abcde_00001_.png"
    (tmp_path / "temp" / "sub").mkdir(parents=True)
    stale.write_bytes(b"a preview from the last run")
    (tmp_path / "temp" / "sub" / "old.png").write_bytes(b"x")
    kept = tmp_path / "output" / "kept.png"
    kept.parent.mkdir()
    kept.write_bytes(b"outputs stay")
    with running_double("--base-directory", str(tmp_path)):
        assert (tmp_path / "temp").is_dir() and list((tmp_path / "temp").iterdir()) == []
        assert kept.read_bytes() == b"outputs stay"


def test_folder_flags_place_each_folder_as_comfyui_does(tmp_path: Path) -> None:
    stale = tmp_path / "scratch" / "temp" / "stale.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    flags = [
        *("--output-directory", str(tmp_path / "out")),
        *("--input-directory", str(tmp_path / "in")),
        *("--temp-directory", str(tmp_path / "scratch")),
    ]
    with running_double(*flags) as url:
        files = {"image": ("photo.png", b"\x89PNG one", "image/png")}
        uploaded = requests.post(f"{url}/upload/image", files=files, timeout=10).json()
        prompt_id, _ = run_and_record(url, txt2img("flagged"))
        [image] = history_of(url, prompt_id)["outputs"]["9"]["images"]
    assert (tmp_path / "out" / image["filename"]).is_file()
    assert (tmp_path / "in" / uploaded["name"]).read_bytes() == b"\x89PNG one"
    # main.py: the temp folder is {--temp-directory}/temp, emptied at start
    assert (tmp_path / "scratch" / "temp").is_dir() and not stale.exists()


def test_an_upload_lands_in_the_input_folder_as_comfyui_names_it(tmp_path: Path) -> None:
    def upload(data: bytes, **fields: str) -> dict[str, Any]:
        files = {"image": ("photo.png", data, "image/png")}
        answer = requests.post(f"{url}/upload/image", files=files, data=fields, timeout=10)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    with running_double("--base-directory", str(tmp_path)) as url:
        first = upload(b"\x89PNG one", subfolder="job1")
        same = upload(b"\x89PNG one", subfolder="job1")
        other = upload(b"\x89PNG two", subfolder="job1")
        replaced = upload(b"\x89PNG three", subfolder="job1", overwrite="true")
        served = view(url, filename="photo.png", subfolder="job1", type="input")
        escape = requests.post(
            f"{url}/upload/image",
            files={"image": ("photo.png", b"x", "image/png")},
            data={"subfolder": "../../elsewhere"},
            timeout=10,
        )
    folder = tmp_path / "input" / "job1"
    assert first == {"name": "photo.png", "subfolder": "job1", "type": "input"}
    assert same == first, "the same bytes under the same name are not stored twice"
    assert other["name"] == "photo (1).png"
    assert (folder / "photo (1).png").read_bytes() == b"\x89PNG two"
    assert replaced["name"] == "photo.png"
    assert (folder / "photo.png").read_bytes() == b"\x89PNG three" == served.content
    assert escape.status_code == 400 and not (tmp_path.parent / "elsewhere").exists()


def test_a_prompt_with_one_invalid_output_runs_only_the_valid_one(tmp_path: Path) -> None:
    graph = with_second_branch(txt2img(), width=100000)
    with running_double("--base-directory", str(tmp_path)) as url:
        answer, messages = answer_and_record(url, graph)
        history = history_of(url, answer["prompt_id"])
    # server.py post_prompt: 200 with the failed outputs' node_errors (validate_prompt)
    assert set(answer) == {"prompt_id", "number", "node_errors"}
    assert set(answer["node_errors"]) == {"15"}
    entry = answer["node_errors"]["15"]
    assert entry["class_type"] == "EmptyLatentImage" and entry["dependent_outputs"] == ["19"]
    [error] = entry["errors"]
    assert error["type"] == "value_bigger_than_max"
    assert error["extra_info"]["input_name"] == "width"
    assert messages[-1]["type"] == "execution_success"
    executed = [m["data"]["node"] for m in messages if m["type"] == "executed"]
    executing = {m["data"]["node"] for m in messages if m["type"] == "executing"}
    assert executed == ["9"] and not executing & {"13", "15", "18", "19"}
    assert set(history["outputs"]) == {"9"} and history["prompt"][4] == ["9"]
    assert [p.name for p in (tmp_path / "output").iterdir()] == ["smoke_00001_.png"]


def test_a_prompt_whose_outputs_are_all_invalid_stays_a_400() -> None:
    graph = with_second_branch(txt2img(), width=100000)
    graph["5"]["inputs"]["width"] = 100000
    with running_double() as url:
        answer = requests.post(
            f"{url}/prompt", json={"prompt": graph, "client_id": "x"}, timeout=10
        )
        queue = requests.get(f"{url}/queue", timeout=10).json()
        history = requests.get(f"{url}/history", timeout=10).json()
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["node_errors"]) == {"5", "15"}
    assert "9" in body["node_errors"]["5"]["dependent_outputs"]
    assert "19" in body["node_errors"]["15"]["dependent_outputs"]
    assert queue == {"queue_running": [], "queue_pending": []} and history == {}


def test_a_graph_without_outputs_or_with_an_unknown_node_is_refused_as_comfyui_does() -> None:
    no_outputs = txt2img()
    del no_outputs["9"]
    unknown = {**txt2img(), "20": {"class_type": "NoSuchNode", "inputs": {}}}
    with running_double() as url:
        answers = [
            requests.post(f"{url}/prompt", json=body, timeout=10)
            for body in ({"prompt": no_outputs}, {"prompt": unknown}, {"client_id": "x"})
        ]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert [a.json()["error"]["type"] for a in answers] == [
        "prompt_no_outputs",
        "invalid_prompt",
        "no_prompt",
    ]
    assert answers[1].json()["error"]["details"] == "Node ID '#20'"


@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "base-directory"])
def test_preview_images_are_temp_files_servable_by_view(on_disk: bool, tmp_path: Path) -> None:
    graph = txt2img()
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    flags = ("--base-directory", str(tmp_path)) if on_disk else ()
    with running_double(*flags) as url:
        prompt_id, messages = run_and_record(url, graph)
        [image] = history_of(url, prompt_id)["outputs"]["9"]["images"]
        served = view(url, **image)
        as_output = view(url, **{**image, "type": "output"})
    executed = next(m for m in messages if m["type"] == "executed")
    assert executed["data"]["output"]["images"] == [image]
    assert image["type"] == "temp" and image["subfolder"] == ""
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", image["filename"])
    assert served.status_code == 200 and served.content.startswith(b"\x89PNG")
    assert as_output.status_code == 404
    if on_disk:
        assert (tmp_path / "temp" / image["filename"]).read_bytes() == served.content
        assert not (tmp_path / "output").exists()


def test_queue_delete_and_clear_remove_pending_prompts() -> None:
    def queue() -> dict[str, Any]:
        body: dict[str, Any] = requests.get(f"{url}/queue", timeout=10).json()
        return body

    def submit(seed: int) -> str:
        body: dict[str, Any] = {"prompt": txt2img(seed=seed), "client_id": "x"}
        answer = requests.post(f"{url}/prompt", json=body, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["prompt_id"])

    def pending() -> list[str]:
        return [item[1] for item in queue()["queue_pending"]]

    with running_double("--hang") as url:
        running = submit(1)
        wait_until(lambda: [i[1] for i in queue()["queue_running"]] == [running], what="a run")
        deleted, kept = submit(2), submit(3)
        assert pending() == [deleted, kept]
        requests.post(f"{url}/queue", json={"delete": [deleted]}, timeout=10).raise_for_status()
        assert pending() == [kept]
        submit(4)
        requests.post(f"{url}/queue", json={"clear": True}, timeout=10).raise_for_status()
        assert pending() == [] and queue()["queue_running"][0][1] == running
        requests.post(f"{url}/interrupt", timeout=10).raise_for_status()
        wait_until(lambda: history_of(url, running), what="the interrupted prompt's history")
        wait_until(lambda: queue()["queue_running"] == [], what="an idle queue")
        everything = requests.get(f"{url}/history", timeout=10).json()
    assert list(everything) == [running], "deleted and cleared prompts never run"


# -- the sizes and counts the double saves, node by node as ComfyUI computes them ----------

CATALOG = WorkflowCatalog.load()
SOURCE, MASK = "stillhouse/t/source.png", "stillhouse/t/mask.png"


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def bound_graph(
    name: str, size: tuple[int, int], **values: object
) -> tuple[dict[str, Any], dict[str, bytes], str]:
    """A shipped workflow bound with `values` (its images `size`): the graph, its input
    files by name as the worker stages them, and its output node."""
    workflow = CATALOG.get(name)
    images = {n: (MASK if n == "mask" else SOURCE) for n in workflow.manifest.image_parameters()}
    prompt = {"prompt": "a lighthouse"} if "prompt" in workflow.manifest.parameters else {}
    bound = bind(workflow, {**prompt, **images, **values}, rng=random.Random(1))
    files = {s.name: png(*size) for s in bound.inputs}
    graph: dict[str, Any] = bound.graph.model_dump(by_alias=True)
    return graph, files, bound.outputs[0]


@pytest.mark.parametrize(
    ("name", "size", "values", "expected"),
    [
        ("sd15-txt2img", (64, 64), {"count": 3}, (512, 512, 3)),
        # a latent's size decides, not the control image's
        ("sd15-canny", (1024, 768), {"width": 512, "height": 768}, (512, 768, 1)),
        # Zoom Out 1.5x on 1024x1024: a quarter of each side added on every side
        (
            "sdxl-outpaint",
            (1024, 1024),
            dict.fromkeys(("left", "top", "right", "bottom"), 256),
            (1536, 1536, 1),
        ),
        ("sd15-outpaint", (512, 512), {"right": 256, "count": 2}, (768, 512, 2)),
        ("sd15-inpaint", (512, 384), {"count": 2}, (512, 384, 2)),
        ("sdxl-inpaint", (1020, 1030), {}, (1016, 1024, 1)),  # VAEEncode crops to 8s
        ("upscale-2x", (512, 384), {"upscaler": "RealESRGAN_x2.pth"}, (1024, 768, 1)),
        (
            "upscale-2x",
            (512, 384),
            {"upscaler": "RealESRGAN_x4.pth", "rescale": 0.5},
            (1024, 768, 1),
        ),
        ("upscale-4x", (512, 384), {}, (2048, 1536, 1)),
        ("sd15-upscale-creative", (512, 512), {}, (1024, 1024, 1)),
        ("sdxl-upscale-creative", (1024, 832), {}, (2048, 1664, 1)),
        ("sdxl-variations", (1024, 1024), {}, None),  # four takes
    ],
)
def test_the_double_sizes_shipped_graphs_as_comfyui_would(
    name: str,
    size: tuple[int, int],
    values: dict[str, object],
    expected: tuple[int, int, int] | None,
) -> None:
    graph, files, output = bound_graph(name, size, **values)
    width, height, count = plan(graph, files.get, output)
    if expected is None:
        assert count == 4
    else:
        assert (width, height, count) == expected


def test_the_double_follows_the_links_of_image_nodes() -> None:
    files = {"a.png": png(640, 480), "m.png": png(640, 480)}

    def graph(*nodes: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
        return {n: {"class_type": kind, "inputs": inputs} for n, kind, inputs in nodes}

    load = ("1", "LoadImage", {"image": "a.png"})
    save = ("9", "SaveImage", {"images": ["8", 0], "filename_prefix": "x"})
    inpainted = graph(
        load,
        ("2", "LoadImage", {"image": "m.png"}),
        ("3", "ImageToMask", {"image": ["2", 0], "channel": "red"}),
        ("4", "VAEEncode", {"pixels": ["1", 0]}),
        ("5", "SetLatentNoiseMask", {"samples": ["4", 0], "mask": ["3", 0]}),
        ("6", "KSampler", {"latent_image": ["5", 0]}),
        ("8", "VAEDecode", {"samples": ["6", 0]}),
        save,
    )
    assert plan(inpainted, files.get) == (640, 480, 1), "img2img keeps the input's size"
    edges = graph(
        load,
        ("2", "Canny", {"image": ["1", 0]}),
        ("3", "ImageScale", {"image": ["2", 0], "width": 320, "height": 0, "crop": "disabled"}),
        ("4", "RepeatImageBatch", {"image": ["3", 0], "amount": 2}),
        ("8", "ImageScaleBy", {"image": ["4", 0], "scale_by": 1.5}),
        save,
    )
    assert plan(edges, files.get) == (480, 360, 2)
    named = graph(
        load,
        ("2", "UpscaleModelLoader", {"model_name": "4x-UltraSharp.pth"}),
        ("8", "ImageUpscaleWithModel", {"image": ["1", 0], "upscale_model": ["2", 0]}),
        save,
    )
    assert plan(named, files.get) == (2560, 1920, 1), "the factor comes from the file name"
    # a LoadImage whose file the input folder lacks: 512x512, as before
    assert plan(graph(("8", "LoadImage", {"image": "gone.png"}), save), files.get) == (512, 512, 1)


def test_the_double_runs_every_shipped_workflow() -> None:
    with running_double() as url:
        for name in CATALOG.names():
            takes_count = "count" in CATALOG.get(name).manifest.parameters
            graph, files, output = bound_graph(
                name, (512, 384), **({"count": 2} if takes_count else {})
            )
            for filename, data in files.items():
                image = {"image": (filename, data, "image/png")}
                requests.post(f"{url}/upload/image", files=image, timeout=10).raise_for_status()
            prompt_id, messages = run_and_record(url, graph)
            assert messages[-1]["type"] == "execution_success", (name, messages[-1])
            saved = history_of(url, prompt_id)["outputs"][output]["images"]
            width, height, count = plan(graph, files.get, output)
            assert len(saved) == count, name
            with Image.open(io.BytesIO(view(url, **saved[0]).content)) as result:
                assert result.size == (width, height), name
