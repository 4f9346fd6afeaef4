"""ComfyUI's HTTP API, as typed calls (aiohttp)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import aiohttp
from pydantic import BaseModel

from stillhouse.schemas.graph import ComfyGraph
from worker.errors import JobFailure, comfy_unavailable

_NOT_IN_LIST = re.compile(r"(?P<name>\w+): '(?P<value>.*)' not in ")


class OutputImage(BaseModel):
    """One image ComfyUI reports for an output node (`executed` / `/history`)."""

    filename: str
    subfolder: str = ""
    type: str = "output"


class ComfyClient:
    """One ComfyUI server; the session belongs to the caller (one per job)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    @property
    def ws_url(self) -> str:
        """The websocket endpoint."""
        return self.base_url.replace("http", "ws", 1) + "/ws"

    async def system_stats(self) -> dict[str, Any]:
        """`GET /system_stats`: answers once ComfyUI is ready."""
        async with self.session.get(f"{self.base_url}/system_stats") as response:
            response.raise_for_status()
            stats: dict[str, Any] = await response.json()
            return stats

    async def queue_prompt(self, graph: ComfyGraph, client_id: str) -> str:
        """`POST /prompt`; a 400 becomes a structured, non-retryable JobFailure, and so
        does a 200 whose `node_errors` name outputs ComfyUI dropped (it queues the valid
        ones only): the prompt is taken back, never half run."""
        body = {"prompt": graph.model_dump(mode="json", by_alias=True), "client_id": client_id}
        async with self.session.post(f"{self.base_url}/prompt", json=body) as response:
            if response.status == 400:
                raise rejection(await response.json(content_type=None))
            if response.status >= 500:
                raise comfy_unavailable(f"ComfyUI answered {response.status} to the prompt")
            response.raise_for_status()
            answer = await response.json()
        prompt_id = str(answer["prompt_id"])
        if answer.get("node_errors"):
            await self.take_back(prompt_id)
            raise rejection(answer, error_type="node_error")
        return prompt_id

    async def take_back(self, prompt_id: str) -> None:
        """Remove a prompt that waits in ComfyUI's queue, and stop it if it runs: only
        that prompt, never another job's (best effort)."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.session.post(f"{self.base_url}/queue", json={"delete": [prompt_id]}):
                pass
            await self.interrupt(prompt_id)

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """`GET /history/{id}`: the finished prompt, or None while ComfyUI has no entry."""
        async with self.session.get(f"{self.base_url}/history/{prompt_id}") as response:
            response.raise_for_status()
            entries: dict[str, Any] = await response.json()
        entry = entries.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def queue_holds(self, prompt_id: str) -> bool:
        """Whether `GET /queue` still lists the prompt as running or pending."""
        async with self.session.get(f"{self.base_url}/queue") as response:
            response.raise_for_status()
            queue = await response.json()
        items = list(queue.get("queue_running", [])) + list(queue.get("queue_pending", []))
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    async def view(self, image: OutputImage) -> bytes:
        """`GET /view`: an output image's bytes."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        async with self.session.get(f"{self.base_url}/view", params=params) as response:
            if response.status == 404:
                raise JobFailure(
                    "output_missing", f"ComfyUI has no file {image.filename}", retryable=True
                )
            response.raise_for_status()
            return await response.read()

    async def upload_input(self, name: str, data: bytes) -> None:
        """`POST /upload/image`: place an input image in ComfyUI's input folder."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        async with self.session.post(f"{self.base_url}/upload/image", data=form) as response:
            response.raise_for_status()

    async def interrupt(self, prompt_id: str) -> None:
        """`POST /interrupt` for one prompt: ComfyUI stops it if it is the one running."""
        body = {"prompt_id": prompt_id}
        async with self.session.post(f"{self.base_url}/interrupt", json=body) as response:
            response.raise_for_status()


def rejection(body: dict[str, Any], error_type: str = "invalid_graph") -> JobFailure:
    """ComfyUI's refusal as one clear error naming the first bad node and input."""
    node_errors = body.get("node_errors") or {}
    for node_id, node in node_errors.items():
        for error in node.get("errors", []):
            return JobFailure(
                error_type,
                _described(error),
                retryable=False,
                node_id=str(node_id),
                node_type=node.get("class_type"),
            )
    error = body.get("error") or {}
    details = f": {error['details']}" if error.get("details") else ""
    return JobFailure(
        "invalid_graph",
        f"{error.get('message', 'ComfyUI refused the graph')}{details}",
        retryable=False,
    )


def _described(error: dict[str, Any]) -> str:
    """One node error in words. A value not in its list names the value, never the list:
    for a loader that list is every model file on this worker."""
    message = str(error.get("message") or "invalid")
    details = str(error.get("details") or "")
    if error.get("type") == "value_not_in_list":
        extra = error.get("extra_info") or {}
        # ComfyUI says "ckpt_name: 'x.safetensors' not in ['a', 'b', ...]"
        said = _NOT_IN_LIST.match(details)
        name = extra.get("input_name") or (said and said["name"]) or "value"
        received = extra.get("received_value", said and said["value"])
        if received is not None:
            if str(name).endswith("_name"):  # ckpt_name, lora_name, vae_name: a model file
                return f"{name}: {str(received)!r} is not installed on this worker"
            return f"{name}: {str(received)!r} is not one of the allowed values"
        return f"{message}: {name}"
    return f"{message}: {details}" if details else message
