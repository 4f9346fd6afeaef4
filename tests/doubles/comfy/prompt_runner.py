"""Running a prompt the way ComfyUI 0.3.64 reports it: the order and shape of every
websocket message and the `/history` entry left behind, as in the captures."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.comfy.behaviour import Behaviour
from tests.doubles.comfy.folders import expand_prefix, next_counter, relative
from tests.doubles.comfy.images import Graph, plan, render_png

SAMPLERS = ("KSampler", "KSamplerAdvanced")
OUTPUT_NODES = ("SaveImage", "PreviewImage")  # the output nodes that save images
# nodes.py PreviewImage: temp folder, type "temp", "_temp_" and five of these letters
# appended to the prefix "ComfyUI" (it has no filename_prefix input).
PREVIEW_LETTERS = "abcdefghijklmnopqrstupvxyz"


class Interrupted(Exception):
    """POST /interrupt arrived while the prompt ran."""


@dataclass
class Prompt:
    """One queued prompt and, once it ran, its history entry."""

    number: int
    prompt_id: str
    graph: Graph
    client_id: str
    outputs_to_execute: list[str] = field(default_factory=list)  # the valid output nodes
    outputs: dict[str, Any] = field(default_factory=dict)
    messages: list[list[Any]] = field(default_factory=list)
    status_str: str | None = None

    def history(self) -> dict[str, Any]:
        """The `/history/{id}` entry."""
        return {
            "prompt": self.queue_item(),
            "outputs": self.outputs,
            "status": {
                "status_str": self.status_str,
                "completed": self.status_str == "success",
                "messages": self.messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in self.outputs
            },
        }

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue item: (number, id, graph, extra_data, outputs to execute)."""
        extra_data = {"client_id": self.client_id}
        return [self.number, self.prompt_id, self.graph, extra_data, self.outputs_to_execute]


def now_ms() -> int:
    return int(time.time() * 1000)


def new_prompt_id() -> str:
    return str(uuid.uuid4())


