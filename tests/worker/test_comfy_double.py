"""The double speaks ComfyUI's protocol as captured: message order and shapes, 400
node_errors, /history, /view."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import requests

from tests.worker.comfy_double import running_double

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfy"


def capture_types(name: str) -> list[str]:
    lines = (CAPTURES / "captures" / name).read_text().splitlines()
    return [json.loads(line)["type"] for line in lines]


def run_and_record(url: str, graph: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Queue `graph` with a websocket open; every message up to the prompt's end."""
    return asyncio.run(_run_and_record(url, graph))


async def _run_and_record(url: str, graph: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    client_id = uuid.uuid4().hex
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/ws", params={"clientId": client_id}) as ws,
    ):
        messages = [json.loads((await ws.receive(timeout=20)).data)]
        body = {"prompt": graph, "client_id": client_id}
        async with session.post(f"{url}/prompt", json=body) as answer:
            answer.raise_for_status()
            prompt_id = (await answer.json())["prompt_id"]
        while True:
            message = json.loads((await ws.receive(timeout=20)).data)
            messages.append(message)
            if message["type"] in (
                "execution_success",
                "execution_error",
                "execution_interrupted",
            ):
                return prompt_id, messages


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