def execution_order(graph: Graph, outputs: list[str]) -> list[str]:
    """Dependencies first, in input order, from each output node (as ComfyUI walks)."""
    order: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in order or node_id not in graph:
            return
        for value in graph[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2:
                visit(str(value[0]))
        order.append(node_id)

    for node_id in outputs:
        visit(node_id)
    return order


def upstream(graph: Graph, node_id: str) -> Graph:
    """`node_id` and every node it depends on, in the graph's order."""
    needed = set(execution_order(graph, [node_id]))
    return {n: v for n, v in graph.items() if n in needed}


def signatures(graph: Graph) -> dict[str, str]:
    """A node's identity for the cache: its class, literal inputs and upstream nodes."""
    memo: dict[str, str] = {}

    def sign(node_id: str) -> str:
        if node_id not in memo:
            node = graph[node_id]
            parts = [node["class_type"]]
            for name, value in sorted(node.get("inputs", {}).items()):
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in graph:
                    parts.append(f"{name}<{sign(str(value[0]))}:{value[1]}")
                else:
                    parts.append(f"{name}={value!r}")
            memo[node_id] = "|".join(parts)
        return memo[node_id]

    return {node_id: sign(node_id) for node_id in graph}


class Executor:
    """Runs prompts one at a time and emits ComfyUI's messages through `send`."""

    def __init__(self, behaviour: Behaviour, state: Any) -> None:
        self.behaviour = behaviour
        self.state = state  # the server: send(), folders, read_input(), interrupt flag
        self.cache: dict[str, tuple[str, Any]] = {}  # node signature -> (node id, output)

    async def run(self, prompt: Prompt) -> None:
        """Execute one prompt to success, error or interruption."""
        emit = self._emitter(prompt)
        start = {"prompt_id": prompt.prompt_id, "timestamp": now_ms()}
        await emit("execution_start", start, record=True)
        order = execution_order(prompt.graph, prompt.outputs_to_execute)
        signs = signatures(prompt.graph)
        # ComfyUI lists every node of the prompt it holds in its cache, in the prompt's order.
        cached = [n for n in prompt.graph if signs[n] in self.cache]
        await emit(
            "execution_cached",
            {"nodes": cached, "prompt_id": prompt.prompt_id, "timestamp": now_ms()},
            record=True,
        )
        self.state.silence_clients(prompt.client_id)
        states: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        try:
            for node_id in order:
                if signs[node_id] in self.cache:
                    await self._replay_cached(prompt, node_id, signs[node_id], emit, states)
                    continue
                await self._node(prompt, node_id, emit, states, executed)
                executed.append(node_id)
        except Interrupted:
            data = {
                "prompt_id": prompt.prompt_id,
                "node_id": node_id,
                "node_type": prompt.graph[node_id]["class_type"],
                "executed": executed,
                "timestamp": now_ms(),
            }
            await emit("execution_interrupted", data, record=True)
            prompt.status_str = "error"
            return
        except _NodeFailed as failure:
            await emit("execution_error", failure.data, record=True)
            prompt.status_str = "error"
            return
        for node_id in order:
            self.cache[signs[node_id]] = (node_id, prompt.outputs.get(node_id))
        await emit(
            "execution_success", {"prompt_id": prompt.prompt_id, "timestamp": now_ms()}, record=True
        )
        prompt.status_str = "success"

    def _emitter(self, prompt: Prompt) -> Any:
        async def emit(kind: str, data: dict[str, Any], record: bool = False) -> None:
            if record:
                prompt.messages.append([kind, data])
            await self.state.send(prompt.client_id, {"type": kind, "data": data})

        return emit

    async def _node(
        self,
        prompt: Prompt,
        node_id: str,
        emit: Any,
        states: dict[str, dict[str, Any]],
        executed: list[str],
    ) -> None:
        node = prompt.graph[node_id]
        kind = node["class_type"]
        await self._progress_state(prompt, node_id, 0.0, 1.0, "running", emit, states)
        await emit(
            "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt.prompt_id}
        )
        await self._pause(self.behaviour.node_time_s)
        if kind == "VAEDecode":
            await self._pause(self.behaviour.decode_time_s)
        if self.behaviour.fail_node == node_id:
            raise _NodeFailed(
                prompt,
                node_id,
                executed,
                self.behaviour.fail_message,
                self.behaviour.fail_type,
            )
        if kind in SAMPLERS:
            steps = int(node["inputs"].get("steps", 1))
            for step in range(1, steps + 1):
                if self.behaviour.die_during_run:
                    os._exit(1)
                await self._pause(self.behaviour.step_time_s)
                await self._progress_state(prompt, node_id, step, steps, "running", emit, states)
                await emit(
                    "progress",
                    {"value": step, "max": steps, "prompt_id": prompt.prompt_id, "node": node_id},
                )
            await self._progress_state(prompt, node_id, steps, steps, "finished", emit, states)
            return
        if kind in OUTPUT_NODES:
            output = {"images": self._save(prompt, node_id, executed)}
            prompt.outputs[node_id] = output
            await emit(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": output,
                    "prompt_id": prompt.prompt_id,
                },
            )
        await self._progress_state(prompt, node_id, 1.0, 1.0, "finished", emit, states)

    async def _replay_cached(
        self,
        prompt: Prompt,
        node_id: str,
        sign: str,
        emit: Any,
        states: dict[str, dict[str, Any]],
    ) -> None:
        # A cached output node still reports its earlier images (no new file is written).
        cached_output = self.cache[sign][1]
        if prompt.graph[node_id]["class_type"] in OUTPUT_NODES and cached_output:
            prompt.outputs[node_id] = cached_output
            await emit(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": cached_output,
                    "prompt_id": prompt.prompt_id,
                },
            )
            await self._progress_state(prompt, node_id, 1, 1, "finished", emit, states)

    def _save(self, prompt: Prompt, node_id: str, executed: list[str]) -> list[dict[str, str]]:
        """nodes.py SaveImage/PreviewImage with folder_paths.get_save_image_path: files
        `{prefix}_{counter:05}_.png` numbered on from what the folder already holds."""
        node = prompt.graph[node_id]
        graph = upstream(prompt.graph, node_id)
        width, height, count = plan(graph, self.state.read_input, node_id)
        if node["class_type"] == "PreviewImage":
            kind, prefix = "temp", "ComfyUI_temp_" + "".join(random.choices(PREVIEW_LETTERS, k=5))
        else:
            kind, prefix = "output", str(node["inputs"].get("filename_prefix", "ComfyUI"))
        folder = self.state.folders.by_type(kind)
        prefix = expand_prefix(prefix, width, height)
        place = relative(prefix)
        if place is None:
            message = "**** ERROR: Saving image outside the output folder is not allowed."
            raise _NodeFailed(prompt, node_id, executed, message, "Exception")
        subfolder, _, base = (place or ".").rpartition("/")
        counter = next_counter(folder.names(subfolder), base)
        images = []
        for index in range(count):
            filename = f"{base.replace('%batch_num%', str(index))}_{counter:05}_.png"
            png = render_png(
                prompt.graph,
                width,
                height,
                index,
                self.behaviour.embed_metadata,
                textured=self.behaviour.textured,
            )
            folder.write(relative(subfolder, filename) or filename, png)
            images.append({"filename": filename, "subfolder": subfolder, "type": kind})
            counter += 1
        return images

    async def _progress_state(
        self,
        prompt: Prompt,
        node_id: str,
        value: float,
        maximum: float,
        state: str,
        emit: Any,
        states: dict[str, dict[str, Any]],
    ) -> None:
        states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": prompt.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        await emit(
            "progress_state",
            {"prompt_id": prompt.prompt_id, "nodes": {k: dict(v) for k, v in states.items()}},
        )

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.state.interrupt_requested:
                self.state.interrupt_requested = False
                raise Interrupted
            if self.behaviour.hang:
                await asyncio.sleep(0.01)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.01))


class _NodeFailed(Exception):
    def __init__(
        self,
        prompt: Prompt,
        node_id: str,
        executed: list[str],
        message: str,
        exception_type: str,
    ) -> None:
        super().__init__(message)
        self.data = {
            "prompt_id": prompt.prompt_id,
            "node_id": node_id,
            "node_type": prompt.graph[node_id]["class_type"],
            "executed": list(executed),
            "exception_message": message,
            "exception_type": exception_type,
            "traceback": ['  File "COMFYUI_DIR/execution.py", line 496, in execute\n'],
            "current_inputs": {k: [repr(v)] for k, v in prompt.graph[node_id]["inputs"].items()},
            "current_outputs": list(prompt.graph),
            "timestamp": now_ms(),
        }
